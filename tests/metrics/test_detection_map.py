"""evaluate_detections on hand-made cases; every expected AP is derived in the comments."""

import math

import numpy as np
import pytest

from minivision.metrics import evaluate_detections
from minivision.tensor import Tensor


def image(boxes, scores=None, labels=None, difficult=None):
    entry = {"boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4)}
    n = len(entry["boxes"])
    entry["labels"] = np.zeros(n, np.int64) if labels is None else np.array(labels, np.int64)
    if scores is not None:
        entry["scores"] = np.array(scores, np.float64)
    if difficult is not None:
        entry["difficult"] = np.array(difficult, bool)
    return entry


# Case A: one image, two ground-truth boxes, three detections.
# Ranked: 0.9 hits the first box (TP), 0.8 hits nothing (FP), 0.7 hits the second (TP).
# Recall 1/2, 1/2, 1; precision 1, 1/2, 2/3; the precision envelope is 1, 2/3, 2/3.
CASE_A = (
    [image([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], scores=[0.9, 0.8, 0.7])],
    [image([[0, 0, 10, 10], [20, 20, 30, 30]])],
)


def test_case_a_voc_all_point():
    # Area under the envelope: recall 0 -> 1/2 at precision 1, 1/2 -> 1 at 2/3:
    # 1/2 + 1/3 = 5/6.
    result = evaluate_detections(*CASE_A, method="voc")
    assert result.per_class == {0: pytest.approx(5 / 6)}
    assert result.map == pytest.approx(5 / 6)
    assert result.num_ground_truth == {0: 2}


def test_case_a_voc07_eleven_point():
    # Levels 0, .1, .., .5 (six of them) reach precision 1; .6, .., 1 (five) reach 2/3:
    # (6 + 5 * 2/3) / 11 = 28/33.
    assert evaluate_detections(*CASE_A, method="voc07").map == pytest.approx(28 / 33)


def test_case_a_coco():
    # Both hits have IoU 1, so every threshold gives the same curve. Of the 101 recall
    # levels, 0, .01, .., .5 (51) find the first detection (envelope 1) and the other 50
    # the third (envelope 2/3): (51 + 50 * 2/3) / 101 = 253/303.
    assert evaluate_detections(*CASE_A, method="coco").map == pytest.approx(253 / 303)


# Case B: one image; a normal box g1 = [0,0,10,10] and a difficult g2 = [20,0,30,10].
# d3 (0.99) sits on g2; d4 (0.95) is [0,0,10,5], IoU with g1 exactly 50/100 = 0.5;
# d1 (0.9) sits on g1; d2 (0.8) duplicates d1.
CASE_B = (
    [
        image(
            [[20, 0, 30, 10], [0, 0, 10, 5], [0, 0, 10, 10], [0, 0, 10, 10]],
            scores=[0.99, 0.95, 0.9, 0.8],
        )
    ],
    [image([[0, 0, 10, 10], [20, 0, 30, 10]], difficult=[False, True])],
)


@pytest.mark.parametrize("method", ["voc", "voc07"])
def test_case_b_difficult_duplicates_and_strict_threshold(method):
    # VOC: d3 matches a difficult box and is ignored; d4's IoU 0.5 is not above 0.5: FP;
    # d1 takes g1: TP; d2 finds g1 taken: FP. One positive (g2 is difficult).
    # Ranked FP, TP, FP: recall 0, 1, 1, precision 0, 1/2, 1/3. Every recall level is
    # reached first at precision 1/2, in both the 11-point and the all-point AP: 1/2.
    # (Counting d3 as a FP would give 1/3; counting g2 as a positive would give 1/4.)
    result = evaluate_detections(*CASE_B, method=method)
    assert result.map == pytest.approx(0.5)
    assert result.num_ground_truth == {0: 1}


def test_case_b_coco_uses_iou_at_or_above_threshold():
    # At IoU 0.50, d4 (IoU exactly 0.5) matches g1: ranked (ignored d3) TP, FP, FP -> AP 1.
    # At 0.55 .. 0.95 (nine thresholds) it is a FP and the curve is VOC's: AP 1/2 at
    # every one of the 101 levels. Mean: (1 + 9 * 1/2) / 10 = 0.55.
    assert evaluate_detections(*CASE_B, method="coco").map == pytest.approx(0.55)


@pytest.mark.parametrize("method", ["voc", "voc07"])
def test_case_b_devkit_plus_one(method):
    # With widths x2 - x1 + 1, d4 and g1 overlap 11 x 6 = 66 of a union 11 x 11 = 121:
    # IoU 0.545 > 0.5, so d4 is the TP and d1, d2 are FPs after it: AP 1.
    assert evaluate_detections(*CASE_B, method=method, voc_plus_one=True).map == pytest.approx(1.0)


# Case C: g1 = [0,0,10,10] and g2 = [0,0,10,8.2] (IoU 82/100 = 0.82 with g1), two
# detections exactly on g1 (0.9 and 0.8).
CASE_C = (
    [image([[0, 0, 10, 10], [0, 0, 10, 10]], scores=[0.9, 0.8])],
    [image([[0, 0, 10, 10], [0, 0, 10, 8.2]])],
)


def test_case_c_voc_has_no_second_choice():
    # The devkit looks only at the best-overlapping box: the 0.8 detection finds g1
    # taken and is a FP although g2 (IoU 0.82) is free. TP, FP: recall 1/2, 1/2 at
    # precision 1, 1/2; AP = 1/2 * 1 = 1/2.
    assert evaluate_detections(*CASE_C, method="voc").map == pytest.approx(0.5)


def test_case_c_coco_takes_the_best_free_box():
    # pycocotools skips taken boxes: at thresholds 0.50 .. 0.80 (seven) the second
    # detection takes g2 (AP 1); at 0.85, 0.90, 0.95 it is a FP: recall 1/2 reached at
    # precision 1, so 51 of 101 levels score 1. Mean: (7 + 3 * 51/101) / 10.
    expected = (7 + 3 * 51 / 101) / 10
    assert evaluate_detections(*CASE_C, method="coco").map == pytest.approx(expected)


def test_classes_without_ground_truth_are_nan_and_left_out_of_the_mean():
    # Case A with the 0.8 miss relabelled class 1: detections but no ground truth -> NaN,
    # not in the mean. Class 2: ground truth but no detections -> AP 0, in the mean.
    predictions = [
        image(
            [[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]],
            scores=[0.9, 0.8, 0.7],
            labels=[0, 1, 0],
        )
    ]
    targets = [image([[0, 0, 10, 10], [20, 20, 30, 30], [70, 70, 80, 80]], labels=[0, 0, 2])]
    # Class 0 now has TP (0.9), TP (0.7) -> AP 1; the mean of 1 and 0 is 1/2.
    result = evaluate_detections(predictions, targets, method="voc")
    assert result.per_class[0] == pytest.approx(1.0)
    assert math.isnan(result.per_class[1])
    assert result.per_class[2] == 0.0
    assert result.map == pytest.approx(0.5)


def test_detections_are_ranked_across_images():
    # Image 1: one box, hit at 0.6. Image 2: one box, a miss at 0.9 and a hit at 0.3.
    # Ranked FP (0.9), TP (0.6), TP (0.3): recall 0, 1/2, 1; precision 0, 1/2, 2/3;
    # envelope 2/3 throughout: AP = 2/3.
    predictions = [
        image([[0, 0, 10, 10]], scores=[0.6]),
        image([[50, 50, 60, 60], [0, 0, 10, 10]], scores=[0.9, 0.3]),
    ]
    targets = [image([[0, 0, 10, 10]]), image([[0, 0, 10, 10]])]
    assert evaluate_detections(predictions, targets, method="voc").map == pytest.approx(2 / 3)


def test_no_ground_truth_at_all_gives_nan():
    result = evaluate_detections([image([[0, 0, 1, 1]], scores=[0.5])], [image([])])
    assert math.isnan(result.map) and math.isnan(result.per_class[0])


def test_iou_threshold_is_used_by_voc():
    # IoU 60/100 = 0.6: a match at 0.5 (AP 1), a miss at 0.7 (AP 0).
    predictions = [image([[0, 0, 10, 6]], scores=[0.9])]
    targets = [image([[0, 0, 10, 10]])]
    assert evaluate_detections(predictions, targets, iou_threshold=0.5).map == pytest.approx(1.0)
    assert evaluate_detections(predictions, targets, iou_threshold=0.7).map == 0.0


def test_tensor_and_empty_list_inputs():
    predictions = [
        {
            "boxes": Tensor(np.array([[0, 0, 10, 10]], np.float32)),
            "scores": Tensor(np.array([0.5], np.float32)),
            "labels": Tensor(np.array([0], np.int64)),
        },
        {"boxes": [], "scores": [], "labels": []},
    ]
    targets = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}, {"boxes": [[0, 0, 5, 5]], "labels": [0]}]
    # One hit out of two positives, at precision 1: AP 1/2.
    assert evaluate_detections(predictions, targets).map == pytest.approx(0.5)


