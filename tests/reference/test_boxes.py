"""minivision.reference.boxes: IoU against a torch restatement of torchvision's box_iou and a
brute-force oracle, hand-checked cases, boxes whose areas do not fit their dtype, and the
fast path (Numba kernels) equal to the reference bit for bit.

Tests of part ``iou`` call the reference, so they fail in a student copy without it; no
module imported here is a fast path.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
from minivision import ops
from minivision.reference.boxes import box_iou, matched_box_iou
from tests.ops.box_reference import exact_iou, reference_iou
from tests.ops.test_box_extremes import extreme_boxes
from tests.ops.test_box_iou import boxes_strategy

DTYPES = [np.float32, np.float64]


def torchvision_box_iou(boxes1, boxes2):
    """torchvision.ops.box_iou, restated with torch: (inter, union) of every pair, whose
    quotient is NaN for two boxes without area; and where the two overlap with positive
    width and height."""
    import torch

    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    return inter, area1[:, None] + area2 - inter, (wh > 0).all(dim=2)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_matches_torchvision_where_it_is_defined(dtype, data):
    """Equal to the bit where torchvision's IoU is a number: its NaN (two boxes without
    area) is 0 here. Overlapping pairs whose intersection underflows (to 0 or a subnormal)
    are left to test_box_extremes: torchvision's quotient loses its precision there."""
    torch = pytest.importorskip("torch")
    a, b = data.draw(boxes_strategy(dtype=dtype)), data.draw(boxes_strategy(dtype=dtype))
    inter, union, overlap = torchvision_box_iou(torch.from_numpy(a), torch.from_numpy(b))
    inter, union, overlap = inter.numpy(), union.numpy(), overlap.numpy()
    iou = box_iou(a, b)
    assert iou.dtype == dtype
    defined = (union > 0) & ~(overlap & (inter < np.finfo(dtype).tiny))
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_array_equal(iou[defined], (inter / union)[defined])
    np.testing.assert_array_equal(iou[union == 0], 0)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_equals_the_brute_force_oracle_and_is_symmetric(dtype, data):
    a, b = data.draw(boxes_strategy(dtype=dtype)), data.draw(boxes_strategy(dtype=dtype))
    iou = box_iou(a, b)
    expected = np.array([[reference_iou(p, q, dtype) for q in b] for p in a]).reshape(iou.shape)
    np.testing.assert_array_equal(iou, expected.astype(dtype))
    np.testing.assert_array_equal(box_iou(b, a), iou.T)
    np.testing.assert_array_equal(matched_box_iou(a, a), np.diag(box_iou(a, a)))


def test_hand_checked_values():
    boxes = np.array(
        [[0, 0, 2, 2], [1, 1, 3, 3], [2, 0, 4, 2], [0, 0, 4, 4], [1, 1, 1, 1], [0, 0, 0, 3]]
    )
    iou = box_iou(boxes.astype(np.float64), boxes.astype(np.float64))
    # [0,0,2,2] and [1,1,3,3]: a 1x1 overlap of 4 + 4 - 1; [2,0,4,2] touches [0,0,2,2] along an
    # edge; [0,0,4,4] holds the three 2x2 boxes: 4 of 16 each; the point and the segment have
    # no area: IoU 0 with every box, themselves included.
    np.testing.assert_array_equal(
        iou,
        [
            [1, 1 / 7, 0, 1 / 4, 0, 0],
            [1 / 7, 1, 1 / 7, 1 / 4, 0, 0],
            [0, 1 / 7, 1, 1 / 4, 0, 0],
            [1 / 4, 1 / 4, 1 / 4, 1, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ],
    )
    assert box_iou(boxes[:0].astype(np.float32), boxes.astype(np.float32)).shape == (0, 6)


@pytest.mark.parametrize(
    "dtype, side", [(np.float32, 1e-23), (np.float32, 1e20), (np.float64, 1e-170)]
)
def test_areas_that_do_not_fit_the_dtype_are_measured_on_rescaled_axes(dtype, side):
    """Areas of 1e-46 and 1e40 (float32) or 1e-340 (float64): a box, its copy and its
    lower-left quarter still give IoU 1 and 1/4."""
    boxes = np.array([[0, 0, side, side], [0, 0, side, side], [0, 0, side / 2, side / 2]], dtype)
    iou = box_iou(boxes, boxes)
    assert iou.dtype == dtype
    expected = [[1, 1, 0.25], [1, 1, 0.25], [0.25, 0.25, 1]]
    np.testing.assert_allclose(iou, expected, rtol=4 * np.finfo(dtype).eps)
    np.testing.assert_array_equal(np.diag(iou), 1)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_boxes_of_every_magnitude_are_exact_to_a_few_ulps(dtype, data):
    a, b = data.draw(extreme_boxes(dtype)), data.draw(extreme_boxes(dtype))
    iou = box_iou(a, b)
    exact = np.array([[float(exact_iou(p, q)) for q in b] for p in a])
    np.testing.assert_allclose(iou, exact, rtol=0, atol=8 * np.finfo(dtype).eps)


# ----------------------------------------------------------------- the fast path
def _both_paths(op, *args):
    """op(*args) with the fast paths, then with the reference."""
    with mv.use_reference(False):
        fast = op(*args)
    with mv.use_reference(True):
        return fast, op(*args)


def test_fast_path_rescales_in_float64_too():
    """A float32 pair whose intersection, 1e-38, is subnormal: both paths measure it on
    rescaled axes in float64 and round once, to the float32 nearest the exact IoU."""
    a = np.array([[0, 0, 1e-14, 1e-19]], np.float32)
    b = np.array([[0, 0, 1e-19, 1e-13]], np.float32)
    exact = np.float32(float(exact_iou(a[0], b[0])))
    fast, reference = _both_paths(ops.box_iou, a, b)
    assert fast[0, 0] == reference[0, 0] == exact


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), extreme=st.booleans())
def test_fast_path_equals_the_reference_to_the_bit(dtype, data, extreme):
    boxes = extreme_boxes(dtype, max_rows=12) if extreme else boxes_strategy(dtype=dtype)
    a, b = data.draw(boxes), data.draw(boxes)
    fast, reference = _both_paths(ops.box_iou, a, b)
    np.testing.assert_array_equal(fast, reference)
    pairs = min(len(a), len(b))
    fast, reference = _both_paths(ops.matched_box_iou, a[:pairs], b[:pairs])
    np.testing.assert_array_equal(fast, reference)
