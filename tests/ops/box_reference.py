"""Brute-force references for the box tests: one pair, one Python loop at a time.

IoU is computed in the given dtype (float32 boxes round like float32 kernels do), with
NumPy scalars, so a comparison against a threshold agrees bit for bit.
"""
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


def reference_nms(boxes, scores, iou_threshold, groups=None):
    """Textbook greedy NMS: compare each box with every box kept so far."""
    n = len(boxes)
    groups = np.zeros(n, np.int64) if groups is None else groups
    order = sorted(range(n), key=lambda i: (-float(scores[i]), i))
    keep = []
    for i in order:
        if all(groups[i] != groups[k] or reference_iou(boxes[i], boxes[k], boxes.dtype) <= iou_threshold
               for k in keep):
            keep.append(i)
    return np.array(keep, dtype=np.int64)
