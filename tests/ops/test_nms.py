"""nms and batched_nms: hand cases, the greedy-NMS invariants under hypothesis, agreement
with a brute-force reference, the GPU path's serial pass, bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivision.ops import batched_nms, box_iou, nms
from minivision.tensor import Tensor
from tests.ops.box_reference import check_greedy_invariants, reference_nms

SETTINGS = settings(max_examples=80, deadline=None)
THRESHOLDS = st.one_of(st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 0.7, 1.0]), st.floats(0, 1))


@st.composite
def detections(draw, max_rows=40, dtype=np.float64):
    """Boxes on a small grid with few distinct scores: many duplicates, ties, shared
    edges, zero-area boxes and IoUs exactly at 0.5 or 1/3."""
    n = draw(st.integers(0, max_rows))
    coord, size = st.integers(0, 12).map(float), st.integers(0, 6).map(float)
    rows = draw(st.lists(st.tuples(coord, coord, size, size), min_size=n, max_size=n))
    xywh = np.array(rows, dtype=np.float64).reshape(n, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(dtype)
    scores = np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), dtype) / 4
    groups = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), np.int64)
    return boxes, scores, groups


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(data=st.data(), threshold=THRESHOLDS)
def test_nms_invariants_and_brute_force(dtype, data, threshold):
    boxes, scores, _ = data.draw(detections(dtype=dtype))
    keep = nms(boxes, scores, threshold)
    check_greedy_invariants(boxes, scores, np.zeros(len(boxes), np.int64), threshold, keep)
    np.testing.assert_array_equal(keep, reference_nms(boxes, scores, threshold))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(data=st.data(), threshold=THRESHOLDS)
def test_batched_nms_invariants_and_brute_force(dtype, data, threshold):
    boxes, scores, groups = data.draw(detections(dtype=dtype))
    keep = batched_nms(boxes, scores, groups, threshold)
    check_greedy_invariants(boxes, scores, groups, threshold, keep)
    np.testing.assert_array_equal(keep, reference_nms(boxes, scores, threshold, groups))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), threshold=st.floats(0.05, 0.95))
def test_nms_continuous_boxes_of_mixed_sizes(seed, n, threshold):
    """Float coordinates and a few very wide boxes, which stretch the sweep's window."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(1, 30, (n, 2)) * np.where(rng.random((n, 1)) < 0.05, 8, 1)
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.random(n).astype(np.float32)
    np.testing.assert_array_equal(
        nms(boxes, scores, threshold), reference_nms(boxes, scores, threshold)
    )


def test_hand_case_duplicates_ties_and_threshold():
    boxes = np.array(
        [
            [0, 0, 2, 2],  # 0: score 0.5
            [0, 0, 2, 2],  # 1: duplicate of 0, same score: 0 wins the tie (lower index)
            [0, 0, 2, 1],  # 2: IoU with 0 is 2/4 = 0.5, exactly the threshold: kept
            [0, 0, 2, 1.5],  # 3: IoU with 0 is 3/4 > 0.5: suppressed by 0
            [5, 5, 5, 5],  # 4: zero area, IoU 0 with everything: kept
            [5, 5, 5, 5],  # 5: its duplicate: IoU 0 as well, kept
            [10, 10, 12, 12],  # 6: highest score, far away: kept first
        ],
        np.float64,
    )
    scores = np.array([0.5, 0.5, 0.4, 0.45, 0.1, 0.1, 0.9])
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [6, 0, 2, 4, 5])
    # A threshold of 1 suppresses nothing (IoU is never above 1) ...
    np.testing.assert_array_equal(nms(boxes, scores, 1.0), [6, 0, 1, 3, 2, 4, 5])
    # ... and 0 suppresses every positive overlap.
    np.testing.assert_array_equal(nms(boxes, scores, 0.0), [6, 0, 4, 5])


