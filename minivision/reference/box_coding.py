"""Box coding: a box as offsets (dx, dy, dw, dh) from a reference box (an anchor, a proposal).

R-CNN's parameterisation, as in torchvision's ``BoxCoder``: the centre shift in units of
the reference's size and the log of the size ratio, each multiplied by a weight::

    dx = wx * (cx - ref_cx) / ref_w        dw = ww * log(w / ref_w)
    dy = wy * (cy - ref_cy) / ref_h        dh = wh * log(h / ref_h)

Widths are ``x2 - x1`` (no "+1"). Offsets of this kind are what a detector's box head
regresses: they are small, centred on 0 and the same for a box at any position and scale.
"""

from __future__ import annotations

from minivision.backend import get_array_module


def centres_and_sizes(boxes):
    """boxes (N, 4) xyxy -> (cx, cy, w, h), each (N,)."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights, widths, heights


def encode(boxes, reference_boxes, weights):
    """boxes (N, 4), reference_boxes (N, 4) xyxy with positive sizes, weights (wx, wy, ww, wh)
    -> deltas (N, 4): the offsets that turn each reference box into its box, in the wider
    dtype of the two.

    Lecture: region proposals (Faster R-CNN regresses each anchor's offsets to its object).
    """
    xp = get_array_module(boxes, reference_boxes)
    wx, wy, ww, wh = weights
    cx, cy, w, h = centres_and_sizes(boxes)
    ref_cx, ref_cy, ref_w, ref_h = centres_and_sizes(reference_boxes)
    deltas = xp.stack(
        [
            wx * (cx - ref_cx) / ref_w,
            wy * (cy - ref_cy) / ref_h,
            ww * xp.log(w / ref_w),
            wh * xp.log(h / ref_h),
        ],
        axis=1,
    )
    return deltas.astype(xp.result_type(boxes.dtype, reference_boxes.dtype), copy=False)


def decode(deltas, reference_boxes, weights, clip):
    """deltas (N, 4), reference_boxes (N, 4) xyxy, weights (wx, wy, ww, wh), clip -> boxes
    (N, 4) xyxy, in the wider dtype of the two: ``encode`` undone.

    dw and dh (after dividing by their weights) are clamped from above at ``clip``, so exp
    cannot overflow; a very negative one just gives a tiny box.

    Lecture: region proposals (proposals are anchors moved by the predicted offsets).
    """
    xp = get_array_module(deltas, reference_boxes)
    wx, wy, ww, wh = weights
    ref_cx, ref_cy, ref_w, ref_h = centres_and_sizes(reference_boxes)
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw = xp.minimum(deltas[:, 2] / ww, clip)
    dh = xp.minimum(deltas[:, 3] / wh, clip)
    cx, cy = dx * ref_w + ref_cx, dy * ref_h + ref_cy
    half_w, half_h = 0.5 * xp.exp(dw) * ref_w, 0.5 * xp.exp(dh) * ref_h
    boxes = xp.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    return boxes.astype(xp.result_type(deltas.dtype, reference_boxes.dtype), copy=False)
