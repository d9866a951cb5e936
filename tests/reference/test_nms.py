"""minivision.reference.nms: greedy NMS against a torch restatement of torchvision's CPU
kernel, the brute-force oracle and the greedy invariants, hand-checked cases, and the fast
path (Numba sweep) keeping the same boxes in the same order.

Tests of part ``nms`` call the reference's ``nms`` before any IoU, so they fail with its
message in a student copy without it; no module imported here is a fast path.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
from minivision import ops
from minivision.reference.nms import batched_nms, nms
from tests.ops.box_reference import check_greedy_invariants, reference_nms
from tests.ops.test_box_extremes import extreme_boxes
from tests.ops.test_nms import THRESHOLDS, detections

DTYPES = [np.float32, np.float64]


def torchvision_nms(boxes, scores, iou_threshold):
    """torchvision's CPU NMS kernel restated with torch, ties in score broken by lower index
    (a stable sort; torchvision leaves their order open). Its IoU is NaN between two boxes
    without area, which suppresses nothing; it compares the IoU with the threshold as a
    double, as its C++ does."""
    import torch

    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in torch.sort(scores, descending=True, stable=True).indices.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        width = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0)
        height = (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)).clamp(min=0)
        inter = width * height
        suppressed |= (inter / (areas[i] + areas - inter)).double() > iou_threshold
    return np.array(keep, dtype=np.int64)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), threshold=THRESHOLDS)
def test_matches_torchvision(dtype, data, threshold):
    torch = pytest.importorskip("torch")
    boxes, scores, _ = data.draw(detections(dtype=dtype))
    expected = torchvision_nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold)
    np.testing.assert_array_equal(nms(boxes, scores, threshold), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), threshold=THRESHOLDS)
def test_equals_the_brute_force_oracle_and_keeps_the_greedy_invariants(dtype, data, threshold):
    boxes, scores, groups = data.draw(detections(dtype=dtype))
    keep = nms(boxes, scores, threshold)
    assert keep.dtype == np.int64
    np.testing.assert_array_equal(keep, reference_nms(boxes, scores, threshold))
    check_greedy_invariants(boxes, scores, np.zeros(len(boxes), np.int64), threshold, keep)
    keep = batched_nms(boxes, scores, groups, threshold)
    np.testing.assert_array_equal(keep, reference_nms(boxes, scores, threshold, groups))
    check_greedy_invariants(boxes, scores, groups, threshold, keep)


def test_hand_case():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # 0: score 0.8, IoU 90 / 110 with box 1
            [1, 0, 11, 10],  # 1: score 0.9
            [0, 0, 10, 5],  # 2: score 0.7, IoU 45 / 105 with box 1 and 50 / 100 = 0.5 with box 0
            [20, 20, 30, 30],  # 3: far from the others
            [20, 20, 30, 30],  # 4: a copy of 3 with its score: 3 has the lower index and wins
            [5, 5, 5, 5],  # 5: the best score, but a point: IoU 0 with every box
        ],
        np.float32,
    )
    scores = np.array([0.8, 0.9, 0.7, 0.3, 0.3, 0.95], np.float32)
    # By score: 5 suppresses nothing, 1 suppresses 0 but not 2, 3 suppresses 4.
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [5, 1, 2, 3])
    np.testing.assert_array_equal(nms(boxes, scores, 1.0), [5, 1, 0, 2, 3, 4])
    # Box 1 alone in its category suppresses nothing; 0 keeps 2 (IoU 0.5 is not above 0.5).
    categories = np.array([0, 1, 0, 2, 2, 0])
    np.testing.assert_array_equal(batched_nms(boxes, scores, categories, 0.5), [5, 1, 0, 2, 3])
    assert nms(boxes[:0], scores[:0], 0.5).shape == (0,)
    assert batched_nms(boxes[:0], scores[:0], categories[:0], 0.5).dtype == np.int64


def test_a_float32_iou_meets_the_threshold_as_given():
    """IoU float32(0.1) = 0.10000000149 is above the threshold 0.1, though not above
    0.1 rounded to float32: the box is suppressed, as in torchvision."""
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 1]], np.float32)  # IoU 10 / 100
    scores = np.array([0.9, 0.8], np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.1), [0])
    np.testing.assert_array_equal(nms(boxes.astype(np.float64), scores, 0.1), [0, 1])  # exactly 0.1


# ----------------------------------------------------------------- the fast path
def _both_paths(op, *args):
    """op(*args) with the fast paths, then with the reference."""
    with mv.use_reference(False):
        fast = op(*args)
    with mv.use_reference(True):
        return fast, op(*args)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), threshold=THRESHOLDS, extreme=st.booleans())
def test_fast_path_keeps_what_the_reference_keeps(dtype, data, threshold, extreme):
    if extreme:
        boxes = data.draw(extreme_boxes(dtype, max_rows=12))
        n = len(boxes)
        scores = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype)
        groups = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), np.int64)
    else:
        boxes, scores, groups = data.draw(detections(dtype=dtype))
    fast, reference = _both_paths(ops.nms, boxes, scores, threshold)
    assert fast.dtype == reference.dtype == np.int64
    np.testing.assert_array_equal(fast, reference)
    fast, reference = _both_paths(ops.batched_nms, boxes, scores, groups, threshold)
    np.testing.assert_array_equal(fast, reference)