def test_batched_nms_never_suppresses_across_classes():
    boxes = np.array([[0, 0, 10, 10]] * 4, np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    # Identical boxes: one survivor per class, in score order.
    np.testing.assert_array_equal(batched_nms(boxes, scores, np.array([3, 7, 3, 7]), 0.5), [0, 1])
    np.testing.assert_array_equal(
        batched_nms(boxes, scores, np.array([0, 1, 2, 3]), 0.5), [0, 1, 2, 3]
    )
    np.testing.assert_array_equal(batched_nms(boxes, scores, np.zeros(4, np.int32), 0.5), [0])


def test_batched_nms_with_large_coordinates_and_labels():
    """The coordinate-offset trick loses float32 precision here; per-class sweeps do not."""
    boxes = np.array([[1e6, 1e6, 1e6 + 4, 1e6 + 4], [1e6 + 1, 1e6, 1e6 + 5, 1e6 + 4]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    # IoU 12/20 = 0.6: suppressed at 0.5 within one class, never across classes.
    np.testing.assert_array_equal(batched_nms(boxes, scores, np.array([10**9, 10**9]), 0.5), [0])
    np.testing.assert_array_equal(batched_nms(boxes, scores, np.array([10**9, 0]), 0.5), [0, 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_input(dtype):
    for keep in (
        nms(np.zeros((0, 4), dtype), np.zeros(0, dtype), 0.5),
        batched_nms(np.zeros((0, 4), dtype), np.zeros(0, dtype), np.zeros(0, np.int64), 0.5),
    ):
        assert keep.shape == (0,) and keep.dtype == np.int64


def test_tensor_in_tensor_out():
    boxes = Tensor(np.array([[0, 0, 2, 2], [0, 0, 2, 2.1]], np.float32))
    keep = nms(boxes, Tensor(np.array([0.2, 0.3], np.float32)), 0.5)
    assert isinstance(keep, Tensor)
    np.testing.assert_array_equal(keep.data, [1])


@SETTINGS
@given(data=st.data(), threshold=THRESHOLDS)
def test_bitmask_serial_pass_matches_nms(data, threshold):
    """The GPU path's host-side pass, fed the mask its kernel would build (bit j of row i
    set when i suppresses j, j later in score order and in the same group)."""
    from minivision.ops import (
        _nms_cuda,  # a fast path, which student copies lack: imported here only
    )

    boxes, scores, groups = data.draw(detections(max_rows=150))
    order = np.argsort(-scores, kind="stable")
    n = len(order)
    if n == 0:
        return
    suppresses = (box_iou(boxes[order], boxes[order]) > threshold) & (
        groups[order][:, None] == groups[order]
    )
    suppresses &= np.triu(np.ones((n, n), bool), k=1)
    blocks = (n + 63) // 64
    padded = np.zeros((n, blocks * 64), np.uint64)
    padded[:, :n] = suppresses
    mask = (padded.reshape(n, blocks, 64) << np.arange(64, dtype=np.uint64)).sum(
        axis=2, dtype=np.uint64
    )
    keep = order[_nms_cuda.keep_from_mask(mask, n)]
    np.testing.assert_array_equal(keep, batched_nms(boxes, scores, groups, threshold))


BOXES = np.array([[0, 0, 1, 1], [0, 0, 2, 2]], np.float32)
SCORES = np.array([0.5, 0.6], np.float32)


@pytest.mark.parametrize(
    "args, error, match",
    [
        (
            (np.zeros((2, 5)), SCORES, 0.5),
            ValueError,
            r"boxes must have shape \(N, 4\).*got shape \(2, 5\)",
        ),
        (
            (BOXES, np.zeros(3), 0.5),
            ValueError,
            r"scores must have shape \(2,\), one entry per row of boxes, got shape \(3,\)",
        ),
        (
            (BOXES, np.zeros((2, 1)), 0.5),
            ValueError,
            r"scores must have shape \(2,\).*got shape \(2, 1\)",
        ),
        (
            (BOXES, np.array([0.1, np.nan]), 0.5),
            ValueError,
            r"scores must be finite, got NaN or inf at row 1",
        ),
        (
            (np.array([[0, 0, 1, 1], [0, 0, np.inf, 1]]), SCORES, 0.5),
            ValueError,
            r"boxes must be finite",
        ),
        (
            (np.array([[0, 0, 1, 1], [3, 0, 1, 1]]), SCORES, 0.5),
            ValueError,
            r"x2 >= x1 and y2 >= y1.*row 1",
        ),
        ((BOXES, SCORES, 1.5), ValueError, r"iou_threshold must be in \[0, 1\], got 1.5"),
        ((BOXES, SCORES, float("nan")), ValueError, r"iou_threshold must be in \[0, 1\], got nan"),
        (
            (BOXES, SCORES, "0.5x"),
            TypeError,
            r"iou_threshold must be a number in \[0, 1\], got '0.5x'",
        ),
    ],
)
def test_nms_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        nms(*args)


@pytest.mark.parametrize(
    "idxs, error, match",
    [
        (
            np.zeros(3, np.int64),
            ValueError,
            r"idxs must have shape \(2,\), one entry per row of boxes, got shape \(3,\)",
        ),
        (np.zeros(2, np.float32), TypeError, r"idxs must be an integer array .* got dtype float32"),
    ],
)
def test_batched_nms_bad_idxs(idxs, error, match):
    with pytest.raises(error, match=match):
        batched_nms(BOXES, SCORES, idxs, 0.5)
