"""The Dataset protocol, the target format every dataset here returns, and Subset.

A dataset is anything with ``__len__`` and ``__getitem__(index) -> sample``. The
datasets in ``minivision.data`` return ``(image, target)``:

- ``image``: (3, H, W) float32 NumPy array in [0, 1] (a Tensor after ``ToTensor``).
- ``target``: a dict of NumPy arrays, with the keys the dataset provides among
    ``boxes``     (K, 4) float32, xyxy in continuous pixel coordinates (a pixel (r, c)
                  covers [c, c + 1) x [r, r + 1)); K may be 0, then the shape is (0, 4)
    ``labels``    (K,) int64 in 1..num_classes; 0 is reserved for the background
    ``masks``     (K, H, W) bool instance masks (visible part only)
    ``difficult`` (K,) bool (VOC), ``iscrowd`` (K,) bool (COCO)
    ``semantic``  (H, W) int64: 0 background, k for class k, 255 void (VOC)
    ``image_id``  int index (synthetic), int COCO image id, or str VOC file stem.

Per-instance entries (``INSTANCE_KEYS``) always have the same K and stay aligned
through every transform.
"""

from __future__ import annotations

import numpy as np

INSTANCE_KEYS = ("boxes", "labels", "masks", "difficult", "iscrowd")


def set_epoch(obj, epoch: int) -> None:
    """Tell ``obj`` (dataset, transform) which epoch starts, if it cares (random augmentation)."""
    if hasattr(obj, "set_epoch"):
        obj.set_epoch(epoch)


def empty_target() -> dict:
    """Boxes (0, 4) float32 and labels (0,) int64: what an image without objects has."""
    return {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}


class Dataset:
    """Base class: subclass and implement ``__len__`` and ``load(index)``.

    ``__getitem__`` then checks the index (negative indices count from the end, like a
    list), calls ``load`` and applies ``self.transform(image, target)`` when one is set.
    Subclasses may override ``__getitem__`` instead; the DataLoader only needs the protocol.
    """

    transform = None

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def load(self, index: int):
        raise NotImplementedError(
            f"{type(self).__name__} must implement load(index) or __getitem__"
        )

    def __getitem__(self, index):
        sample = self.load(check_index(index, len(self)))
        if self.transform is not None:
            sample = self.transform(*sample)
        return sample

    def set_epoch(self, epoch: int) -> None:
        """Reseed random transforms for ``epoch`` so augmentation reproduces on resume."""
        set_epoch(self.transform, epoch)


def check_index(index, length: int) -> int:
    """``index`` as a non-negative int below ``length``; IndexError otherwise (ends ``for`` loops)."""
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"dataset index must be an integer, got {type(index).__name__}")
    index = int(index)
    if not -length <= index < length:
        raise IndexError(f"dataset index {index} is out of range for a dataset of length {length}")
    return index % length


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = [
            check_index(i, len(dataset)) for i in np.asarray(indices, dtype=np.int64).ravel()
        ]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[self.indices[check_index(index, len(self))]]

    def set_epoch(self, epoch: int) -> None:
        set_epoch(self.dataset, epoch)


def check_seed(seed, name: str = "seed") -> int:
    """A non-negative int seed, or a ValueError/TypeError naming ``name``."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed}")
    return int(seed)


def resolve_seed(seed, name: str = "seed") -> int:
    """``seed`` checked, or fresh OS entropy when it is None (so a run is still
    self-consistent, e.g. ``set_epoch`` repeats an epoch, but differs between runs)."""
    return np.random.SeedSequence().entropy if seed is None else check_seed(seed, name)
