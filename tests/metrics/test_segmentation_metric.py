"""SegmentationMetric on a hand-made confusion matrix, with ignored pixels."""

import math

import numpy as np
import pytest

import minivision as mv
from minivision.metrics import SegmentationMetric
from minivision.tensor import Tensor

# One 2 x 4 image; the two 255 pixels are ignored whatever is predicted there.
TARGET = np.array([[[0, 0, 1, 1], [2, 2, 255, 255]]])
PRED = np.array([[[0, 1, 1, 1], [2, 0, 2, 0]]])
# Confusion (row = target, column = prediction) of the six counted pixels:
#   class 0: one right, one called 1   -> [1, 1, 0]
#   class 1: both right                -> [0, 2, 0]
#   class 2: one right, one called 0   -> [1, 0, 1]
CONFUSION = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def check_hand_scores(scores):
    # Pixel accuracy: 4 of 6. Per-class accuracy 1/2, 1, 1/2 -> mean 2/3.
    assert scores.pixel_accuracy == pytest.approx(2 / 3)
    np.testing.assert_allclose(scores.per_class_accuracy, [1 / 2, 1, 1 / 2])
    assert scores.mean_accuracy == pytest.approx(2 / 3)
    # IoU: class 0: 1 / (2 + 2 - 1); class 1: 2 / (2 + 3 - 2); class 2: 1 / (2 + 1 - 1).
    np.testing.assert_allclose(scores.per_class_iou, [1 / 3, 2 / 3, 1 / 2])
    assert scores.mean_iou == pytest.approx(1 / 2)
    # Every class covers 2 of 6 pixels: (2/3 + 4/3 + 1) / 6 = 1/2.
    assert scores.frequency_weighted_iou == pytest.approx(1 / 2)


def test_hand_made_confusion_matrix():
    metric = SegmentationMetric(num_classes=3)
    metric.update(PRED, TARGET)
    np.testing.assert_array_equal(metric.confusion_matrix, CONFUSION)
    check_hand_scores(metric.compute())


def test_batches_accumulate_and_reset():
    metric = SegmentationMetric(3)
    metric.update(PRED[:, :1], TARGET[:, :1])  # first row
    metric.update(Tensor(PRED[:, 1:]), Tensor(TARGET[:, 1:]))  # second row, as Tensors
    check_hand_scores(metric.compute())
    metric.reset()
    assert metric.confusion_matrix.sum() == 0
    assert math.isnan(metric.compute().pixel_accuracy)


def test_scores_are_argmaxed():
    one_hot = np.eye(3)[PRED].transpose(0, 3, 1, 2)  # (N, C, H, W)
    metric = SegmentationMetric(3)
    metric.update(one_hot, TARGET)
    np.testing.assert_array_equal(metric.confusion_matrix, CONFUSION)


def test_a_batch_with_every_pixel_ignored_adds_nothing(device):
    metric = SegmentationMetric(3, ignore_index=255)
    metric.update(mv.tensor([[0, 1]], device=device), mv.tensor([[1, 1]], device=device))
    metric.update(mv.tensor([[2, 2]], device=device), mv.tensor([[255, 255]], device=device))
    np.testing.assert_array_equal(
        metric.confusion_matrix, [[0, 0, 0], [1, 1, 0], [0, 0, 0]]
    )  # rows: targets


def test_absent_and_only_predicted_classes():
    # Class 3 never occurs: NaN, left out of the means. Class 4 is only predicted:
    # accuracy NaN (no pixels), IoU 0 (counted in the mean IoU).
    target = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 4, 1, 1]])
    metric = SegmentationMetric(5, ignore_index=-1)
    metric.update(pred, target)
    scores = metric.compute()
    # IoU 0: 1/2 (one hit, union 2); 1: 2/2; 4: 0/1.
    np.testing.assert_allclose(scores.per_class_iou, [1 / 2, 1, np.nan, np.nan, 0])
    assert scores.mean_iou == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert scores.mean_accuracy == pytest.approx((1 / 2 + 1) / 2)
    # Class 4 has no target pixels, so frequency weighting drops it: (2 * 1/2 + 2 * 1) / 4.
    assert scores.frequency_weighted_iou == pytest.approx(3 / 4)


@pytest.mark.parametrize(
    "pred, target, error, match",
    [
        (
            np.zeros((1, 2, 2), int),
            np.zeros((1, 2, 3), int),
            ValueError,
            r"pred must have the shape of target \(1, 2, 3\) \(labels\) or \(1, 3, 2, 3\) \(scores\), got \(1, 2, 2\)",
        ),
        (
            np.zeros((1, 2), int),
            np.array([[0, 7]]),
            ValueError,
            r"target holds label 7 at a non-ignored pixel; expected labels in \[0, 3\) or target == ignore_index=255",
        ),
        (
            np.array([[0, -1]]),
            np.array([[0, 1]]),
            ValueError,
            r"pred holds label -1 at a non-ignored pixel",
        ),
        (
            np.zeros((1, 2), int),
            np.zeros((1, 2), float),
            TypeError,
            r"target must hold integer labels, got dtype float64",
        ),
        (
            np.zeros((1, 2), float),
            np.zeros((1, 2), int),
            TypeError,
            r"pred labels must be integers",
        ),
    ],
)
def test_bad_input(pred, target, error, match):
    with pytest.raises(error, match=match):
        SegmentationMetric(3).update(pred, target)


def test_bad_num_classes():
    with pytest.raises(ValueError, match=r"num_classes must be a positive int, got 0"):
        SegmentationMetric(0)
