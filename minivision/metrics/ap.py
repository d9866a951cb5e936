"""Average precision from a ranked list of true/false positives.

The detection metrics match detections to ground truth, sort them by decreasing score and
drop the ones that matched a "difficult"/ignored box; these functions turn what is left,
a boolean ``(D,)`` array of true positives and the number of positives, into AP under the
three protocols.
"""

from __future__ import annotations

import numpy as np

# The 11 recall levels of VOC2007 as the nearest doubles to 0.0, 0.1, ..., 1.0
# (the devkit's np.arange(0, 1.1, 0.1) drifts: its 4th level is 0.30000000000000004,
# which would make a recall of exactly 0.3 miss it).
VOC07_RECALLS = np.arange(11) / 10
# COCO's 101 recall levels, the same values as pycocotools' Params.recThrs.
COCO_RECALLS = np.linspace(0.0, 1.0, 101)


def precision_recall(true_positives, num_positives: int):
    """Cumulative ``(recall, precision)`` after each detection, both ``(D,)``."""
    tp = np.cumsum(true_positives, dtype=np.float64)
    ranks = np.arange(1, len(tp) + 1, dtype=np.float64)
    return tp / num_positives, tp / ranks


def _precision_envelope(precision):
    """Best precision at this recall or any higher one (monotone non-increasing)."""
    return np.maximum.accumulate(precision[::-1])[::-1]


def voc07_ap(recall, precision) -> float:
    """VOC2007 11-point AP: mean over recall levels 0, 0.1, ..., 1 of the best precision
    reached at that recall or above (0 when the level is never reached)."""
    return float(np.mean([precision[recall >= level].max(initial=0.0) for level in VOC07_RECALLS]))


def voc_ap(recall, precision) -> float:
    """VOC2010+ AP: the exact area under the precision envelope as a function of recall."""
    recall = np.concatenate([[0.0], recall])
    envelope = _precision_envelope(np.concatenate([[0.0], precision]))
    # Each detection that raises recall adds a strip (recall step) x (envelope there).
    return float(np.sum(np.diff(recall) * envelope[1:]))


def coco_ap(recall, precision) -> float:
    """COCO AP at one IoU threshold: mean over 101 recall levels of the envelope at the
    first detection reaching that recall (0 beyond the last recall reached)."""
    values = np.zeros(len(COCO_RECALLS))
    if len(recall):
        at = np.searchsorted(recall, COCO_RECALLS, side="left")
        reached = at < len(recall)
        values[reached] = _precision_envelope(precision)[at[reached]]
    return float(values.mean())
