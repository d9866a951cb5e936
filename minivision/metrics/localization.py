"""Classification-with-localization accuracy (the ILSVRC localization task, as in the lecture)."""

from __future__ import annotations

import math

import numpy as np

from minivision.metrics._inputs import read_images
from minivision.ops import box_iou


def localization_accuracy(predictions, targets, iou_threshold=0.5, top_k=1) -> float:
    """Share of images whose prediction names a right class in the right place.

    An image counts as correct when one of its ``top_k`` highest-scoring predictions has
    the label of a ground-truth box and IoU strictly above ``iou_threshold`` with it
    (``top_k=5`` is ILSVRC's top-5 localization). Images without ground truth are not
    counted; an image without predictions counts as wrong. Inputs are the same dicts as
    :func:`evaluate_detections` (``difficult`` is not used). NaN when no image has ground truth.
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")
    correct = counted = 0
    for dets, gts in read_images(predictions, targets):
        if len(gts.boxes) == 0:
            continue
        counted += 1
        best = np.argsort(-dets.scores, kind="stable")[:top_k]
        overlaps = box_iou(dets.boxes[best], gts.boxes) > iou_threshold
        same_class = dets.labels[best][:, None] == gts.labels[None, :]
        correct += bool((overlaps & same_class).any())
    return correct / counted if counted else math.nan
