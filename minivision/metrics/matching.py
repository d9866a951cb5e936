"""Match one image's detections of one class to its ground-truth boxes.

Detections arrive sorted by decreasing score with their ``(D, G)`` IoU matrix against the
ground truth; each detection is then a true positive, a false positive or ignored (it
matched a "difficult" box). The two protocols differ in the details, kept here exactly:

- VOC (devkit ``voc_eval``): take the ground-truth box of highest IoU, first on ties;
  a match needs IoU **>** the threshold; a difficult box ignores the detection; an
  already-matched box makes it a false positive (no second choice).
- COCO (pycocotools ``evaluateImg``): among still-unmatched boxes with IoU **>=** the
  threshold take the highest IoU, last on ties, preferring non-ignored boxes.
"""

from __future__ import annotations

import numpy as np


def match_voc(iou, difficult, iou_threshold: float):
    """VOC matching. Returns ``(true_positive, ignored)``, two ``(D,)`` bool arrays."""
    num_dets, num_gt = iou.shape
    true_positive = np.zeros(num_dets, bool)
    ignored = np.zeros(num_dets, bool)
    if num_gt == 0:
        return true_positive, ignored
    taken = np.zeros(num_gt, bool)
    best = iou.argmax(axis=1)
    for d in range(num_dets):
        g = best[d]
        if iou[d, g] <= iou_threshold:
            continue  # false positive
        if difficult[g]:
            ignored[d] = True
        elif not taken[g]:
            true_positive[d] = taken[g] = True
    return true_positive, ignored


def _last_argmax(values) -> int:
    return len(values) - 1 - int(np.argmax(values[::-1]))


def match_coco(iou, ignore, iou_thresholds):
    """COCO matching at every threshold. Returns ``(true_positive, ignored)``, two
    ``(T, D)`` bool arrays for the ``T`` thresholds."""
    num_dets, num_gt = iou.shape
    true_positive = np.zeros((len(iou_thresholds), num_dets), bool)
    ignored = np.zeros_like(true_positive)
    for t, threshold in enumerate(iou_thresholds):
        taken = np.zeros(num_gt, bool)
        for d in range(num_dets):
            candidates = ~taken & (iou[d] >= threshold)
            regular = candidates & ~ignore
            pool = regular if regular.any() else candidates
            if not pool.any():
                continue  # false positive
            g = _last_argmax(np.where(pool, iou[d], -1.0))
            taken[g] = True
            ignored[t, d] = ignore[g]
            true_positive[t, d] = not ignore[g]
    return true_positive, ignored
