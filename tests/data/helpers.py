"""Helpers for the data tests: an independent tight-box computation and tiny files."""

import numpy as np


def tight_box(mask):
    """xyxy of the pixels set in an (H, W) mask: the last row/column + 1 as x2/y2."""
    rows, cols = np.nonzero(mask)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float32)


def write_image(path, height, width, seed=0):
    """A small random RGB image saved with Pillow (JPEG or PNG by suffix)."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def voc_xml(width, height, objects):
    """A VOC annotation; objects are (name, xmin, ymin, xmax, ymax, difficult)."""
    body = "".join(
        f"<object><name>{name}</name><difficult>{int(diff)}</difficult><bndbox><xmin>{x0}</xmin>"
        f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, x0, y0, x1, y1, diff in objects
    )
    return (
        f"<annotation><filename>x.jpg</filename><size><width>{width}</width><height>{height}</height>"
        f"<depth>3</depth></size>{body}</annotation>"
    )
