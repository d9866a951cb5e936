"""Semantic segmentation scores from a confusion matrix accumulated over batches.

The four metrics of the FCN paper (Long et al., 2015), with n_ij the number of pixels of
class i predicted as class j and t_i = sum_j n_ij the pixels of class i:
pixel accuracy sum_i n_ii / sum_i t_i; mean accuracy mean_i n_ii / t_i; mean IoU
mean_i n_ii / (t_i + sum_j n_ji - n_ii); frequency-weighted IoU
sum_i t_i * IoU_i / sum_i t_i.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivision.backend import get_array_module, to_numpy
from minivision.ops._arrays import unwrap


@dataclass(frozen=True)
class SegmentationScores:
    """Scores of one :meth:`SegmentationMetric.compute`. Per-class arrays are ``(C,)``
    with NaN for classes that never occur (neither in targets nor, for IoU, in
    predictions); the means skip those NaNs."""

    pixel_accuracy: float
    mean_accuracy: float
    mean_iou: float
    frequency_weighted_iou: float
    per_class_iou: np.ndarray
    per_class_accuracy: np.ndarray


def _ratio(numerator, denominator):
    """numerator / denominator, NaN where the denominator is 0 (the class never occurs)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def _nanmean(values) -> float:
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else float("nan")


class SegmentationMetric:
    """Confusion-matrix accumulator: call ``update`` per batch, then ``compute``.

    Args:
        num_classes: number of classes C; labels are 0 .. C-1.
        ignore_index: target label of pixels left out of every score (255 in VOC).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.confusion_matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred, target) -> None:
        """Add a batch.

        Args:
            pred: ``(N, H, W)`` integer labels, or ``(N, C, H, W)`` scores (argmax over C).
            target: ``(N, H, W)`` integer labels in [0, C) or ``ignore_index``.
        """
        pred, _ = unwrap(pred)
        target, _ = unwrap(target)
        xp = get_array_module(pred, target)
        if target.dtype.kind not in "iu":
            raise TypeError(f"target must hold integer labels, got dtype {target.dtype}")
        if pred.ndim == target.ndim + 1 and pred.shape[1] == self.num_classes:
            pred = pred.argmax(axis=1)
        if pred.shape != target.shape:
            raise ValueError(
                f"pred must have the shape of target {tuple(target.shape)} (labels) or "
                f"{tuple(target.shape[:1]) + (self.num_classes,) + tuple(target.shape[1:])} (scores), "
                f"got {tuple(pred.shape)}"
            )
        if pred.dtype.kind not in "iu":
            raise TypeError(
                f"pred labels must be integers (or pass (N, C, H, W) scores), got dtype {pred.dtype}"
            )
        valid = target != self.ignore_index
        target, pred = target[valid].astype(np.int64), pred[valid].astype(np.int64)
        for name, labels in (("target", target), ("pred", pred)):
            outside = (labels < 0) | (labels >= self.num_classes)
            if bool(outside.any()):
                raise ValueError(
                    f"{name} holds label {int(labels[outside][0])} at a non-ignored pixel; expected "
                    f"labels in [0, {self.num_classes}) or target == ignore_index={self.ignore_index}"
                )
        if (
            target.size
        ):  # every pixel ignored adds nothing (and CuPy's bincount refuses an empty array)
            counts = xp.bincount(target * self.num_classes + pred, minlength=self.num_classes**2)
            self.confusion_matrix += to_numpy(counts).reshape(self.num_classes, self.num_classes)

    def compute(self) -> SegmentationScores:
        """Scores of everything added since construction or the last ``reset``."""
        matrix = self.confusion_matrix.astype(np.float64)
        correct = np.diag(matrix)
        per_target = matrix.sum(axis=1)  # t_i
        per_prediction = matrix.sum(axis=0)  # sum_j n_ji
        total = per_target.sum()
        per_class_iou = _ratio(correct, per_target + per_prediction - correct)
        per_class_accuracy = _ratio(correct, per_target)
        # Classes absent from the targets weigh 0 (their IoU may be NaN: never predicted either).
        weighted = np.where(per_target > 0, per_target * per_class_iou, 0.0)
        return SegmentationScores(
            pixel_accuracy=float(correct.sum() / total) if total else float("nan"),
            mean_accuracy=_nanmean(per_class_accuracy),
            mean_iou=_nanmean(per_class_iou),
            frequency_weighted_iou=float(weighted.sum() / total) if total else float("nan"),
            per_class_iou=per_class_iou,
            per_class_accuracy=per_class_accuracy,
        )
