"""Shapes: circles, rectangles and triangles on a textured background, made on the fly.

Sample ``i`` is drawn from ``np.random.default_rng([seed, i])`` alone (see CanvasDataset).
"""

from __future__ import annotations

from numbers import Real

import numpy as np

from minivision.data._canvas import CanvasDataset

SHAPE_CLASSES = ("circle", "rectangle", "triangle")
MIN_OBJECT_SIZE = 4  # px: at this side every shape still covers at least MIN_PIXELS pixel centres


# Each draw function returns an (S, S) bool mask; sides(rng, count) draws its sizes in pixels.
def _circle(y, x, rng, sides, size):
    radius = sides(rng, None) / 2
    cy, cx = rng.uniform(radius, size - radius, size=2)
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius**2


def _rectangle(y, x, rng, sides, size):
    h, w = sides(rng, 2)
    top, left = rng.uniform(0, size - h), rng.uniform(0, size - w)
    return (y >= top) & (y <= top + h) & (x >= left) & (x <= left + w)


def _triangle(y, x, rng, sides, size):
    h, w = sides(rng, 2)
    top, left = rng.uniform(0, size - h), rng.uniform(0, size - w)
    apex_y, base_y = (top, top + h) if rng.random() < 0.5 else (top + h, top)  # point up or down
    corners = [(left + rng.uniform(0, w), apex_y), (left, base_y), (left + w, base_y)]
    # inside = on the same side of all three edges (the sign of each edge's cross product)
    crosses = [
        (bx - ax) * (y - ay) - (by - ay) * (x - ax)
        for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1])
    ]
    return np.all([c >= 0 for c in crosses], axis=0) | np.all([c <= 0 for c in crosses], axis=0)


_DRAW = {"circle": _circle, "rectangle": _rectangle, "triangle": _triangle}


def _check_object_sizes(object_sizes, image_size: int) -> tuple[float, float]:
    """``object_sizes`` as a (low, high) pair of floats, or a one-line error naming it."""
    expected = (
        f"(low, high) pixels with {MIN_OBJECT_SIZE} <= low <= high <= image_size ({image_size})"
    )
    try:
        low, high = object_sizes
    except (TypeError, ValueError):
        raise TypeError(f"object_sizes must be {expected}, got {object_sizes!r}") from None
    if not all(isinstance(v, Real) and not isinstance(v, (bool, np.bool_)) for v in (low, high)):
        raise TypeError(f"object_sizes must be {expected}, got {object_sizes!r}")
    if not MIN_OBJECT_SIZE <= low <= high <= image_size:  # also rejects NaN
        raise ValueError(f"object_sizes must be {expected}, got {object_sizes!r}")
    return float(low), float(high)


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
        object_sizes: keyword only. None (default): a circle's diameter and a rectangle's
            or triangle's height and width are each drawn uniformly in
            [0.15, 0.45] * image_size. A pair (low, high) in pixels, with
            4 <= low <= high <= image_size: they are drawn log-uniformly in [low, high],
            so each scale (e.g. 8-16, 16-32 and 32-64 px) is equally common and small
            objects are as frequent as large ones, the spread SSD's multi-scale heads are
            built for. Height and width are drawn independently, so aspect ratios reach
            high / low. Sizes are of the drawn shape; the target box of an object partly
            covered by a later one is that of its visible part.

    Items are ``(image (3, S, S) float32 in [0, 1], target)`` with target keys boxes,
    labels, masks, semantic, image_id (see ``minivision.data.dataset``).
    """

    def __init__(
        self,
        num_images: int,
        image_size: int = 64,
        min_objects: int = 1,
        max_objects: int = 3,
        classes=SHAPE_CLASSES,
        noise: float = 0.05,
        seed: int = 0,
        transform=None,
        *,
        object_sizes=None,
    ):
        super().__init__(num_images, image_size, min_objects, max_objects, noise, seed, transform)
        classes = (classes,) if isinstance(classes, str) else tuple(classes)
        unknown = [c for c in classes if c not in SHAPE_CLASSES]
        if not classes or unknown or len(set(classes)) != len(classes):
            raise ValueError(f"classes must be distinct names from {SHAPE_CLASSES}, got {classes}")
        self.class_names = classes
        self.object_sizes = (
            None if object_sizes is None else _check_object_sizes(object_sizes, self.image_size)
        )

    def _sides(self, rng: np.random.Generator, count):
        """``count`` object sides in pixels (a float when count is None), as ``object_sizes`` says."""
        if self.object_sizes is None:
            return rng.uniform(0.15 * self.image_size, 0.45 * self.image_size, size=count)
        low, high = np.log(self.object_sizes)
        return np.exp(rng.uniform(low, high, size=count))

    def _sample_object(self, rng):
        size = self.image_size
        y, x = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
        label = int(rng.integers(len(self.class_names))) + 1
        draw = _DRAW[self.class_names[label - 1]]
        return draw(y, x, rng, self._sides, size), label
