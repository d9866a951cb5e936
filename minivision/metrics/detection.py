"""Detection mean average precision under the VOC2007, VOC2010+ and COCO protocols."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from minivision.metrics import ap
from minivision.metrics._inputs import read_images
from minivision.metrics.matching import match_coco, match_voc
from minivision.ops import box_iou

METHODS = ("voc07", "voc", "coco")
# pycocotools' Params.iouThrs: 0.50, 0.55, ..., 0.95.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
COCO_MAX_DETECTIONS = 100


@dataclass(frozen=True)
class DetectionResult:
    """``map``: mean of the per-class APs, over classes with ground truth (NaN if none).
    ``per_class``: AP of every class seen in targets or predictions; NaN without
    ground truth. ``num_ground_truth``: positives per class (difficult boxes excluded)."""

    map: float
    per_class: dict
    num_ground_truth: dict
    method: str


def _check_options(iou_threshold, method, voc_plus_one):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "coco" and iou_threshold != 0.5:
        raise ValueError(
            f"method='coco' averages over the fixed IoU thresholds 0.50:0.05:0.95; "
            f"iou_threshold must stay 0.5, got {iou_threshold!r}"
        )
    if method == "coco" and voc_plus_one:
        raise ValueError("voc_plus_one applies to method 'voc07' and 'voc' only, got method='coco'")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")


def _iou(dets, gts, plus_one: bool):
    """IoU matrix; with ``plus_one`` the VOC devkit's inclusive pixel corners, where a box
    from x1 to x2 is x2 - x1 + 1 wide (the same as moving x2, y2 out by one)."""
    if plus_one:
        shift = np.array([0.0, 0.0, 1.0, 1.0])
        dets, gts = dets + shift, gts + shift
    return box_iou(dets, gts)


def _match_class(images, label, method, iou_threshold, plus_one):
    """Scores and match flags of one class's detections over all images, plus the
    number of positives. Flags are ``(D,)`` for VOC and ``(T, D)`` for COCO."""
    scores, true_positive, ignored, num_positives = [], [], [], 0
    for dets, gts in images:
        d_mask, g_mask = dets.labels == label, gts.labels == label
        gt_boxes, difficult = gts.boxes[g_mask], gts.difficult[g_mask]
        num_positives += int((~difficult).sum())
        order = np.argsort(-dets.scores[d_mask], kind="stable")
        if method == "coco":
            order = order[:COCO_MAX_DETECTIONS]  # per image and class, as pycocotools
        det_boxes, det_scores = dets.boxes[d_mask][order], dets.scores[d_mask][order]
        iou = _iou(det_boxes, gt_boxes, plus_one)
        if method == "coco":
            tp, ign = match_coco(iou, difficult, COCO_IOU_THRESHOLDS)
        else:
            tp, ign = match_voc(iou, difficult, iou_threshold)
        scores.append(det_scores)
        true_positive.append(tp)
        ignored.append(ign)
    return (
        np.concatenate(scores),
        np.concatenate(true_positive, -1),
        np.concatenate(ignored, -1),
        num_positives,
    )


def _average_precision(scores, true_positive, ignored, num_positives, method) -> float:
    order = np.argsort(-scores, kind="stable")
    if method == "coco":
        per_threshold = []
        for tp, ign in zip(true_positive[:, order], ignored[:, order]):
            recall, precision = ap.precision_recall(tp[~ign], num_positives)
            per_threshold.append(ap.coco_ap(recall, precision))
        return float(np.mean(per_threshold))
    tp, ign = true_positive[order], ignored[order]
    recall, precision = ap.precision_recall(tp[~ign], num_positives)
    return ap.voc07_ap(recall, precision) if method == "voc07" else ap.voc_ap(recall, precision)


def evaluate_detections(
    predictions, targets, iou_threshold=0.5, method="voc", *, voc_plus_one=False
):
    """Per-class AP and mAP of detections against ground truth.

    Args:
        predictions: one dict per image: ``boxes`` ``(K, 4)`` xyxy, ``scores`` ``(K,)``,
            ``labels`` ``(K,)`` int.
        targets: one dict per image, same order: ``boxes`` ``(G, 4)``, ``labels`` ``(G,)``
            and optionally ``difficult`` ``(G,)`` bool (neither a positive nor, when
            matched, a false positive).
        iou_threshold: IoU a detection needs to match (VOC: strictly above). COCO uses
            its fixed 0.50:0.05:0.95 instead, so it must stay 0.5 there.
        method: ``"voc07"`` (11-point interpolation), ``"voc"`` (area under the precision
            envelope) or ``"coco"`` (101-point, mean over IoU thresholds, at most 100
            detections per image and class; equals pycocotools' AP for area "all").
        voc_plus_one: measure widths as ``x2 - x1 + 1``, the VOC devkit's rule for its
            1-based inclusive pixel corners ("voc07"/"voc" only).
    Returns:
        A :class:`DetectionResult`.
    """
    _check_options(iou_threshold, method, voc_plus_one)
    images = read_images(predictions, targets)
    labels = sorted(
        {int(x) for dets, gts in images for x in np.concatenate([dets.labels, gts.labels])}
    )
    per_class, num_ground_truth = {}, {}
    for label in labels:
        scores, true_positive, ignored, num_positives = _match_class(
            images, label, method, float(iou_threshold), voc_plus_one
        )
        num_ground_truth[label] = num_positives
        per_class[label] = (
            _average_precision(scores, true_positive, ignored, num_positives, method)
            if num_positives
            else math.nan
        )
    with_gt = [value for value in per_class.values() if not math.isnan(value)]
    return DetectionResult(
        map=float(np.mean(with_gt)) if with_gt else math.nan,
        per_class=per_class,
        num_ground_truth=num_ground_truth,
        method=method,
    )
