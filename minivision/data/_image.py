"""Array helpers shared by the datasets and transforms: reading, resizing, tight boxes.

Images are (C, H, W) float32 NumPy arrays in [0, 1]. A pixel (r, c) covers the square
[c, c + 1) x [r, r + 1), so a mask whose columns run from c0 to c1 has the box edge
x1 = c0, x2 = c1 + 1 (DESIGN.md: continuous coordinates, no "+1" in widths).
"""
from __future__ import annotations

import importlib

import numpy as np


def require(module: str, purpose: str):
    """Import an optional dependency, or raise an ImportError saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{purpose} needs the optional package {module.split('.')[0]!r}, which is not "
            f"installed; install it with pip install 'minivision[data]'"
        ) from exc


def read_image(path) -> np.ndarray:
    """Read an image file as a (3, H, W) float32 array in [0, 1] (grey and RGBA become RGB)."""
    image_module = require("PIL.Image", "reading images")
    try:
        with image_module.open(path) as img:
            rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {str(path)!r} does not exist") from None
    except OSError as exc:  # Pillow's UnidentifiedImageError and truncated files are OSErrors
        raise ValueError(f"image file {str(path)!r} could not be decoded: {exc}") from exc
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)) / np.float32(255.0)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight (K, 4) float32 xyxy boxes around (K, H, W) boolean masks.

    An empty mask gets the box (0, 0, 0, 0); callers drop such instances.
    """
    masks = np.asarray(masks, dtype=bool)
    boxes = np.zeros((masks.shape[0], 4), dtype=np.float32)
    for k, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if rows.size:
            boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def _source_positions(in_size: int, out_size: int) -> np.ndarray:
    """Source coordinate of each output pixel centre (half-pixel alignment, like
    ``F.interpolate(align_corners=False)``), in input pixel-centre units."""
    return (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes (..., H, W) -> (..., out_h, out_w).

    Used for masks and label maps, whose values must not be blended.
    """
    out_h, out_w = size
    in_h, in_w = array.shape[-2:]
    rows = np.clip(np.floor(_source_positions(in_h, out_h) + 0.5).astype(np.int64), 0, in_h - 1)
    cols = np.clip(np.floor(_source_positions(in_w, out_w) + 0.5).astype(np.int64), 0, in_w - 1)
    return array[..., rows[:, None], cols[None, :]]


def _linear_taps(in_size: int, out_size: int):
    """For each output position: the two source indices and the weight of the second."""
    src = np.clip(_source_positions(in_size, out_size), 0, in_size - 1)
    low = np.floor(src).astype(np.int64)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, (src - low).astype(np.float32)


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a (C, H, W) float image to (C, out_h, out_w), half-pixel aligned."""
    out_h, out_w = size
    low, high, weight = _linear_taps(image.shape[-2], out_h)
    image = image[:, low, :] * (1 - weight)[:, None] + image[:, high, :] * weight[:, None]
    low, high, weight = _linear_taps(image.shape[-1], out_w)
    image = image[:, :, low] * (1 - weight) + image[:, :, high] * weight
    return image.astype(np.float32, copy=False)
