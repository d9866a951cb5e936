"""Paired transforms: each takes and returns ``(image, target)``, moving boxes and masks
with the image.

``image`` is a (C, H, W) array (a Tensor is accepted and becomes a NumPy array, except
through ``ToTensor``); ``target`` is a dict as described in ``minivision.data.dataset``
(missing keys are simply skipped). Transforms return new dicts and never change their
input in place.

Random transforms draw from their own generator: ``seed`` fixes it, and ``set_epoch(e)``
(called by the DataLoader through the dataset) reseeds it with ``[seed, e]``, so a run and
its resumed copy see the same augmentation.
"""

from __future__ import annotations

import numpy as np

from minivision.data._image import masks_to_boxes, resize_bilinear, resize_nearest
from minivision.data.dataset import INSTANCE_KEYS, resolve_seed, set_epoch
from minivision.tensor import Tensor, to_host


def _as_array(image) -> np.ndarray:
    array = to_host(image)
    if array.ndim != 3:
        raise ValueError(f"image must have shape (C, H, W), got shape {array.shape}")
    return array


def _pair(size, name: str) -> tuple[int, int]:
    """An int or (h, w) of positive ints, as (h, w)."""
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in pair
    ):
        raise ValueError(f"{name} must be a positive int or a (height, width) pair, got {size!r}")
    return int(pair[0]), int(pair[1])


def _select(target: dict, keep: np.ndarray) -> dict:
    """The target with only the instances where ``keep`` is True (all per-instance keys)."""
    return {k: (v[keep] if k in INSTANCE_KEYS else v) for k, v in target.items()}


class Compose:
    """Apply transforms in order: ``Compose([Resize(64), RandomHorizontalFlip(0.5), ToTensor()])``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, target):
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target

    def set_epoch(self, epoch: int) -> None:
        for transform in self.transforms:
            set_epoch(transform, epoch)

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class Resize:
    """Resize to ``size`` (int: square, or (height, width)): bilinear for the image,
    nearest for masks and the semantic map, boxes scaled by the same factors.

    An instance thinner than a pixel after shrinking may lose every mask pixel; its box
    is kept (boxes are scaled exactly, masks are sampled).
    """

    def __init__(self, size):
        self.size = _pair(size, "size")

    def __call__(self, image, target):
        image = _as_array(image)
        (in_h, in_w), (out_h, out_w) = image.shape[-2:], self.size
        target = dict(target)
        if "boxes" in target:
            scale = np.array([out_w / in_w, out_h / in_h] * 2, dtype=np.float32)
            target["boxes"] = (target["boxes"] * scale).astype(np.float32)
        for key in ("masks", "semantic"):
            if key in target:
                target[key] = resize_nearest(target[key], self.size)
        return resize_bilinear(image.astype(np.float32, copy=False), self.size), target

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class _RandomTransform:
    """Holds the generator of a random transform; ``set_epoch`` reseeds it per epoch."""

    def __init__(self, seed):
        self.seed = resolve_seed(seed)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.rng = np.random.default_rng([self.seed, epoch])


class RandomHorizontalFlip(_RandomTransform):
    """Mirror left-right with probability ``p``: x1' = W - x2, x2' = W - x1, masks flipped."""

    def __init__(self, p: float = 0.5, seed=None):
        if not 0 <= p <= 1:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        super().__init__(seed)

    def __call__(self, image, target):
        image = _as_array(image)
        if self.rng.random() >= self.p:
            return image, target
        width = image.shape[-1]
        target = dict(target)
        if "boxes" in target:
            boxes = target["boxes"]
            target["boxes"] = np.stack(
                [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1
            )
        for key in ("masks", "semantic"):
            if key in target:
                target[key] = target[key][..., ::-1].copy()
        return image[..., ::-1].copy(), target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop(_RandomTransform):
    """Cut a random ``size`` window (int: square, or (height, width)) out of the image.

    Each box is clipped to the window and kept when at least ``min_area_fraction`` of its
    area remains (and some area does); dropped boxes take their labels, masks and flags
    with them. When the target has masks, a kept box is re-fitted tightly around its
    cropped mask (clipping a triangle's box is not its tight box), and an instance whose
    mask left the window is dropped. Raises ValueError for an image smaller than ``size``.
    """

    def __init__(self, size, min_area_fraction: float = 0.5, seed=None):
        self.size = _pair(size, "size")
        if not 0 <= min_area_fraction <= 1:
            raise ValueError(f"min_area_fraction must be in [0, 1], got {min_area_fraction!r}")
        self.min_area_fraction = float(min_area_fraction)
        super().__init__(seed)

    def __call__(self, image, target):
        image = _as_array(image)
        (height, width), (out_h, out_w) = image.shape[-2:], self.size
        if out_h > height or out_w > width:
            raise ValueError(
                f"RandomCrop size {self.size} is larger than the image ({height}, {width})"
            )
        top = int(self.rng.integers(height - out_h + 1))
        left = int(self.rng.integers(width - out_w + 1))
        window = (slice(top, top + out_h), slice(left, left + out_w))
        target = dict(target)
        for key in ("masks", "semantic"):
            if key in target:
                target[key] = target[key][(..., *window)]
        if "boxes" in target:
            target = self._crop_boxes(target, top, left)
        return image[(..., *window)].copy(), target

    def _crop_boxes(self, target: dict, top: int, left: int) -> dict:
        boxes = target["boxes"]
        shifted = boxes - np.array([left, top, left, top], dtype=np.float32)
        clipped = np.clip(shifted, 0, [self.size[1], self.size[0]] * 2).astype(np.float32)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        remaining = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        keep = (remaining > 0) & (remaining >= self.min_area_fraction * area)
        target["boxes"] = clipped
        if "masks" in target:
            keep &= target["masks"].any(axis=(1, 2))
            target["boxes"] = masks_to_boxes(target["masks"])
        return _select(target, keep)

    def __repr__(self) -> str:
        return f"RandomCrop({self.size}, min_area_fraction={self.min_area_fraction})"


class Normalize:
    """``(image - mean) / std`` per channel; the target passes through unchanged."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        if self.mean.shape != self.std.shape:
            raise ValueError(
                f"mean and std must have the same length, got {self.mean.size} and {self.std.size}"
            )
        if np.any(self.std <= 0):
            raise ValueError(f"std must be positive, got {self.std.ravel().tolist()}")

    def __call__(self, image, target):
        image = _as_array(image)
        if image.shape[0] != self.mean.shape[0]:
            raise ValueError(
                f"Normalize has {self.mean.shape[0]} channels of mean/std, "
                f"the image has {image.shape[0]} (shape {image.shape})"
            )
        return ((image - self.mean) / self.std).astype(np.float32), target

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


class ToTensor:
    """The image as a float32 ``mv.Tensor`` (C, H, W); the target stays NumPy arrays."""

    def __call__(self, image, target):
        return Tensor(_as_array(image).astype(np.float32)), target

    def __repr__(self) -> str:
        return "ToTensor()"
