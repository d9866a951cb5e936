"""Non-maximum suppression: ``nms`` and the per-class ``batched_nms``.

Greedy NMS: walk the boxes by decreasing score, keep a box unless a kept box overlaps it
with IoU strictly greater than ``iou_threshold``. Ties in score go to the lower index
(a stable sort on the negated scores), so the result is deterministic. IoUs are
``box_iou``'s: a zero-area box neither suppresses nor is suppressed, and copies of a box
of any positive size (areas that under- or overflow the dtype included) keep one copy
whenever the threshold is below 1.

The NMS is ``minivision.reference.nms``'s; float32 and float64 boxes take its fast path
(``_nms_fast``: a Numba sweep on the CPU, bitmask NMS on the GPU), which keeps the same
boxes, unless the reference switch is on.
"""

from __future__ import annotations

import math

import numpy as np

from minivision.backend import get_array_module

# isort: split
# BEGIN FAST PATH iou, nms
from minivision.dispatch import fast_paths_enabled
from minivision.ops import _nms_fast

# END FAST PATH iou, nms
# isort: split
from minivision.ops._arrays import as_float, check_boxes, check_finite, check_vector, unwrap
from minivision.reference import nms as reference


def _check_threshold(iou_threshold) -> float:
    try:
        value = float(iou_threshold)
    except (TypeError, ValueError):
        raise TypeError(
            f"iou_threshold must be a number in [0, 1], got {iou_threshold!r}"
        ) from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")
    return value


def _check_inputs(boxes, scores, iou_threshold):
    raw_boxes, wrap = unwrap(boxes)
    raw_scores, _ = unwrap(scores)
    raw_boxes = check_boxes(raw_boxes)
    xp = get_array_module(raw_boxes, raw_scores)
    check_vector(raw_scores, "scores", raw_boxes.shape[0])
    raw_scores = as_float(raw_scores, "scores")
    check_finite(raw_scores, "scores", xp)
    return raw_boxes, raw_scores, _check_threshold(iou_threshold), wrap


def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression.

    Args:
        boxes: ``(N, 4)`` xyxy boxes.
        scores: ``(N,)`` scores.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box is
            strictly greater than this, in [0, 1].
    Returns:
        ``(K,)`` int64 indices of the kept boxes, by decreasing score (ties: lower index first).
    """
    raw_boxes, raw_scores, threshold, wrap = _check_inputs(boxes, scores, iou_threshold)
    # BEGIN FAST PATH iou, nms
    if fast_paths_enabled() and _nms_fast.takes(raw_boxes):
        return wrap(_nms_fast.nms(raw_boxes, raw_scores, None, threshold))
    # END FAST PATH iou, nms
    return wrap(reference.nms(raw_boxes, raw_scores, threshold))


def batched_nms(boxes, scores, idxs, iou_threshold):
    """NMS within each category: boxes with different ``idxs`` never suppress each other.

    Args:
        boxes: ``(N, 4)`` xyxy boxes.
        scores: ``(N,)`` scores.
        idxs: ``(N,)`` integer category (or image) of each box.
        iou_threshold: as in :func:`nms`.
    Returns:
        ``(K,)`` int64 indices of the kept boxes, by decreasing score over all categories.
    """
    raw_boxes, raw_scores, threshold, wrap = _check_inputs(boxes, scores, iou_threshold)
    raw_idxs, _ = unwrap(idxs)
    get_array_module(raw_boxes, raw_idxs)  # raises when idxs sits on another device
    check_vector(raw_idxs, "idxs", raw_boxes.shape[0])
    if raw_idxs.dtype.kind not in "iu":
        raise TypeError(
            f"idxs must be an integer array (category of each box), got dtype {raw_idxs.dtype}"
        )
    raw_idxs = raw_idxs.astype(np.int64, copy=False)
    # BEGIN FAST PATH iou, nms
    if fast_paths_enabled() and _nms_fast.takes(raw_boxes):
        return wrap(_nms_fast.nms(raw_boxes, raw_scores, raw_idxs, threshold))
    # END FAST PATH iou, nms
    return wrap(reference.batched_nms(raw_boxes, raw_scores, raw_idxs, threshold))
