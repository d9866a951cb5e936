"""method="coco" equals pycocotools' bbox AP (area "all", 100 detections) on random data."""

import contextlib
import io

import numpy as np
import pytest

from minivision.metrics import evaluate_detections

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

NUM_CLASSES = 4


def random_scene(rng, num_images):
    """Ground truth per image, and detections: jittered copies of ground-truth boxes
    (some duplicated, some with the wrong class), plus clutter."""
    predictions, targets = [], []
    for image in range(num_images):
        num_gt = rng.integers(0, 8)
        xy = rng.uniform(0, 200, (num_gt, 2))
        gt = np.concatenate([xy, xy + rng.uniform(5, 60, (num_gt, 2))], axis=1)
        # Class 3 appears in no ground truth: pycocotools leaves it out, we report NaN.
        gt_labels = rng.integers(0, NUM_CLASSES - 1, num_gt)
        copies = rng.integers(0, num_gt, 3 * num_gt) if num_gt else np.zeros(0, int)
        jitter = rng.normal(0, 0.1, (len(copies), 4)) * np.tile(gt[copies, 2:] - gt[copies, :2], 2)
        hits = gt[copies] + jitter
        hits[:, 2:] = np.maximum(hits[:, 2:], hits[:, :2] + 1)
        hit_labels = np.where(
            rng.random(len(copies)) < 0.9,
            gt_labels[copies],
            rng.integers(0, NUM_CLASSES, len(copies)),
        )
        # One image gets > 100 detections of one class, to exercise the 100-per-image cap.
        num_clutter = 150 if image == 0 else rng.integers(0, 10)
        cxy = rng.uniform(0, 200, (num_clutter, 2))
        clutter = np.concatenate([cxy, cxy + rng.uniform(5, 60, (num_clutter, 2))], axis=1)
        clutter_labels = (
            np.zeros(num_clutter, int) if image == 0 else rng.integers(0, NUM_CLASSES, num_clutter)
        )
        boxes = np.concatenate([hits, clutter])
        predictions.append(
            {
                "boxes": boxes,
                "scores": rng.random(len(boxes)),
                "labels": np.concatenate([hit_labels, clutter_labels]),
            }
        )
        targets.append({"boxes": gt, "labels": gt_labels})
    return predictions, targets


def xywh(box):
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def coco_evaluation(predictions, targets, area_range=None):
    """pycocotools' bbox evaluation of ``predictions`` against ``targets`` (one dict per
    image, labels 0..NUM_CLASSES-1), evaluated and accumulated; ``area_range``: (low, high)
    areas for its one area range instead of COCO's four."""
    images, annotations, results = [], [], []
    for image_id, (pred, target) in enumerate(zip(predictions, targets), start=1):
        images.append({"id": image_id, "width": 300, "height": 300})
        for box, label in zip(target["boxes"], target["labels"]):
            w, h = xywh(box)[2:]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": xywh(box),
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(pred["boxes"], pred["scores"], pred["labels"]):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": xywh(box),
                    "score": float(score),
                }
            )
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": str(k)} for k in range(NUM_CLASSES)],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        if area_range is not None:
            evaluation.params.areaRng, evaluation.params.areaRngLbl = [list(area_range)], ["range"]
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation


def pycocotools_ap(predictions, targets):
    """Per-class AP (area "all", maxDets=100) and mAP from pycocotools."""
    evaluation = coco_evaluation(predictions, targets)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.summarize()
    # precision: (iou thresholds, recall levels, classes, area ranges, max detections);
    # area range 0 is "all", max-detections index 2 is 100; -1 marks classes without GT.
    precision = evaluation.eval["precision"][:, :, :, 0, 2]
    per_class = {
        k: float(precision[:, :, k].mean()) if (precision[:, :, k] > -1).all() else float("nan")
        for k in range(NUM_CLASSES)
    }
    return per_class, evaluation.stats[0]


@pytest.mark.parametrize("seed", range(6))
def test_coco_map_equals_pycocotools(seed):
    rng = np.random.default_rng(seed)
    predictions, targets = random_scene(rng, num_images=int(rng.integers(3, 12)))
    expected_per_class, expected_map = pycocotools_ap(predictions, targets)
    result = evaluate_detections(predictions, targets, method="coco")
    assert result.map == pytest.approx(expected_map, abs=1e-6)
    for label in range(NUM_CLASSES - 1):
        assert result.per_class.get(label, float("nan")) == pytest.approx(
            expected_per_class[label], abs=1e-6, nan_ok=True
        )
    assert np.isnan(result.per_class.get(NUM_CLASSES - 1, float("nan")))
