"""DataLoader and collate functions.

A batch from ``detection_collate`` (the default for ``(image, target-dict)`` samples) is
``(images, targets)``: ``images`` an ``mv.Tensor`` (N, C, H, W) float32 on the CPU,
``targets`` a list of N dicts of NumPy arrays as the dataset returned them (a different
number of boxes per image, possibly 0). ``segmentation_collate`` gives ``(images,
semantic)`` with ``semantic`` an int64 ``mv.Tensor`` (N, H, W).

Shuffling is reproducible: the order of epoch ``e`` is a permutation drawn from
``np.random.default_rng([seed, e])``. Epochs differ, a seed reproduces the whole run, and
``set_epoch(e)`` jumps to any epoch's order, so a resumed run sees the same batches as an
uninterrupted one.
"""

from __future__ import annotations

import numpy as np

from minivision.backend import device_of
from minivision.data.dataset import resolve_seed, set_epoch
from minivision.tensor import Tensor, to_host


def _stack(values, what: str) -> Tensor:
    """Stack same-shaped arrays/Tensors/numbers into one Tensor (floats as float32)."""
    arrays = [to_host(v) for v in values]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"cannot batch {what}: samples have different shapes {sorted(shapes)}; "
            f"resize them to one size (e.g. transforms.Resize) first"
        )
    stacked = np.stack(arrays)
    if stacked.dtype.kind == "f":
        stacked = stacked.astype(np.float32, copy=False)
    elif stacked.dtype.kind in "iu":
        stacked = stacked.astype(np.int64, copy=False)
    return Tensor(stacked)


def _is_stackable(value) -> bool:
    return (
        isinstance(value, (Tensor, np.ndarray, np.number, int, float)) or device_of(value) == "cuda"
    ) and not isinstance(value, bool)


def default_collate(samples: list):
    """Batch a list of samples field by field.

    Tuples are collated per position; arrays, Tensors and numbers are stacked into one
    Tensor (floats float32, integers int64); anything else (dicts of per-image targets,
    strings) is kept as a list of length N.
    """
    first = samples[0]
    if isinstance(first, (tuple, list)):
        return tuple(default_collate([s[i] for s in samples]) for i in range(len(first)))
    if _is_stackable(first):
        return _stack(samples, "samples")
    return list(samples)


def _check_pairs(samples: list, form: str) -> None:
    for i, sample in enumerate(samples):
        if not (
            isinstance(sample, (tuple, list)) and len(sample) == 2 and isinstance(sample[1], dict)
        ):
            raise TypeError(f"sample {i} of the batch must be {form}, got {type(sample).__name__}")


def detection_collate(samples: list):
    """``[(image (C, H, W), target dict), ...]`` -> ``(Tensor (N, C, H, W) float32, [target, ...])``."""
    _check_pairs(samples, "an (image, target dict) pair")
    return _stack([s[0] for s in samples], "images"), [s[1] for s in samples]


def segmentation_collate(samples: list):
    """``[(image, {"semantic": (H, W)}), ...]`` -> ``(Tensor (N, C, H, W), Tensor (N, H, W) int64)``."""
    _check_pairs(samples, "an (image, target dict with 'semantic') pair")
    missing = [i for i, s in enumerate(samples) if "semantic" not in s[1]]
    if missing:
        raise ValueError(
            f"segmentation_collate needs target['semantic']; samples {missing} have none"
        )
    return _stack([s[0] for s in samples], "images"), _stack(
        [s[1]["semantic"] for s in samples], "semantic masks"
    )


class DataLoader:
    """Iterate over ``dataset`` in batches.

    Args:
        dataset: anything with ``__len__`` and ``__getitem__``.
        batch_size: samples per batch (the last one may be smaller unless ``drop_last``).
        shuffle: visit the samples in a new random order each epoch.
        seed: seed of the shuffling (None: fresh entropy, so runs differ); epoch ``e``
            uses ``np.random.default_rng([seed, e])``.
        drop_last: skip the final batch when it is smaller than ``batch_size``.
        collate_fn: list of samples -> batch; default ``default_collate``, which for
            ``(image, target dict)`` samples gives what ``detection_collate`` gives.

    Each ``iter(loader)`` plays the current epoch (0 at first) and advances the counter;
    ``set_epoch(e)`` chooses the epoch the next iteration plays, and forwards it to the
    dataset (``dataset.set_epoch``) so random transforms reproduce too.
    """

    def __init__(
        self,
        dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        seed=None,
        drop_last: bool = False,
        collate_fn=None,
    ):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                f"dataset must have __len__ and __getitem__, got {type(dataset).__name__}"
            )
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = resolve_seed(seed)
        self.drop_last = bool(drop_last)
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration play epoch ``epoch`` (0-based)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices epoch ``epoch`` visits, in order."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        set_epoch(self.dataset, epoch)
        return self._batches(self.order(epoch))

    def _batches(self, order: np.ndarray):
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            indices = order[start : start + self.batch_size]
            yield self.collate_fn([self.dataset[int(i)] for i in indices])
