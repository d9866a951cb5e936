"""IoU-based box regression losses mirroring ``torchvision.ops``: generalized, distance and
complete IoU losses over matched pairs, ``boxes1[i]`` with ``boxes2[i]``.

They are built from Tensor ops, so gradients flow to both box sets. The formulas are
torchvision's, eps included: IoU is ``inter / (union + eps)``, the enclosing area and the
squared enclosing diagonal get ``+ eps``, and CIoU's weight ``alpha`` is a constant for
backprop. Where torchvision divides 0 by 0 (a point's aspect ratio, or ``eps=0``) these
losses define the value instead, as the pairwise functions in ``boxes`` do.
"""

from __future__ import annotations

import numpy as np

from minivision.backend import get_array_module
from minivision.functional import math, reduce
from minivision.functional.loss import _check_reduction
from minivision.functional.shape import astype
from minivision.ops._arrays import check_boxes, unwrap
from minivision.ops.boxes import _aspect_penalty, _check_eps, _safe_ratio
from minivision.tensor import Function, Tensor


def _box_tensor(boxes, name: str):
    """``boxes`` as a Tensor of shape ``(N, 4)`` or ``(4,)``, checked like ``check_boxes``,
    and the float dtype to compute it in."""
    raw, _ = unwrap(boxes)
    if raw.ndim not in (1, 2) or raw.shape[-1] != 4:
        raise ValueError(
            f"{name} must have shape (N, 4) or (4,) as (x1, y1, x2, y2), got shape {tuple(raw.shape)}"
        )
    dtype = check_boxes(raw.reshape(-1, 4), name).dtype
    return (boxes if isinstance(boxes, Tensor) else Tensor(raw)), dtype


def _matched_pair(boxes1, boxes2):
    """Both box sets as Tensors of one float dtype and one shape, ``(N, 4)`` or ``(4,)``."""
    (boxes1, dtype1), (boxes2, dtype2) = (
        _box_tensor(boxes1, "boxes1"),
        _box_tensor(boxes2, "boxes2"),
    )
    if boxes1.shape != boxes2.shape:
        raise ValueError(
            f"boxes1 and boxes2 must have the same shape (boxes1[i] is paired with boxes2[i]), "
            f"got {boxes1.shape} and {boxes2.shape}"
        )
    get_array_module(boxes1.data, boxes2.data)  # a clear error when they live on different devices
    # Mixed float32/float64 pairs compute in the wider type, as the pairwise functions do.
    dtype = np.result_type(dtype1, dtype2)
    return astype(boxes1, dtype), astype(boxes2, dtype)


def _corners(boxes: Tensor):
    """x1, y1, x2, y2 of ``(..., 4)`` boxes, each ``(...,)``."""
    return tuple(boxes[..., k] for k in range(4))


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, and 0 where the denominator is 0 (only reachable with eps=0)."""
    positive = denominator.data > 0
    return math.where(positive, numerator / math.where(positive, denominator, 1.0), 0.0)


class _AspectAngle(Function):
    """arctan(width / height) elementwise, as arctan2 so a zero height gives pi/2."""

    def forward(self, width, height):
        self.width, self.height = width, height
        return get_array_module(width, height).arctan2(width, height)

    def backward(self, grad):
        # d/dw = h / (w^2 + h^2), d/dh = -w / (w^2 + h^2); a point has no angle to move, so 0.
        scale = _safe_ratio(grad, self.width**2 + self.height**2, get_array_module(grad))
        return scale * self.height, -scale * self.width


def _iou_and_enclosure(boxes1: Tensor, boxes2: Tensor, eps: float):
    """Per pair: IoU ``inter / (union + eps)``, the union, and the width and height of the
    smallest enclosing box; Tensors of the leading shape."""
    x1, y1, x2, y2 = _corners(boxes1)
    x1g, y1g, x2g, y2g = _corners(boxes2)
    inter_w = math.minimum(x2, x2g) - math.maximum(x1, x1g)
    inter_h = math.minimum(y2, y2g) - math.maximum(y1, y1g)
    # Only a positive overlap on both axes counts, and only then does it carry a gradient.
    overlap = (inter_w.data > 0) & (inter_h.data > 0)
    inter = math.where(overlap, inter_w * inter_h, 0.0)
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = _ratio(inter, union + eps)
    enclose_w = math.maximum(x2, x2g) - math.minimum(x1, x1g)
    enclose_h = math.maximum(y2, y2g) - math.minimum(y1, y1g)
    return iou, union, enclose_w, enclose_h


def _diou_loss_and_iou(boxes1: Tensor, boxes2: Tensor, eps: float):
    """``1 - IoU + d^2 / (c^2 + eps)`` per pair (d: distance of the centres, c: diagonal of
    the enclosing box), and the IoU."""
    iou, _, enclose_w, enclose_h = _iou_and_enclosure(boxes1, boxes2, eps)
    x1, y1, x2, y2 = _corners(boxes1)
    x1g, y1g, x2g, y2g = _corners(boxes2)
    center_dx = (x1 + x2) / 2 - (x1g + x2g) / 2
    center_dy = (y1 + y2) / 2 - (y1g + y2g) / 2
    penalty = _ratio(center_dx**2 + center_dy**2, enclose_w**2 + enclose_h**2 + eps)
    return 1.0 - iou + penalty, iou


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    """torchvision's reductions: the mean of no pairs is 0 (still attached to the graph)."""
    if reduction == "mean":
        return reduce.mean(loss) if loss.numel() > 0 else reduce.sum(loss) * 0.0
    if reduction == "sum":
        return reduce.sum(loss)
    return loss


