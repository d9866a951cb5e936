"""Box coding: boxes as (dx, dy, dw, dh) offsets from reference boxes (anchors, proposals).

R-CNN's parameterisation, as in torchvision's ``BoxCoder``, written out in
``minivision.reference.box_coding``; this module checks the arguments::

    dx = wx * (cx - ref_cx) / ref_w        dw = ww * log(w / ref_w)
    dy = wy * (cy - ref_cy) / ref_h        dh = wh * log(h / ref_h)

Widths are ``x2 - x1`` (no "+1").
"""

from __future__ import annotations

import math

from minivision.backend import get_array_module
from minivision.ops._arrays import as_float, check_boxes, check_finite, unwrap
from minivision.reference import box_coding as reference_coding

# torchvision's default: no box grows by more than 1000/16 = 62.5x its reference in one step.
DEFAULT_XFORM_CLIP = math.log(1000.0 / 16)


def _check_positive_size(boxes, name, why):
    flat = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bool(flat.any()):
        row = int(get_array_module(boxes).argmax(flat))
        raise ValueError(
            f"{name} must have positive width and height ({why}), got row {row}: {boxes[row].tolist()}"
        )


def _check_reference(reference_boxes, length, against):
    raw = check_boxes(reference_boxes, "reference_boxes")
    if raw.shape[0] != length:
        raise ValueError(
            f"reference_boxes must have one row per row of {against}: expected shape "
            f"({length}, 4), got {tuple(raw.shape)}"
        )
    _check_positive_size(raw, "reference_boxes", "the offsets are divided by their size")
    return raw


class BoxCoder:
    """Encode boxes as offsets from reference boxes and decode offsets back to boxes.

    Args:
        weights: ``(wx, wy, ww, wh)`` multipliers of the four offsets (Faster R-CNN's
            second stage uses ``(10, 10, 5, 5)``).
        bbox_xform_clip: largest ``dw``/``dh`` (after dividing by the weight) that
            ``decode`` applies, so ``exp`` cannot overflow.
    """

    def __init__(self, weights=(1.0, 1.0, 1.0, 1.0), bbox_xform_clip: float = DEFAULT_XFORM_CLIP):
        weights = tuple(float(w) for w in weights)
        if len(weights) != 4 or not all(math.isfinite(w) and w > 0 for w in weights):
            raise ValueError(
                f"weights must be four positive finite numbers (wx, wy, ww, wh), got {weights!r}"
            )
        if not math.isfinite(bbox_xform_clip):
            raise ValueError(f"bbox_xform_clip must be finite, got {bbox_xform_clip!r}")
        self.weights = weights
        self.bbox_xform_clip = float(bbox_xform_clip)

    def __repr__(self):
        return f"BoxCoder(weights={self.weights}, bbox_xform_clip={self.bbox_xform_clip:.4f})"

    def encode(self, boxes, reference_boxes):
        """Offsets ``(N, 4)`` that turn each reference box into the matching box.

        Args:
            boxes: ``(N, 4)`` xyxy targets (e.g. ground-truth boxes); width and height > 0.
            reference_boxes: ``(N, 4)`` xyxy anchors or proposals; width and height > 0.
        """
        raw, wrap = unwrap(boxes)
        raw = check_boxes(raw)
        reference, _ = unwrap(reference_boxes)
        reference = _check_reference(reference, raw.shape[0], "boxes")
        get_array_module(raw, reference)  # raises when the two sit on different devices
        _check_positive_size(raw, "boxes", "dw and dh are logs of their size")
        return wrap(reference_coding.encode(raw, reference, self.weights))

    def decode(self, deltas, reference_boxes):
        """Boxes ``(N, 4)`` xyxy obtained by applying offsets to reference boxes.

        Args:
            deltas: ``(N, 4)`` offsets ``(dx, dy, dw, dh)`` (e.g. a regression head's output).
            reference_boxes: ``(N, 4)`` xyxy anchors or proposals; width and height > 0.
        """
        raw, wrap = unwrap(deltas)
        if raw.ndim != 2 or raw.shape[1] != 4:
            raise ValueError(
                f"deltas must have shape (N, 4) as (dx, dy, dw, dh), got shape {tuple(raw.shape)}"
            )
        raw = as_float(raw, "deltas")
        reference, _ = unwrap(reference_boxes)
        reference = _check_reference(reference, raw.shape[0], "deltas")
        xp = get_array_module(raw, reference)
        check_finite(raw, "deltas", xp)
        return wrap(reference_coding.decode(raw, reference, self.weights, self.bbox_xform_clip))
