"""The fast path of IoU on the CPU: Numba kernels for the IoU matrix and matched pairs.

They compute what ``minivision.reference.boxes`` computes, with the same operations in the
same order, so IoUs are equal bit for bit: arithmetic in the boxes' dtype (float32 boxes
give float32 IoUs, as in torchvision) except for pairs whose areas under- or overflow it,
which ``_rescaled_iou`` measures in float64. The IoU of two boxes is written once, in
``_pair_iou``, so the IoU matrix, the matched pairs' IoU and NMS (``_nms_fast``) can never
disagree. Compiled on first use and cached on disk (``cache=True``), one specialisation
per dtype.
"""

# FAST PATH FILE iou
from __future__ import annotations

import math

import numpy as np

from minivision._numba import njit


@njit(cache=True)
def _scaled_lengths(a1, a2, b1, b2):
    """One axis of two boxes, ``[a1, a2]`` and ``[b1, b2]``, in float64 after multiplying the
    four coordinates by the power of two that brings the largest into [0.5, 1): returns
    (overlap, length of a, length of b), each below 2, so no product of them overflows.
    Scaling an axis scales every area by the same factor, which leaves the IoU unchanged."""
    _, exponent = math.frexp(max(abs(a1), abs(a2), abs(b1), abs(b2)))
    # np.float64, not float(): Numba's float() leaves a float32 a float32.
    a1, a2 = math.ldexp(np.float64(a1), -exponent), math.ldexp(np.float64(a2), -exponent)
    b1, b2 = math.ldexp(np.float64(b1), -exponent), math.ldexp(np.float64(b2), -exponent)
    return min(a2, b2) - max(a1, b1), a2 - a1, b2 - b1


@njit(cache=True)
def _rescaled_iou(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2):
    """IoU of two overlapping boxes, as a float64, computed on rescaled axes
    (``_scaled_lengths``): for boxes whose areas under- or overflow their dtype.

    A side of positive length exceeds 2**-54 times its box's largest coordinate, so a box
    rescaled on its own coordinates keeps an area above 2**-110: identical boxes give
    exactly 1.
    """
    width, width_a, width_b = _scaled_lengths(ax1, ax2, bx1, bx2)
    height, height_a, height_b = _scaled_lengths(ay1, ay2, by1, by2)
    inter = width * height
    union = width_a * height_a + width_b * height_b - inter
    # union >= inter >= 0, and union is 0 only when both boxes vanish next to the axis' scale.
    return inter / union if union > 0 else 0.0


@njit(inline="always", cache=True)
def _normal_range(dtype):
    """(smallest positive normal, largest finite) number of a float dtype, as ``normal`` for ``_pair_iou``."""
    info = np.finfo(dtype)
    return info.tiny, info.max


@njit(inline="always", cache=True)
def _pair_iou(ax1, ay1, ax2, ay2, area_a, bx1, by1, bx2, by2, area_b, normal):
    """IoU of boxes a and b, in [0, 1] and symmetric in a and b for every finite input.

    0 when they do not overlap, so a zero-area box (a point or a segment) has IoU 0 with
    every box, itself included. ``normal`` is ``_normal_range`` of the boxes' dtype: when
    the intersection or the union is not a normal number of that dtype (an area that
    underflows to 0 or overflows to inf), the IoU comes from ``_rescaled_iou``, so
    identical boxes of any positive size give 1, never NaN nor a division by zero.
    """
    width = min(ax2, bx2) - max(ax1, bx1)
    height = min(ay2, by2) - max(ay1, by1)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    # Summing the areas first keeps the result symmetric in a and b, bit for bit.
    union = area_a + area_b - inter
    # union >= inter, so a normal inter and a finite union make an accurate quotient in [0, 1].
    if inter >= normal[0] and union <= normal[1]:
        return inter / union
    # Rounded to the dtype, as the quotient is, so that NMS compares what box_iou reports.
    return np.asarray(inter).dtype.type(_rescaled_iou(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2))


@njit(cache=True)
def iou_matrix(boxes1, boxes2):
    """IoU of every pair: ``(N, 4)``, ``(M, 4)`` -> ``(N, M)`` in the boxes' dtype."""
    n, m = boxes1.shape[0], boxes2.shape[0]
    out = np.empty((n, m), dtype=boxes1.dtype)
    normal = _normal_range(boxes1.dtype)
    # Columns of boxes2 as contiguous vectors: the inner loop then streams through memory.
    x1, y1, x2, y2 = (
        boxes2[:, 0].copy(),
        boxes2[:, 1].copy(),
        boxes2[:, 2].copy(),
        boxes2[:, 3].copy(),
    )
    area2 = (x2 - x1) * (y2 - y1)
    for i in range(n):
        ax1, ay1, ax2, ay2 = boxes1[i, 0], boxes1[i, 1], boxes1[i, 2], boxes1[i, 3]
        area_a = (ax2 - ax1) * (ay2 - ay1)
        for j in range(m):
            out[i, j] = _pair_iou(
                ax1, ay1, ax2, ay2, area_a, x1[j], y1[j], x2[j], y2[j], area2[j], normal
            )
    return out


@njit(cache=True)
def matched_iou(boxes1, boxes2):
    """IoU of each box with its partner: ``(N, 4)``, ``(N, 4)`` -> ``(N,)``; entry i is
    ``iou_matrix``'s (i, i), to the bit."""
    out = np.empty(boxes1.shape[0], dtype=boxes1.dtype)
    normal = _normal_range(boxes1.dtype)
    for i in range(boxes1.shape[0]):
        ax1, ay1, ax2, ay2 = boxes1[i, 0], boxes1[i, 1], boxes1[i, 2], boxes1[i, 3]
        bx1, by1, bx2, by2 = boxes2[i, 0], boxes2[i, 1], boxes2[i, 2], boxes2[i, 3]
        out[i] = _pair_iou(
            ax1,
            ay1,
            ax2,
            ay2,
            (ax2 - ax1) * (ay2 - ay1),
            bx1,
            by1,
            bx2,
            by2,
            (bx2 - bx1) * (by2 - by1),
            normal,
        )
    return out
