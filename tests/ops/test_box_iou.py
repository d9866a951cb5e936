"""box_iou, generalized_box_iou and box_area: hand-checked values, properties, bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minivision as mv
from minivision.backend import to_numpy
from minivision.ops import box_area, box_iou, generalized_box_iou, matched_box_iou
from minivision.tensor import Tensor
from tests.ops.box_reference import reference_iou

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def boxes_strategy(draw, max_rows=12, dtype=np.float64):
    """Boxes on a coarse grid (so duplicates, shared edges and zero-area boxes are common)
    or with arbitrary float coordinates."""
    n = draw(st.integers(0, max_rows))
    if draw(st.booleans()):
        coord = st.integers(0, 8).map(float)
        size = st.integers(0, 5).map(float)
    else:
        coord = st.floats(0, 100, width=32)
        size = st.floats(0, 40, width=32)
    rows = draw(st.lists(st.tuples(coord, coord, size, size), min_size=n, max_size=n))
    xywh = np.array(rows, dtype=np.float64).reshape(n, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(dtype)


def test_hand_checked_values():
    a = np.array([[0, 0, 2, 2], [0, 0, 4, 4], [0, 0, 2, 1]], dtype=np.float64)
    b = np.array([[1, 1, 3, 3], [2, 0, 4, 2], [1, 1, 2, 2], [0, 0, 1, 1]], dtype=np.float64)
    expected = np.array(
        [
            # [0,0,2,2] (area 4): a 1x1 corner overlap, union 4 + 4 - 1; an edge touch;
            # two unit squares inside it, 1 of 4.
            [1 / 7, 0.0, 1 / 4, 1 / 4],
            # [0,0,4,4] (area 16) contains all four: 4, 4, 1 and 1 of 16.
            [4 / 16, 4 / 16, 1 / 16, 1 / 16],
            # [0,0,2,1] (area 2): zero-height overlap with the first and third, an edge
            # touch with the second, and it contains [0,0,1,1]: 1 of 2.
            [0.0, 0.0, 0.0, 1 / 2],
        ]
    )
    np.testing.assert_allclose(box_iou(a, b), expected, rtol=1e-15)


def test_identical_boxes_give_one_and_zero_area_boxes_give_zero():
    boxes = np.array([[0, 0, 2, 2], [1, 1, 1, 1], [0, 0, 0, 5], [1, 1, 1, 1]], dtype=np.float32)
    iou = box_iou(boxes, boxes)
    assert not np.isnan(iou).any()
    np.testing.assert_array_equal(np.diag(iou), [1, 0, 0, 0])
    # A point inside a box and a segment along its edge overlap it with zero area.
    np.testing.assert_array_equal(iou[0, 1:], 0)


def test_output_dtype_follows_inputs():
    f32 = np.array([[0, 0, 1, 1]], np.float32)
    f64 = np.array([[0, 0, 1, 1]], np.float64)
    ints = np.array([[0, 0, 1, 1]], np.int64)
    assert box_iou(f32, f32).dtype == np.float32
    assert box_iou(f32, f64).dtype == np.float64
    assert box_iou(ints, ints).dtype == np.float64
    assert generalized_box_iou(f32, f32).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_inputs_give_empty_results(dtype):
    empty, one = np.zeros((0, 4), dtype), np.array([[0, 0, 1, 1]], dtype)
    for op in (box_iou, generalized_box_iou):
        assert op(empty, one).shape == (0, 1) and op(empty, one).dtype == dtype
        assert op(one, empty).shape == (1, 0)
    assert box_area(empty).shape == (0,) and box_area(empty).dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(data=st.data())
def test_iou_matches_brute_force_and_is_symmetric_in_unit_range(dtype, data):
    a = data.draw(boxes_strategy(dtype=dtype))
    b = data.draw(boxes_strategy(dtype=dtype))
    iou = box_iou(a, b)
    assert iou.shape == (len(a), len(b)) and iou.dtype == dtype
    expected = np.array([[reference_iou(p, q, dtype) for q in b] for p in a]).reshape(
        len(a), len(b)
    )
    np.testing.assert_array_equal(iou, expected.astype(dtype))
    np.testing.assert_array_equal(box_iou(b, a), iou.T)
    assert ((iou >= 0) & (iou <= 1)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(data=st.data())
def test_matched_iou_is_the_diagonal_of_the_iou_matrix_to_the_bit(dtype, data):
    boxes = data.draw(boxes_strategy(max_rows=24, dtype=dtype))
    a, b = (
        boxes[: len(boxes) // 2],
        boxes[len(boxes) // 2 : len(boxes) // 2 * 2],
    )  # partners from one draw
    matched = matched_box_iou(a, b)
    assert matched.shape == (len(a),) and matched.dtype == dtype
    np.testing.assert_array_equal(matched, np.diag(box_iou(a, b)))


def test_matched_iou_on_each_device_and_bad_pairs(device):
    a = mv.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]], device=device)
    b = mv.tensor([[1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 6.0, 6.0]], device=device)
    matched = matched_box_iou(a, b)
    assert isinstance(matched, Tensor) and matched.device == device
    np.testing.assert_allclose(
        to_numpy(matched.data), [1 / 7, 0], rtol=1e-6
    )  # overlap 1 of 4 + 4 - 1; disjoint
    with pytest.raises(
        ValueError,
        match=r"matched_box_iou pairs boxes1\[i\] with boxes2\[i\]: boxes1 holds 2 boxes, "
        r"boxes2 1; expected as many",
    ):
        matched_box_iou(a, b[:1])
    with pytest.raises(ValueError, match=r"boxes2 must satisfy x2 >= x1"):
        matched_box_iou(np.zeros((1, 4)), np.array([[2.0, 0, 1, 1]]))


@SETTINGS
@given(a=boxes_strategy(), b=boxes_strategy())
def test_giou_bounds(a, b):
    giou, iou = generalized_box_iou(a, b), box_iou(a, b)
    assert not np.isnan(giou).any()
    assert ((giou >= -1 - 1e-12) & (giou <= iou + 1e-12)).all()
    np.testing.assert_allclose(generalized_box_iou(b, a), giou.T, rtol=0, atol=1e-12)
    positive = box_area(a) > 0
    np.testing.assert_allclose(np.diag(generalized_box_iou(a, a))[positive], 1.0)


def test_giou_hand_checked_values():
    a = np.array([[0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 0, 0]], np.float64)
    b = np.array([[2, 0, 3, 1], [1, 1, 3, 3], [1, 1, 1, 1]], np.float64)
    giou = generalized_box_iou(a, b)
    # Disjoint unit squares: IoU 0, enclosing [0,0,3,1] of area 3 leaves 3 - 2 uncovered.
    assert giou[0, 0] == pytest.approx(-1 / 3)
    # Overlapping 2x2 squares: IoU 1/7, enclosing 3x3 = 9 minus union 7 -> 1/7 - 2/9.
    assert giou[1, 1] == pytest.approx(1 / 7 - 2 / 9)
    # Two distinct points: union 0, the enclosing 1x1 square is all uncovered.
    assert giou[2, 2] == pytest.approx(-1.0)


def test_box_area():
    boxes = np.array([[0, 0, 2, 3], [1, 1, 1, 4], [0.5, 0.5, 1.0, 1.5]], np.float32)
    np.testing.assert_array_equal(box_area(boxes), np.array([6, 0, 0.5], np.float32))


def test_tensor_in_tensor_out():
    a = np.array([[0, 0, 2, 2]], np.float32)
    b = np.array([[1, 1, 3, 3]], np.float32)
    out = box_iou(Tensor(a), Tensor(b))
    assert isinstance(out, Tensor)
    np.testing.assert_allclose(out.data, [[1 / 7]], rtol=1e-6)
    assert isinstance(box_area(Tensor(a)), Tensor)
    assert isinstance(generalized_box_iou(Tensor(a), b), Tensor)


def test_lists_are_accepted():
    np.testing.assert_array_equal(box_iou([[0, 0, 2, 2]], [[0, 0, 2, 2]]), [[1.0]])


@pytest.mark.parametrize(
    "boxes1, match",
    [
        (np.zeros((3, 5)), r"boxes1 must have shape \(N, 4\).*got shape \(3, 5\)"),
        (np.zeros(4), r"boxes1 must have shape \(N, 4\).*got shape \(4,\)"),
        (np.array([[0, 0, np.nan, 1]]), r"boxes1 must be finite, got NaN or inf at row 0"),
        (
            np.array([[0, 0, 1, 1], [0, 0, np.inf, 1]]),
            r"boxes1 must be finite, got NaN or inf at row 1",
        ),
        (
            np.array([[0, 0, 1, 1], [2, 0, 1, 1]]),
            r"boxes1 must satisfy x2 >= x1 and y2 >= y1.*row 1: \[2\.0, 0\.0, 1\.0, 1\.0\]",
        ),
        (np.array([[0, 3, 1, 1]]), r"boxes1 must satisfy x2 >= x1 and y2 >= y1"),
    ],
)
def test_bad_boxes_raise_value_error(boxes1, match):
    with pytest.raises(ValueError, match=match):
        box_iou(boxes1, np.zeros((1, 4)))


def test_bad_second_argument_is_named():
    with pytest.raises(ValueError, match=r"boxes2 must have shape \(N, 4\)"):
        generalized_box_iou(np.zeros((1, 4)), np.zeros((1, 3)))


def test_non_numeric_boxes_raise_type_error():
    with pytest.raises(TypeError, match=r"boxes must hold real numbers.*got dtype <U1"):
        box_area(np.array([["a", "b", "c", "d"]]))
