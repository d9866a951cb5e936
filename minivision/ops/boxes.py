"""Box geometry: format conversion, area, IoU and generalized IoU.

Boxes are ``(x1, y1, x2, y2)`` floats in continuous pixel coordinates, no "+1": a box
from 0 to 2 is 2 wide. Every function takes NumPy arrays, CuPy arrays or Tensors and
returns the kind it was given.
"""
from __future__ import annotations

from minivision.backend import get_array_module
from minivision.ops import _cpu_kernels, _cuda_kernels
from minivision.ops._arrays import as_float, check_boxes, check_finite, unwrap

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
        raise ValueError(f"boxes must have shape (N, 4) in format {in_fmt!r}, got shape {tuple(raw.shape)}")
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


def _safe_ratio(numerator, denominator, xp):
    """numerator / denominator, and 0 where the denominator is 0 (zero-area boxes)."""
    positive = denominator > 0
    return xp.where(positive, numerator / xp.where(positive, denominator, 1), 0).astype(numerator.dtype)


def box_iou(boxes1, boxes2):
    """Intersection over union of every pair: ``(N, 4)``, ``(M, 4)`` -> ``(N, M)``, in [0, 1]
    and symmetric, for every finite input.

    Boxes that do not overlap have IoU 0, and a zero-area box (a point or a segment) has
    IoU 0 with every box, itself included (torchvision gives NaN there). Boxes whose areas
    underflow to 0 or overflow to inf in their dtype (sides of 1e-23 or 1e20 in float32)
    are measured on rescaled axes, so two identical boxes of positive size have IoU 1.
    """
    raw1, raw2, xp, wrap = _check_pair(boxes1, boxes2)
    if raw1.shape[0] == 0 or raw2.shape[0] == 0:
        return wrap(xp.zeros((raw1.shape[0], raw2.shape[0]), raw1.dtype))
    if xp.__name__ == "numpy":
        return wrap(_cpu_kernels.iou_matrix(xp.ascontiguousarray(raw1), xp.ascontiguousarray(raw2)))
    return wrap(_cuda_kernels.iou_matrix(raw1, raw2))  # one thread per pair, no (N, M) temporaries


def matched_box_iou(boxes1, boxes2):
    """IoU of each box with its partner, ``boxes1[i]`` with ``boxes2[i]``: ``(N, 4)``, ``(N, 4)``
    -> ``(N,)``. The diagonal of ``box_iou``, to the bit (same rules for zero-area and
    extreme boxes), without its other N * N - N pairs."""
    raw1, raw2, xp, wrap = _check_pair(boxes1, boxes2)
    if raw1.shape[0] != raw2.shape[0]:
        raise ValueError(f"matched_box_iou pairs boxes1[i] with boxes2[i]: boxes1 holds {raw1.shape[0]} boxes, "
                         f"boxes2 {raw2.shape[0]}; expected as many")
    if xp.__name__ == "numpy":
        return wrap(_cpu_kernels.matched_iou(xp.ascontiguousarray(raw1), xp.ascontiguousarray(raw2)))
    return wrap(_cuda_kernels.matched_iou(raw1, raw2))  # the CUDA wrapper makes them contiguous


def generalized_box_iou(boxes1, boxes2):
    """Generalized IoU (Rezatofighi et al., 2019) of every pair, ``(N, M)``, in [-1, 1]:
    IoU minus the share of the smallest enclosing box that the union does not cover."""
    raw1, raw2, xp, wrap = _check_pair(boxes1, boxes2)
    inter, union = _broadcast_inter_union(raw1, raw2, xp)
    iou = _safe_ratio(inter, union, xp)
    enclose_wh = (xp.maximum(raw1[:, None, 2:], raw2[None, :, 2:])
                  - xp.minimum(raw1[:, None, :2], raw2[None, :, :2]))
    enclose = enclose_wh[..., 0] * enclose_wh[..., 1]
    return wrap(iou - _safe_ratio(enclose - union, enclose, xp))
