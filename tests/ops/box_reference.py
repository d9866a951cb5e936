"""Brute-force references for the box tests: one pair, one Python loop at a time.

``reference_iou`` computes in the given dtype (float32 boxes round like float32 kernels
do), with NumPy scalars, so a comparison against a threshold agrees bit for bit on
ordinary boxes; ``exact_iou`` is the exact rational IoU of any finite boxes.
"""

from fractions import Fraction

import numpy as np


def reference_iou(a, b, dtype=np.float64):
    """IoU of two xyxy boxes; 0 when they do not overlap (zero-area boxes included)."""
    f = np.dtype(dtype).type
    ax1, ay1, ax2, ay2 = (f(v) for v in a)
    bx1, by1, bx2, by2 = (f(v) for v in b)
    width = min(ax2, bx2) - max(ax1, bx1)
    height = min(ay2, by2) - max(ay1, by1)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return float(inter / union)


def exact_iou(a, b) -> Fraction:
    """IoU of two xyxy boxes of finite floats, in exact rational arithmetic; 0 when they do
    not overlap with positive area (so a point or a segment has IoU 0 with every box)."""
    ax1, ay1, ax2, ay2 = (Fraction(float(v)) for v in a)
    bx1, by1, bx2, by2 = (Fraction(float(v)) for v in b)
    width = min(ax2, bx2) - max(ax1, bx1)
    height = min(ay2, by2) - max(ay1, by1)
    if width <= 0 or height <= 0:
        return Fraction(0)
    inter = width * height
    return inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter)


def _pair_iou_function(boxes, iou_matrix):
    """IoU of boxes i and j: from ``iou_matrix`` when given, else ``reference_iou``."""
    if iou_matrix is not None:
        return lambda i, j: float(iou_matrix[i, j])
    return lambda i, j: reference_iou(boxes[i], boxes[j], boxes.dtype)


def reference_nms(boxes, scores, iou_threshold, groups=None, iou_matrix=None):
    """Textbook greedy NMS: compare each box with every box kept so far. IoUs come from
    ``iou_matrix`` ``(N, N)`` when given, else from ``reference_iou``."""
    n = len(boxes)
    groups = np.zeros(n, np.int64) if groups is None else groups
    iou = _pair_iou_function(boxes, iou_matrix)
    order = sorted(range(n), key=lambda i: (-float(scores[i]), i))
    keep = []
    for i in order:
        if all(groups[i] != groups[k] or iou(i, k) <= iou_threshold for k in keep):
            keep.append(i)
    return np.array(keep, dtype=np.int64)


def check_greedy_invariants(boxes, scores, groups, threshold, keep, iou_matrix=None):
    """The properties that pin greedy NMS down, checked pair by pair: kept boxes in score
    order, no kept pair of a group above the threshold, every dropped box above it with a
    kept box of its group and higher priority. IoUs as in ``reference_nms``."""
    assert keep.dtype == np.int64 and len(set(keep.tolist())) == len(keep)
    priority = {i: (-float(scores[i]), i) for i in range(len(boxes))}
    # Kept boxes come by decreasing score, ties by lower index.
    assert [priority[i] for i in keep] == sorted(priority[i] for i in keep)
    kept = set(keep.tolist())
    iou = _pair_iou_function(boxes, iou_matrix)
    for a in keep:
        for b in keep:
            if a < b and groups[a] == groups[b]:
                assert iou(a, b) <= threshold, (a, b)
    for dropped in set(range(len(boxes))) - kept:
        assert any(
            groups[k] == groups[dropped]
            and priority[k] < priority[dropped]
            and iou(k, dropped) > threshold
            for k in keep
        ), dropped
