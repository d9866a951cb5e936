"""Non-maximum suppression: ``nms`` and the per-class ``batched_nms``.

Greedy NMS: walk the boxes by decreasing score, keep a box unless a kept box overlaps it
with IoU strictly greater than ``iou_threshold``. Ties in score go to the lower index
(a stable sort on the negated scores), so the result is deterministic. IoUs are
``box_iou``'s: a zero-area box neither suppresses nor is suppressed, and copies of a box
of any positive size (areas that under- or overflow the dtype included) keep one copy
whenever the threshold is below 1.
"""
from __future__ import annotations

import math

import numpy as np

from minivision.backend import get_array_module
from minivision.ops import _cpu_kernels, _cuda_kernels
from minivision.ops._arrays import as_float, check_boxes, check_finite, check_vector, unwrap


def _check_threshold(iou_threshold) -> float:
    try:
        value = float(iou_threshold)
    except (TypeError, ValueError):
        raise TypeError(f"iou_threshold must be a number in [0, 1], got {iou_threshold!r}") from None
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
    return raw_boxes, raw_scores, _check_threshold(iou_threshold), xp, wrap


def _suppress(boxes, scores, groups, iou_threshold, xp):
    """Kept indices (int64, score order) for boxes that only suppress within their group."""
    if boxes.shape[0] == 0:
        return xp.zeros(0, np.int64)
    score_order = xp.argsort(-scores, kind="stable")
    grouped = groups is not None
    if not grouped:
        groups = xp.zeros(boxes.shape[0], np.int64)
    if xp is not np:
        return _cuda_kernels.nms(boxes, score_order, groups, iou_threshold)
    if grouped:
        spatial_order = np.lexsort((boxes[:, 0], groups))
    else:
        spatial_order = np.argsort(boxes[:, 0], kind="stable")
    return _cpu_kernels.nms_sweep(np.ascontiguousarray(boxes), score_order, spatial_order,
                                  groups, iou_threshold)


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
    raw_boxes, raw_scores, threshold, xp, wrap = _check_inputs(boxes, scores, iou_threshold)
    return wrap(_suppress(raw_boxes, raw_scores, None, threshold, xp))


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
    raw_boxes, raw_scores, threshold, xp, wrap = _check_inputs(boxes, scores, iou_threshold)
    raw_idxs, _ = unwrap(idxs)
    get_array_module(raw_boxes, raw_idxs)  # raises when idxs sits on another device
    check_vector(raw_idxs, "idxs", raw_boxes.shape[0])
    if raw_idxs.dtype.kind not in "iu":
        raise TypeError(f"idxs must be an integer array (category of each box), got dtype {raw_idxs.dtype}")
    # The kernels compare groups within one run of the spatial order, never across
    # categories, so no coordinate offsets (and their float32 rounding) are needed.
    return wrap(_suppress(raw_boxes, raw_scores, raw_idxs.astype(np.int64, copy=False), threshold, xp))