GOOD_P, GOOD_T = CASE_A


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"method": "vco"},
            ValueError,
            r"method must be one of \('voc07', 'voc', 'coco'\), got 'vco'",
        ),
        (
            {"method": "coco", "iou_threshold": 0.7},
            ValueError,
            r"iou_threshold must stay 0.5, got 0.7",
        ),
        ({"iou_threshold": 1.5}, ValueError, r"iou_threshold must be in \[0, 1\], got 1.5"),
        (
            {"method": "coco", "voc_plus_one": True},
            ValueError,
            r"voc_plus_one applies to method 'voc07' and 'voc' only",
        ),
        (
            {"predictions": GOOD_P * 2},
            ValueError,
            r"one entry per image each, got 2 predictions and 1 targets",
        ),
        (
            {"predictions": GOOD_P[0]},
            TypeError,
            r"predictions must be a list with one dict per image, got dict",
        ),
        ({"predictions": [[1, 2]]}, TypeError, r"predictions\[0\] must be a dict"),
        (
            {"predictions": [{"boxes": np.zeros((1, 4)), "labels": [0]}]},
            ValueError,
            r"predictions\[0\] has no 'scores'",
        ),
        (
            {"predictions": [image([[0, 0, 1, 1], [0, 0, 1, 1]], scores=[0.1])]},
            ValueError,
            r"predictions\[0\]\['scores'\] must have shape \(2,\), one entry per row of predictions\[0\]\['boxes'\], got shape \(1,\)",
        ),
        (
            {"predictions": [{"boxes": np.zeros((1, 5)), "scores": [0.1], "labels": [0]}]},
            ValueError,
            r"predictions\[0\]\['boxes'\] must have shape \(N, 4\).*got shape \(1, 5\)",
        ),
        (
            {"predictions": [image([[0, 0, 1, 1]], scores=[np.nan])]},
            ValueError,
            r"predictions\[0\]\['scores'\] must be finite",
        ),
        (
            {"predictions": [{"boxes": [[0, 0, 1, 1]], "scores": [0.5], "labels": [0.0]}]},
            TypeError,
            r"predictions\[0\]\['labels'\] must hold integer class ids, got dtype float64",
        ),
        (
            {"targets": [image([[5, 0, 1, 1]])]},
            ValueError,
            r"targets\[0\]\['boxes'\] must satisfy x2 >= x1 and y2 >= y1.*row 0",
        ),
        (
            {"targets": [image([[0, 0, 1, 1]], difficult=[True, False])]},
            ValueError,
            r"targets\[0\]\['difficult'\] must have shape \(1,\)",
        ),
    ],
)
def test_bad_input(kwargs, error, match):
    args = {"predictions": GOOD_P, "targets": GOOD_T, **kwargs}
    with pytest.raises(error, match=match):
        evaluate_detections(**args)
