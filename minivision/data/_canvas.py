"""Scene composition shared by the synthetic datasets (Shapes, DigitsOnCanvas).

A scene is a textured background with objects painted one after another, later objects
on top. Each object comes from a dataset-specific ``sample_object(rng) -> (mask, label)``;
the canvas chooses its colour, rejects placements that would hide too much of an object
already there, and builds the target from the visible masks, so image, instance masks,
boxes and semantic mask always agree.
"""

from __future__ import annotations

import logging

import numpy as np

from minivision.data._image import masks_to_boxes, resize_bilinear
from minivision.data.dataset import Dataset, check_seed

log = logging.getLogger(__name__)

MIN_VISIBLE_FRACTION = 0.4  # an object must keep this share of its pixels when others cover it
MIN_PIXELS = 4  # smaller objects are too small to annotate meaningfully
PLACEMENT_ATTEMPTS = 30
MIN_CONTRAST = 0.35  # largest channel difference between object and background colour


def textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(3, size, size) float32: a base colour, smooth blotches and faint stripes."""
    base = rng.uniform(0.3, 0.7, size=(3, 1, 1))
    coarse = rng.normal(0.0, 0.08, size=(3, 5, 5)).astype(np.float32)
    blotches = resize_bilinear(coarse, (size, size))
    angle, period, phase = rng.uniform(0, np.pi), rng.uniform(4, 12), rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:size, 0:size] + 0.5
    stripes = 0.04 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase)
    return np.clip(base + blotches + stripes, 0.0, 1.0).astype(np.float32)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A colour differing from the mean background colour by MIN_CONTRAST in some channel."""
    mean = background.mean(axis=(1, 2))
    while True:  # the accepted region is most of the cube, so this ends after a few draws
        colour = rng.uniform(0.0, 1.0, size=3)
        if np.abs(colour - mean).max() >= MIN_CONTRAST:
            return colour.astype(np.float32)


def _fits(new_mask: np.ndarray, visible: list, areas: list) -> bool:
    """Whether every object already placed keeps enough visible pixels under ``new_mask``."""
    return all((v & ~new_mask).sum() >= MIN_VISIBLE_FRACTION * a for v, a in zip(visible, areas))


def render_scene(
    rng: np.random.Generator, size: int, num_objects: int, sample_object, noise: float
) -> tuple[np.ndarray, dict]:
    """Paint up to ``num_objects`` objects on a textured (3, size, size) canvas.

    Returns the image (float32 in [0, 1], Gaussian noise of std ``noise`` added) and the
    target: boxes (K, 4), labels (K,), masks (K, size, size), semantic (size, size).
    Fewer than ``num_objects`` objects appear only when a crowded canvas leaves no
    placement that keeps every object visible enough.
    """
    image = textured_background(rng, size)
    visible, areas, labels = [], [], []
    for _ in range(num_objects):
        for _ in range(PLACEMENT_ATTEMPTS):
            mask, label = sample_object(rng)
            if mask.sum() >= MIN_PIXELS and _fits(mask, visible, areas):
                break
        else:
            log.debug("no room for another object after %d attempts", PLACEMENT_ATTEMPTS)
            break
        image[:, mask] = _contrasting_colour(rng, image)[:, None]
        visible = [v & ~mask for v in visible] + [mask]
        areas.append(int(mask.sum()))
        labels.append(label)
    if noise > 0:
        image = np.clip(image + rng.normal(0.0, noise, size=image.shape), 0.0, 1.0).astype(
            np.float32
        )
    masks = np.array(visible, dtype=bool).reshape(len(visible), size, size)
    semantic = np.zeros((size, size), dtype=np.int64)
    for mask, label in zip(masks, labels):
        semantic[mask] = label
    target = {
        "boxes": masks_to_boxes(masks),
        "labels": np.array(labels, dtype=np.int64),
        "masks": masks,
        "semantic": semantic,
    }
    return image, target


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


class CanvasDataset(Dataset):
    """Base of the synthetic datasets: checks the shared knobs and renders sample ``i``
    from ``np.random.default_rng([seed, i])`` alone, so it is the same in every run,
    epoch and access order. Subclasses set ``class_names`` and ``_sample_object``."""

    class_names: tuple = ()

    def __init__(
        self,
        num_images,
        image_size,
        min_objects,
        max_objects,
        noise,
        seed,
        transform,
        size_name: str = "image_size",
    ):
        self.num_images = check_seed(num_images, "num_images")
        if not _is_int(image_size) or image_size < 16:
            raise ValueError(f"{size_name} must be an integer >= 16, got {image_size!r}")
        if not (_is_int(min_objects) and _is_int(max_objects) and 0 <= min_objects <= max_objects):
            raise ValueError(
                f"need integers 0 <= min_objects <= max_objects, got {min_objects!r} and {max_objects!r}"
            )
        if not 0 <= noise <= 1:
            raise ValueError(f"noise must be in [0, 1], got {noise!r}")
        self.image_size, self.min_objects, self.max_objects = (
            int(image_size),
            int(min_objects),
            int(max_objects),
        )
        self.noise = float(noise)
        self.seed = check_seed(seed)
        self.transform = transform

    @property
    def num_classes(self) -> int:
        """Number of object classes (the background, label 0, not counted)."""
        return len(self.class_names)

    def __len__(self) -> int:
        return self.num_images

    def _sample_object(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """One object on an empty canvas: its (S, S) bool mask and its label."""
        raise NotImplementedError

    def load(self, index: int):
        rng = np.random.default_rng([self.seed, index])
        count = int(rng.integers(self.min_objects, self.max_objects + 1))
        image, target = render_scene(rng, self.image_size, count, self._sample_object, self.noise)
        target["image_id"] = index
        return image, target
