"""Intersection over union (IoU) of axis-aligned boxes ``(x1, y1, x2, y2)``.

Boxes are in continuous coordinates, no "+1": a box from 0 to 2 is 2 wide. The IoU of two
boxes is the area they share over the area they cover together, in [0, 1]. Boxes that do
not overlap with positive area have IoU 0, so a box without area (a point or a segment)
has IoU 0 with every box, itself included; identical boxes with area have IoU 1.

IoU is computed in the boxes' dtype. Where an area does not fit the dtype (sides of 1e-23 or
1e20 in float32 give areas that underflow to 0 or overflow to inf), the pair is measured
again on rescaled axes (``_rescaled_iou``), so every finite box has an IoU.
"""

from __future__ import annotations

import numpy as np

from minivision.backend import get_array_module


def box_area(boxes):
    """boxes (..., 4) -> (...): width times height, (x2 - x1) * (y2 - y1)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1, boxes2):
    """boxes1 (N, 4), boxes2 (M, 4) -> (N, M): the IoU of every pair, boxes1[i] with boxes2[j].

    Lecture: localization (a predicted box is scored by its intersection over union with the
    true box; one common protocol counts IoU > 0.5 with the right class as correct).
    """
    return iou(boxes1[:, None, :], boxes2[None, :, :])


def matched_box_iou(boxes1, boxes2):
    """boxes1 (N, 4), boxes2 (N, 4) -> (N,): the IoU of each box with its partner,
    boxes1[i] with boxes2[i] (the diagonal of ``box_iou``)."""
    return iou(boxes1, boxes2)


def intersection_and_union(a, b):
    """a (..., 4), b (..., 4), broadcast against each other -> (overlap, inter, union), each
    (...): whether the boxes overlap with positive area, the area they share, the area they
    cover together.

    The intersection is the box from the larger of the two top-left corners to the smaller
    of the two bottom-right ones; it has area only where its width and height are both
    positive. The union is area a + area b - intersection.

    Lecture: localization (intersection over union).
    """
    xp = get_array_module(a, b)
    # BEGIN SOLUTION iou: write the overlap test, the intersection's area and the union's
    width = xp.minimum(a[..., 2], b[..., 2]) - xp.maximum(a[..., 0], b[..., 0])
    height = xp.minimum(a[..., 3], b[..., 3]) - xp.maximum(a[..., 1], b[..., 1])
    inter = width * height
    # Summing the two areas first keeps the IoU symmetric in a and b, bit for bit.
    return (width > 0) & (height > 0), inter, box_area(a) + box_area(b) - inter
    # END SOLUTION iou


@np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore")  # extreme areas
def iou(a, b):
    """a (..., 4), b (..., 4), broadcast against each other -> their IoU (...), in a's dtype:
    intersection / union where the boxes overlap with positive area, else 0.

    Lecture: localization (intersection over union).
    """
    xp = get_array_module(a, b)
    overlap, inter, union = intersection_and_union(a, b)
    ious = xp.where(overlap, inter / union, 0)
    return _measure_again_where_areas_do_not_fit(ious, overlap & ~_fits(inter, union), a, b)


def _fits(inter, union):
    """Where inter / union is an accurate quotient in [0, 1]: the intersection a normal
    number of its dtype (not underflowed to 0 or a subnormal), the union finite."""
    info = np.finfo(inter.dtype)
    return (inter >= info.tiny) & (union <= info.max)


def _measure_again_where_areas_do_not_fit(ious, unfit, a, b):
    """ious (...) with the pairs marked ``unfit`` (...) replaced by ``_rescaled_iou``."""
    xp = get_array_module(ious)
    a, b = xp.broadcast_to(a, unfit.shape + (4,)), xp.broadcast_to(b, unfit.shape + (4,))
    ious[unfit] = _rescaled_iou(a[unfit], b[unfit]).astype(ious.dtype)
    return ious


def _rescaled_iou(a, b):
    """a (P, 4), b (P, 4) overlapping boxes -> their IoU (P,), float64, on rescaled axes.

    Each axis of each pair is multiplied by the power of two that brings its largest
    coordinate into [0.5, 1): every length is then below 2, so no area under- or overflows
    float64 (a side of positive length keeps an area above 2**-110), and scaling an axis
    scales every area by one factor, which leaves the IoU as it is.
    """
    xp = get_array_module(a, b)
    a, b = a.astype(np.float64), b.astype(np.float64)
    largest = xp.maximum(xp.abs(a), xp.abs(b))  # (P, 4): x1, y1, x2, y2 of either box
    _, exponent = xp.frexp(xp.maximum(largest[:, :2], largest[:, 2:]))  # (P, 2): axes x, y
    exponent = xp.concatenate([exponent, exponent], axis=1)  # for x1, y1, x2, y2
    _, inter, union = intersection_and_union(xp.ldexp(a, -exponent), xp.ldexp(b, -exponent))
    # union >= inter > 0, unless both boxes vanish next to the scale of their axis.
    return xp.where(union > 0, inter / xp.where(union > 0, union, 1), 0)
