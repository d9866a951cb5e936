"""localization_accuracy on hand-made images."""

import math

import numpy as np
import pytest

from minivision.metrics import localization_accuracy

GT = {"boxes": np.array([[0.0, 0, 10, 10]]), "labels": np.array([1])}


def pred(boxes, scores, labels):
    return {
        "boxes": np.array(boxes, float).reshape(-1, 4),
        "scores": np.array(scores, float),
        "labels": np.array(labels, np.int64),
    }


IMAGES = [
    # 1. Top prediction: right class, IoU 1 -> correct.
    (pred([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.1], [1, 1]), GT),
    # 2. Right place, wrong class on top; the right class comes second.
    (pred([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.5], [2, 1]), GT),
    # 3. Right class, IoU exactly 50/100 = 0.5: not above 0.5 -> wrong.
    (pred([[0, 0, 10, 5]], [0.9], [1]), GT),
    # 4. No ground truth: not counted.
    (
        pred([[0, 0, 10, 10]], [0.9], [1]),
        {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)},
    ),
    # 5. No predictions -> wrong.
    (pred([], [], []), GT),
]


def test_top1_and_top2():
    predictions, targets = zip(*IMAGES)
    # Counted: images 1, 2, 3, 5. Top-1 correct: image 1 only -> 1/4.
    assert localization_accuracy(list(predictions), list(targets)) == pytest.approx(1 / 4)
    # Top-2 also rescues image 2 -> 2/4.
    assert localization_accuracy(list(predictions), list(targets), top_k=2) == pytest.approx(2 / 4)
    # A threshold of 0.4 also accepts image 3 (IoU 0.5 > 0.4) -> 2/4 at top-1.
    assert localization_accuracy(
        list(predictions), list(targets), iou_threshold=0.4
    ) == pytest.approx(2 / 4)


def test_nan_without_ground_truth():
    predictions, targets = zip(IMAGES[3])
    assert math.isnan(localization_accuracy(list(predictions), list(targets)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"top_k": 0}, r"top_k must be a positive int, got 0"),
        ({"iou_threshold": -0.1}, r"iou_threshold must be in \[0, 1\], got -0.1"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        localization_accuracy([IMAGES[0][0]], [GT], **kwargs)
