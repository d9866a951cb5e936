"""The fast path of NMS: a Numba sweep on the CPU, blocked bitmask NMS on the GPU (``_nms_cuda``).

Both keep what ``minivision.reference.nms`` keeps, index for index: the same score order
(a stable sort on the negated scores), the same IoUs (``_cpu_kernels._pair_iou`` and its
CUDA twin, equal to ``reference.boxes.box_iou`` bit for bit) and the same comparison with
the threshold (in float64). Groups (``batched_nms``'s categories) only suppress within
themselves, so no coordinate offsets (and their float32 rounding) are needed.
"""

# FAST PATH FILE iou, nms
from __future__ import annotations

import numpy as np

from minivision._numba import njit
from minivision.backend import get_array_module
from minivision.dispatch import cuda_kernels_apply, numba_kernels_apply
from minivision.ops import _nms_cuda
from minivision.ops._cpu_kernels import _normal_range, _pair_iou


def takes(boxes) -> bool:
    """Whether these boxes (float32 or float64) have kernels: NumPy with Numba, or CuPy."""
    return numba_kernels_apply(boxes) or cuda_kernels_apply(boxes)


def nms(boxes, scores, groups, iou_threshold):
    """boxes (N, 4), scores (N,), groups (N,) int64 or None -> kept indices (K,) int64, by
    decreasing score (ties: lower index first); a box only suppresses boxes of its group."""
    xp = get_array_module(boxes)
    if boxes.shape[0] == 0:
        return xp.zeros(0, np.int64)
    score_order = xp.argsort(-scores, kind="stable")
    grouped = groups is not None
    if not grouped:
        groups = xp.zeros(boxes.shape[0], np.int64)
    if cuda_kernels_apply(boxes):
        return _nms_cuda.nms(boxes, score_order, groups, iou_threshold)
    if grouped:
        spatial_order = np.lexsort((boxes[:, 0], groups))
    else:
        spatial_order = np.argsort(boxes[:, 0], kind="stable")
    return nms_sweep(np.ascontiguousarray(boxes), score_order, spatial_order, groups, iou_threshold)


@njit(inline="always")
def _suppresses(p, q, x1, y1, x2, y2, area, normal, iou_threshold):
    """Whether kept box p drops box q: their IoU is above the threshold."""
    iou = _pair_iou(
        x1[p], y1[p], x2[p], y2[p], area[p], x1[q], y1[q], x2[q], y2[q], area[q], normal
    )
    return iou > iou_threshold


@njit(cache=True)
def nms_sweep(boxes, score_order, spatial_order, groups, iou_threshold):
    """Greedy NMS that only compares a kept box with its spatial neighbours.

    ``score_order`` lists box indices by decreasing score (ties already broken);
    ``spatial_order`` lists them sorted by ``(group, x1)``. A box can only overlap boxes
    of its group whose x1 lies in ``[x1 - widest box, x2)``, a contiguous run of the
    spatial order, so each kept box scans that run instead of all N boxes: the cost
    follows the number of neighbours along x (within one class for batched NMS), not
    N squared. Suppressed boxes are never scanned from, only skipped.
    Returns the kept indices (int64) in score order.
    """
    n = boxes.shape[0]
    # Boxes laid out in spatial order, so the neighbour scans read contiguous memory.
    x1 = np.empty(n, boxes.dtype)
    y1 = np.empty(n, boxes.dtype)
    x2 = np.empty(n, boxes.dtype)
    y2 = np.empty(n, boxes.dtype)
    group = np.empty(n, np.int64)
    position = np.empty(n, np.int64)  # box index -> place in the spatial order
    widest = 0.0
    for p in range(n):
        b = spatial_order[p]
        x1[p], y1[p], x2[p], y2[p] = boxes[b, 0], boxes[b, 1], boxes[b, 2], boxes[b, 3]
        group[p] = groups[b]
        position[b] = p
        widest = max(widest, np.float64(x2[p]) - np.float64(x1[p]))
    area = (x2 - x1) * (y2 - y1)
    normal = _normal_range(boxes.dtype)
    # Slack of a few ulps, so that rounding in `x1 - widest` never hides a true neighbour
    # (callers pass n >= 1, so max() is defined).
    reach = widest + 1e-9 * (widest + np.abs(boxes).max())

    # A box is a candidate until it is kept or suppressed. Boxes are decided in score
    # order, so every candidate met while scanning has a lower score than the kept box.
    candidate = np.ones(n, np.bool_)
    keep = np.empty(n, np.int64)
    kept = 0
    for r in range(n):
        p = position[score_order[r]]
        if not candidate[p]:
            continue
        candidate[p] = False
        keep[kept] = score_order[r]
        kept += 1
        lowest_x1 = x1[p] - reach
        q = p - 1
        while q >= 0 and group[q] == group[p] and x1[q] >= lowest_x1:
            if candidate[q] and _suppresses(p, q, x1, y1, x2, y2, area, normal, iou_threshold):
                candidate[q] = False
            q -= 1
        q = p + 1
        # A box starting at or after x2 cannot overlap (IoU 0 is never above a threshold >= 0).
        while q < n and group[q] == group[p] and x1[q] < x2[p]:
            if candidate[q] and _suppresses(p, q, x1, y1, x2, y2, area, normal, iou_threshold):
                candidate[q] = False
            q += 1
    return keep[:kept]
