"""Box geometry: format conversion, area, and IoU with its generalized, distance and
complete variants.

Boxes are ``(x1, y1, x2, y2)`` floats in continuous pixel coordinates, no "+1": a box
from 0 to 2 is 2 wide. Every function takes NumPy arrays, CuPy arrays or Tensors and
returns the kind it was given. IoU is ``minivision.reference.boxes``'s; NumPy boxes take
its Numba twin (``_cpu_kernels``) and CuPy boxes its CUDA twin (``_cuda_kernels``), equal to
it bit for bit, unless the reference switch is on.
"""

from __future__ import annotations

import math
import numbers

from minivision.backend import get_array_module

# isort: split
# BEGIN FAST PATH iou
from minivision.dispatch import cuda_kernels_apply, fast_paths_enabled, numba_kernels_apply
from minivision.ops import _cpu_kernels, _cuda_kernels

# END FAST PATH iou
# isort: split
from minivision.ops._arrays import as_float, check_boxes, check_finite, unwrap
from minivision.reference import boxes as reference

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def _to_xyxy(boxes, fmt, xp):
    if fmt == "xywh":
        x, y, w, h = (boxes[:, k] for k in range(4))
        return xp.stack([x, y, x + w, y + h], axis=1)
    if fmt == "cxcywh":
        cx, cy, w, h = (boxes[:, k] for k in range(4))
        return xp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes


def _from_xyxy(boxes, fmt, xp):
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    if fmt == "xywh":
        return xp.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
    if fmt == "cxcywh":
        return xp.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1)
    return boxes


def box_convert(boxes, in_fmt: str, out_fmt: str):
    """Convert ``(N, 4)`` boxes between ``"xyxy"``, ``"xywh"`` (top-left corner, width,
    height) and ``"cxcywh"`` (centre, width, height). Returns ``(N, 4)``."""
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in BOX_FORMATS:
            raise ValueError(f"{name} must be one of {BOX_FORMATS}, got {fmt!r}")
    raw, wrap = unwrap(boxes)
    if raw.ndim != 2 or raw.shape[1] != 4:
        raise ValueError(
            f"boxes must have shape (N, 4) in format {in_fmt!r}, got shape {tuple(raw.shape)}"
        )
    raw = as_float(raw, "boxes")
    xp = get_array_module(raw)
    check_finite(raw, "boxes", xp)
    # Going through xyxy checks width and height >= 0 for every input format.
    xyxy = check_boxes(_to_xyxy(raw, in_fmt, xp), f"boxes (converted from {in_fmt!r} to 'xyxy')")
    if in_fmt == out_fmt:
        return wrap(raw.copy())
    return wrap(_from_xyxy(xyxy, out_fmt, xp))


def box_area(boxes):
    """Area of ``(N, 4)`` xyxy boxes, shape ``(N,)``."""
    raw, wrap = unwrap(boxes)
    raw = check_boxes(raw)
    return wrap((raw[:, 2] - raw[:, 0]) * (raw[:, 3] - raw[:, 1]))


def _check_pair(boxes1, boxes2):
    raw1, wrap = unwrap(boxes1)
    raw2, _ = unwrap(boxes2)
    raw1, raw2 = check_boxes(raw1, "boxes1"), check_boxes(raw2, "boxes2")
    xp = get_array_module(raw1, raw2)
    # Mixed float32/float64 pairs compute in the wider type, as NumPy would.
    dtype = xp.result_type(raw1.dtype, raw2.dtype)
    return raw1.astype(dtype, copy=False), raw2.astype(dtype, copy=False), xp, wrap


def _broadcast_inter_union(boxes1, boxes2, xp):
    """Intersection and union areas of every pair, ``(N, M)`` each, by broadcasting."""
    top_left = xp.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = xp.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = xp.clip(bottom_right - top_left, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    return inter, area1[:, None] + area2[None, :] - inter


def _broadcast_enclosing_wh(boxes1, boxes2, xp):
    """Width and height of the smallest box enclosing each pair, ``(N, M, 2)``."""
    return xp.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:]) - xp.minimum(
        boxes1[:, None, :2], boxes2[None, :, :2]
    )


def _safe_ratio(numerator, denominator, xp):
    """numerator / denominator, and 0 where the denominator is 0 (zero-area boxes)."""
    positive = denominator > 0
    return xp.where(positive, numerator / xp.where(positive, denominator, 1), 0).astype(
        numerator.dtype
    )


def box_iou(boxes1, boxes2):
    """Intersection over union of every pair: ``(N, 4)``, ``(M, 4)`` -> ``(N, M)``, in [0, 1]
    and symmetric, for every finite input.

    Boxes that do not overlap have IoU 0, and a zero-area box (a point or a segment) has
    IoU 0 with every box, itself included (torchvision gives NaN there). Boxes whose areas
    underflow to 0 or overflow to inf in their dtype (sides of 1e-23 or 1e20 in float32)
    are measured on rescaled axes, so two identical boxes of positive size have IoU 1.
    """
    raw1, raw2, xp, wrap = _check_pair(boxes1, boxes2)
    # BEGIN FAST PATH iou
    kernels = _iou_kernels(raw1)
    if kernels is not None:  # one thread per pair, no (N, M) temporaries
        return wrap(kernels.iou_matrix(xp.ascontiguousarray(raw1), xp.ascontiguousarray(raw2)))
    # END FAST PATH iou
    return wrap(reference.box_iou(raw1, raw2))