def generalized_box_iou_loss(boxes1, boxes2, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """``1 - GIoU`` of matched pairs: ``(N, 4)``, ``(N, 4)`` -> ``(N,)`` (or ``(4,)``, ``(4,)``
    -> ``()``), then reduced ("none" | "mean" | "sum"). In [0, 2]; symmetric in its arguments.

    GIoU = IoU - (C - U) / (C + eps), C the enclosing box's area, U the union.
    """
    _check_reduction(reduction)
    eps = _check_eps(eps)
    boxes1, boxes2 = _matched_pair(boxes1, boxes2)
    iou, union, enclose_w, enclose_h = _iou_and_enclosure(boxes1, boxes2, eps)
    enclose = enclose_w * enclose_h
    loss = 1.0 - iou + _ratio(enclose - union, enclose + eps)
    return _reduce(loss, reduction)


def distance_box_iou_loss(boxes1, boxes2, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """``1 - DIoU`` of matched pairs, shapes and reductions as ``generalized_box_iou_loss``;
    in [0, 2). DIoU = IoU - d^2 / (c^2 + eps), d the distance between the box centres and
    c the diagonal of the smallest enclosing box."""
    _check_reduction(reduction)
    eps = _check_eps(eps)
    loss, _ = _diou_loss_and_iou(*_matched_pair(boxes1, boxes2), eps)
    return _reduce(loss, reduction)


def complete_box_iou_loss(boxes1, boxes2, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """``1 - CIoU`` of matched pairs, shapes and reductions as ``generalized_box_iou_loss``;
    in [0, 3). CIoU = DIoU - alpha v, v = 4 / pi^2 (arctan(w1 / h1) - arctan(w2 / h2))^2 and
    alpha = v / (1 - IoU + v + eps) held constant for backprop, as in the paper.

    A point (zero width and height) has no aspect ratio: v is 0 for a pair holding one
    (torchvision: NaN). ``eps`` enters every term (torchvision's own loss passes it to
    alpha only, the rest keeps 1e-7; the two agree at the default).
    """
    _check_reduction(reduction)
    eps = _check_eps(eps)
    boxes1, boxes2 = _matched_pair(boxes1, boxes2)
    diou_loss, iou = _diou_loss_and_iou(boxes1, boxes2, eps)
    x1, y1, x2, y2 = _corners(boxes1)
    x1g, y1g, x2g, y2g = _corners(boxes2)
    w1, h1, w2, h2 = x2 - x1, y2 - y1, x2g - x1g, y2g - y1g
    has_shape = ((w1.data > 0) | (h1.data > 0)) & ((w2.data > 0) | (h2.data > 0))
    v = math.where(
        has_shape, _aspect_penalty(_AspectAngle.apply(w1, h1), _AspectAngle.apply(w2, h2)), 0.0
    )
    xp = get_array_module(v.data)
    # alpha's denominator is 0 only for a perfect match (IoU 1, v 0) with eps 0; v is 0 there too.
    alpha = Tensor(_safe_ratio(v.data, 1 - iou.data + v.data + eps, xp))
    return _reduce(diou_loss + alpha * v, reduction)
