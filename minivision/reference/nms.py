"""Greedy non-maximum suppression (NMS), over all boxes and within categories.

A detector scores many overlapping windows around each object; NMS keeps the best of
each cluster. Walk the boxes by decreasing score (ties: the lower index first) and keep a
box unless a box kept before it overlaps it with IoU strictly greater than the threshold.
IoUs are ``box_iou``'s, so a box without area neither suppresses nor is suppressed.
"""

from __future__ import annotations

import numpy as np

from minivision.backend import get_array_module
from minivision.reference.boxes import box_iou


def nms(boxes, scores, iou_threshold):
    """boxes (N, 4), scores (N,), iou_threshold in [0, 1] -> kept indices (K,) int64, by
    decreasing score (ties: lower index first).

    Greedy: take the best box left, keep it, drop every box left whose IoU with it is above
    the threshold, and repeat until no box is left.

    Lecture: detection (a high-scoring window has high-scoring neighbours: non-maximum
    suppression drops detections that overlap a higher-scoring one).
    """
    xp = get_array_module(boxes, scores)
    # BEGIN SOLUTION nms: write nms, greedy NMS by score (ties: lower index first) with box_iou
    order = xp.argsort(-scores, kind="stable")
    boxes = boxes[order]
    left = xp.ones(len(order), dtype=bool)  # neither kept nor dropped yet, in score order
    keep = []
    for i in range(len(order)):
        if left[i]:
            keep.append(i)
            # In float64: a float32 IoU meets the threshold as given, not rounded to float32.
            left &= box_iou(boxes[i : i + 1], boxes)[0].astype(np.float64) <= iou_threshold
    return order[xp.asarray(keep, dtype=np.int64)]
    # END SOLUTION nms


def batched_nms(boxes, scores, idxs, iou_threshold):
    """boxes (N, 4), scores (N,), idxs (N,) integer categories -> kept indices (K,) int64,
    by decreasing score over all categories (ties: lower index first).

    NMS within each category: boxes of different categories never suppress each other.

    Lecture: detection (drop detections that overlap a higher-scoring one of the same class).
    """
    xp = get_array_module(boxes, scores, idxs)
    keep = xp.zeros(0, dtype=np.int64)
    for category in xp.unique(idxs):
        members = xp.nonzero(idxs == category)[0]
        keep = xp.concatenate([keep, members[nms(boxes[members], scores[members], iou_threshold)]])
    keep = xp.sort(keep)  # index order, so that the stable sort below breaks ties by index
    return keep[xp.argsort(-scores[keep], kind="stable")]
