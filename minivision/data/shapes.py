"""Shapes: circles, rectangles and triangles on a textured background, made on the fly.

Sample ``i`` is drawn from ``np.random.default_rng([seed, i])`` alone (see CanvasDataset).
"""
from __future__ import annotations

import numpy as np

from minivision.data._canvas import CanvasDataset

SHAPE_CLASSES = ("circle", "rectangle", "triangle")


def _circle(y, x, rng, lo, hi, size):
    radius = rng.uniform(lo, hi) / 2
    cy, cx = rng.uniform(radius, size - radius, size=2)
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2


def _rectangle(y, x, rng, lo, hi, size):
    h, w = rng.uniform(lo, hi, size=2)
    top, left = rng.uniform(0, size - h), rng.uniform(0, size - w)
    return (y >= top) & (y <= top + h) & (x >= left) & (x <= left + w)


def _triangle(y, x, rng, lo, hi, size):
    h, w = rng.uniform(lo, hi, size=2)
    top, left = rng.uniform(0, size - h), rng.uniform(0, size - w)
    apex_y, base_y = (top, top + h) if rng.random() < 0.5 else (top + h, top)  # point up or down
    corners = [(left + rng.uniform(0, w), apex_y), (left, base_y), (left + w, base_y)]
    # inside = on the same side of all three edges (the sign of each edge's cross product)
    sides = [(bx - ax) * (y - ay) - (by - ay) * (x - ax)
             for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1])]
    return np.all([s >= 0 for s in sides], axis=0) | np.all([s <= 0 for s in sides], axis=0)


_DRAW = {"circle": _circle, "rectangle": _rectangle, "triangle": _triangle}


class Shapes(CanvasDataset):
    """Synthetic detection and segmentation data: filled shapes over a textured background.

    Args:
        num_images: dataset length.
        image_size: images are (3, image_size, image_size); at least 16.
        min_objects, max_objects: objects per image, drawn uniformly in this range (a
            crowded canvas may hold fewer: every object stays at least 40% visible).
        classes: a subset of ("circle", "rectangle", "triangle"); label k (1-based) is
            ``classes[k - 1]``, 0 is the background.
        noise: std of the Gaussian pixel noise, in [0, 1].
        seed: sample i depends on (seed, i) only.
        transform: optional ``transform(image, target) -> (image, target)``.

    Items are ``(image (3, S, S) float32 in [0, 1], target)`` with target keys boxes,
    labels, masks, semantic, image_id (see ``minivision.data.dataset``).
    """

    def __init__(self, num_images: int, image_size: int = 64, min_objects: int = 1, max_objects: int = 3,
                 classes=SHAPE_CLASSES, noise: float = 0.05, seed: int = 0, transform=None):
        super().__init__(num_images, image_size, min_objects, max_objects, noise, seed, transform)
        classes = (classes,) if isinstance(classes, str) else tuple(classes)
        unknown = [c for c in classes if c not in SHAPE_CLASSES]
        if not classes or unknown or len(set(classes)) != len(classes):
            raise ValueError(f"classes must be distinct names from {SHAPE_CLASSES}, got {classes}")
        self.class_names = classes

    def _sample_object(self, rng):
        size = self.image_size
        y, x = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
        label = int(rng.integers(len(self.class_names))) + 1
        draw = _DRAW[self.class_names[label - 1]]
        return draw(y, x, rng, 0.15 * size, 0.45 * size, size), label