def matched_box_iou(boxes1, boxes2):
    """IoU of each box with its partner, ``boxes1[i]`` with ``boxes2[i]``: ``(N, 4)``, ``(N, 4)``
    -> ``(N,)``. The diagonal of ``box_iou``, to the bit (same rules for zero-area and
    extreme boxes), without its other N * N - N pairs."""
    raw1, raw2, xp, wrap = _check_pair(boxes1, boxes2)
    if raw1.shape[0] != raw2.shape[0]:
        raise ValueError(
            f"matched_box_iou pairs boxes1[i] with boxes2[i]: boxes1 holds {raw1.shape[0]} boxes, "
            f"boxes2 {raw2.shape[0]}; expected as many"
        )
    # BEGIN FAST PATH iou
    kernels = _iou_kernels(raw1)
    if kernels is not None:
        return wrap(kernels.matched_iou(xp.ascontiguousarray(raw1), xp.ascontiguousarray(raw2)))
    # END FAST PATH iou
    return wrap(reference.matched_box_iou(raw1, raw2))


# BEGIN FAST PATH iou
def _iou_kernels(boxes):
    """The kernels that take these boxes (float32 or float64): ``_cpu_kernels`` (Numba) for
    NumPy arrays, ``_cuda_kernels`` for CuPy arrays; None when the reference runs."""
    if not fast_paths_enabled():
        return None
    if numba_kernels_apply(boxes):
        return _cpu_kernels
    return _cuda_kernels if cuda_kernels_apply(boxes) else None


# END FAST PATH iou


def generalized_box_iou(boxes1, boxes2):
    """Generalized IoU (Rezatofighi et al., 2019) of every pair, ``(N, M)``, in [-1, 1]:
    IoU minus the share of the smallest enclosing box that the union does not cover."""
    raw1, raw2, xp, wrap = _check_pair(boxes1, boxes2)
    inter, union = _broadcast_inter_union(raw1, raw2, xp)
    iou = _safe_ratio(inter, union, xp)
    enclose_wh = _broadcast_enclosing_wh(raw1, raw2, xp)
    enclose = enclose_wh[..., 0] * enclose_wh[..., 1]
    return wrap(iou - _safe_ratio(enclose - union, enclose, xp))


def _check_eps(eps):
    """Raise ValueError unless ``eps`` is a finite real number >= 0."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (0 <= eps < math.inf):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


def _broadcast_center_penalty(boxes1, boxes2, xp, eps):
    """DIoU's penalty for every pair, ``(N, M)``, in [0, 1): the squared distance between
    the two centres over the squared diagonal of their enclosing box plus ``eps``."""
    enclose_wh = _broadcast_enclosing_wh(boxes1, boxes2, xp)
    diagonal_sq = enclose_wh[..., 0] ** 2 + enclose_wh[..., 1] ** 2 + eps
    centers1 = (boxes1[:, :2] + boxes1[:, 2:]) / 2
    centers2 = (boxes2[:, :2] + boxes2[:, 2:]) / 2
    offset = centers1[:, None, :] - centers2[None, :, :]
    # The diagonal is 0 only for two copies of one point (with eps 0): no distance, no penalty.
    return _safe_ratio(offset[..., 0] ** 2 + offset[..., 1] ** 2, diagonal_sq, xp)


def _aspect_penalty(angle1, angle2):
    """CIoU's aspect-ratio term v = 4 / pi^2 (angle1 - angle2)^2, in [0, 1], from aspect
    angles arctan(width / height) in [0, pi/2]; arrays or Tensors."""
    return (angle1 - angle2) ** 2 * (4 / math.pi**2)


def distance_box_iou(boxes1, boxes2, eps: float = 1e-7):
    """Distance IoU (Zheng et al., 2020) of every pair: ``(N, 4)``, ``(M, 4)`` -> ``(N, M)``,
    in (-1, 1]: IoU minus the squared distance between the box centres over the squared
    diagonal of their smallest enclosing box (plus ``eps``).

    IoU is ``box_iou``'s, so a zero-area box has IoU 0 with every box (torchvision: NaN
    between two zero-area boxes) and two identical boxes of positive area give exactly 1.
    """
    eps = _check_eps(eps)
    raw1, raw2, xp, wrap = _check_pair(boxes1, boxes2)
    return wrap(box_iou(raw1, raw2) - _broadcast_center_penalty(raw1, raw2, xp, eps))


def complete_box_iou(boxes1, boxes2, eps: float = 1e-7):
    """Complete IoU (Zheng et al., 2020) of every pair, ``(N, M)``, in (-2, 1]: distance IoU
    minus ``alpha * v``, where v compares the aspect angles arctan(width / height) of the
    two boxes and ``alpha = v / (1 - IoU + v + eps)`` weighs it up as the boxes overlap.

    A point (zero width and height) has no aspect ratio: v is 0 for every pair holding one
    (torchvision: NaN). A segment's angle is 0 (vertical) or pi/2 (horizontal).
    """
    eps = _check_eps(eps)
    raw1, raw2, xp, wrap = _check_pair(boxes1, boxes2)
    iou = box_iou(raw1, raw2)
    diou = iou - _broadcast_center_penalty(raw1, raw2, xp, eps)
    w1, h1 = raw1[:, 2] - raw1[:, 0], raw1[:, 3] - raw1[:, 1]
    w2, h2 = raw2[:, 2] - raw2[:, 0], raw2[:, 3] - raw2[:, 1]
    has_shape = ((w1 > 0) | (h1 > 0))[:, None] & ((w2 > 0) | (h2 > 0))[None, :]
    # arctan2 is arctan(w / h) without the division: pi/2 for a zero height.
    v = _aspect_penalty(xp.arctan2(w1, h1)[:, None], xp.arctan2(w2, h2)[None, :])
    v = xp.where(has_shape, v, 0).astype(iou.dtype)
    # alpha's denominator is 0 only for a perfect match (IoU 1, v 0) with eps 0; v is 0 there too.
    alpha = _safe_ratio(v, 1 - iou + v + eps, xp)
    return wrap(diou - alpha * v)
