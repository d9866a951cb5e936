"""distance_box_iou and complete_box_iou: hand-worked values, identical and degenerate
boxes, properties, torchvision parity (where installed), kinds and dtypes, bad input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minivision as mv
from minivision.ops import box_iou, complete_box_iou, distance_box_iou
from minivision.tensor import Tensor
from tests.ops.box_reference import reference_iou
from tests.ops.test_box_iou import boxes_strategy

SETTINGS = settings(max_examples=50, deadline=None)
EPS = 1e-7
VARIANTS = [distance_box_iou, complete_box_iou]
# Values of order 1 after a handful of roundings: 4 machine epsilons (seen: at most 2.1).
ROUNDINGS = 4


@st.composite
def box_pairs(draw, dtype=np.float64, max_rows=8):
    """Two box sets ``(N, 4)``, ``(M, 4)`` where ``b`` often repeats rows of ``a`` (identical
    boxes) and points, segments and shared edges are common."""
    a = draw(boxes_strategy(max_rows=max_rows, dtype=dtype))
    fresh = draw(boxes_strategy(max_rows=max_rows, dtype=dtype))
    copies = (
        a[draw(st.lists(st.integers(0, max(len(a) - 1, 0)), max_size=len(a)))] if len(a) else a[:0]
    )
    return a, np.concatenate([copies, fresh])


def _has_area(boxes):
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def _is_point(boxes):
    return (boxes[:, 2] == boxes[:, 0]) & (boxes[:, 3] == boxes[:, 1])


# ----------------------------------------------------------------- hand-worked values
def test_unit_squares_side_by_side():
    """[0,0,1,1] and [1,0,2,1] touch along an edge: IoU 0; centres (0.5, 0.5) and
    (1.5, 0.5) are 1 apart, d^2 = 1; the enclosing box [0,0,2,1] has diagonal^2 = 4 + 1 = 5.
    Both are squares (same aspect angle pi/4), so v = 0 and CIoU = DIoU = -1 / (5 + eps)."""
    a, b = np.array([[0.0, 0, 1, 1]]), np.array([[1.0, 0, 2, 1]])
    expected = 0 - 1 / (5 + EPS)
    assert distance_box_iou(a, b)[0, 0] == pytest.approx(expected, rel=1e-15)
    assert complete_box_iou(a, b)[0, 0] == pytest.approx(expected, rel=1e-15)


def test_nested_boxes_of_different_aspect():
    """[0,0,2,1] contains [0,0,1,1]: IoU 1 / 2; centres (1, 0.5) and (0.5, 0.5), d^2 = 1/4;
    the enclosing box is [0,0,2,1], diagonal^2 = 5. Aspect angles atan(2) and atan(1)
    differ by atan(1/3) (tan(a - b) = (2 - 1) / (1 + 2)), so v = 4 / pi^2 atan(1/3)^2 and
    alpha = v / (1 - 1/2 + v + eps)."""
    a, b = np.array([[0.0, 0, 2, 1]]), np.array([[0.0, 0, 1, 1]])
    diou = 0.5 - 0.25 / (5 + EPS)
    v = 4 / math.pi**2 * math.atan(1 / 3) ** 2
    alpha = v / (0.5 + v + EPS)
    assert distance_box_iou(a, b)[0, 0] == pytest.approx(diou, rel=1e-14)
    assert complete_box_iou(a, b)[0, 0] == pytest.approx(diou - alpha * v, rel=1e-14)


def test_segment_and_point_against_a_square():
    """A horizontal segment [0,0,2,0] and the square [0,0,2,2]: IoU 0 (no area); centres
    (1, 0) and (1, 1), d^2 = 1; enclosing [0,0,2,2], diagonal^2 = 8. Angles pi/2 (zero
    height) and pi/4: v = 4 / pi^2 (pi/4)^2 = 1/4, alpha = (1/4) / (1 + 1/4 + eps).
    The point (1, 1) and the unit square [0,0,1,1]: d^2 = 1/2, diagonal^2 = 2, and a point
    has no aspect ratio, so v = 0."""
    segment, square = np.array([[0.0, 0, 2, 0]]), np.array([[0.0, 0, 2, 2]])
    alpha = 0.25 / (1.25 + EPS)
    assert distance_box_iou(segment, square)[0, 0] == pytest.approx(-1 / (8 + EPS), rel=1e-15)
    assert complete_box_iou(segment, square)[0, 0] == pytest.approx(
        -1 / (8 + EPS) - alpha * 0.25, rel=1e-15
    )
    point, unit = np.array([[1.0, 1, 1, 1]]), np.array([[0.0, 0, 1, 1]])
    for op in VARIANTS:
        assert op(point, unit)[0, 0] == pytest.approx(-0.5 / (2 + EPS), rel=1e-15)


def test_eps_sits_beside_the_squared_diagonal():
    """With eps = 3 the unit squares of the first case give -1 / (5 + 3)."""
    a, b = np.array([[0.0, 0, 1, 1]]), np.array([[1.0, 0, 2, 1]])
    assert distance_box_iou(a, b, eps=3.0)[0, 0] == -1 / 8
    assert complete_box_iou(a, b, eps=3)[0, 0] == -1 / 8


# ----------------------------------------------------------------- identical and degenerate boxes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", VARIANTS)
def test_identical_boxes_give_one_and_zero_size_boxes_stay_finite(op, dtype):
    """Copies of a box with area: exactly 1. A zero-area box has IoU 0 with every box, so
    with a copy of itself (same centre) it scores 0, never NaN, even with eps = 0."""
    boxes = np.array(
        [[0, 0, 2, 3], [5, 5, 5.5, 6], [1, 1, 1, 1], [0, 0, 0, 5], [0, 4, 3, 4]], dtype
    )
    for eps in (EPS, 0.0):
        out = op(boxes, boxes, eps=eps)
        assert out.dtype == dtype and np.isfinite(out).all()
        np.testing.assert_array_equal(np.diag(out), [1, 1, 0, 0, 0])


@pytest.mark.parametrize("op", VARIANTS)
@SETTINGS
@given(pair=box_pairs())
def test_bounds_symmetry_and_order(op, pair):
    """Symmetric; DIoU in (-1, 1] and at most IoU; CIoU in (-2, 1] and at most DIoU."""
    a, b = pair
    out, iou = op(a, b), box_iou(a, b)
    assert out.shape == (len(a), len(b)) and np.isfinite(out).all()
    np.testing.assert_allclose(op(b, a), out.T, rtol=0, atol=1e-15)
    assert (out <= iou + 1e-15).all()
    if op is distance_box_iou:
        assert (out > -1).all()
    else:
        assert (out > -2).all() and (out <= distance_box_iou(a, b) + 1e-15).all()
    copies = op(a, a)
    np.testing.assert_array_equal(np.diag(copies)[_has_area(a)], 1.0)


# ----------------------------------------------------------------- references
def reference_variants(p, q, eps):
    """DIoU and CIoU of two boxes in Python floats, from their definitions: IoU as
    ``reference_iou`` (0 for a zero-area box), v = 4 / pi^2 (atan2(w1, h1) - atan2(w2, h2))^2,
    0 when either box is a point."""
    p, q = [float(v) for v in p], [float(v) for v in q]
    iou = reference_iou(p, q)
    center_sq = ((p[0] + p[2]) / 2 - (q[0] + q[2]) / 2) ** 2 + (
        (p[1] + p[3]) / 2 - (q[1] + q[3]) / 2
    ) ** 2
    diagonal_sq = (
        (max(p[2], q[2]) - min(p[0], q[0])) ** 2 + (max(p[3], q[3]) - min(p[1], q[1])) ** 2 + eps
    )
    diou = iou - (center_sq / diagonal_sq if diagonal_sq > 0 else 0.0)
    (w1, h1), (w2, h2) = (p[2] - p[0], p[3] - p[1]), (q[2] - q[0], q[3] - q[1])
    points = (w1, h1) == (0, 0) or (w2, h2) == (0, 0)
    v = 0.0 if points else 4 / math.pi**2 * (math.atan2(w1, h1) - math.atan2(w2, h2)) ** 2
    denominator = 1 - iou + v + eps
    return diou, diou - (v / denominator * v if denominator > 0 else 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(data=st.data())
def test_matches_the_definitions_pair_by_pair(dtype, data):
    a, b = data.draw(box_pairs(dtype=dtype))
    eps = data.draw(st.sampled_from([EPS, 1e-3, 0.0]))
    expected = np.array([[reference_variants(p, q, eps) for q in b] for p in a]).reshape(
        len(a), len(b), 2
    )
    tolerance = ROUNDINGS * np.finfo(dtype).eps
    for k, op in enumerate(VARIANTS):
        out = op(a, b, eps=eps)
        assert out.dtype == dtype
        np.testing.assert_allclose(out, expected[..., k], rtol=0, atol=tolerance)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["distance_box_iou", "complete_box_iou"])
@SETTINGS
@given(data=st.data())
def test_matches_torchvision(name, dtype, data):
    """Equal to torchvision wherever torchvision gives a number. It gives NaN where IoU is
    0 / 0 (two zero-area boxes) and, for CIoU, where a point's angle atan(0 / 0) enters;
    those are defined above (IoU 0, a point's v 0)."""
    torch = pytest.importorskip("torch")
    tv_ops = pytest.importorskip("torchvision.ops")
    a, b = data.draw(box_pairs(dtype=dtype))
    eps = data.draw(st.sampled_from([EPS, 1e-3]))
    ours = getattr(mv.ops, name)(a, b, eps=eps)
    theirs = getattr(tv_ops, name)(torch.from_numpy(a), torch.from_numpy(b), eps=eps).numpy()
    assert ours.dtype == theirs.dtype == dtype and np.isfinite(ours).all()
    undefined = ~_has_area(a)[:, None] & ~_has_area(b)[None, :]
    if name == "complete_box_iou":
        undefined |= _is_point(a)[:, None] | _is_point(b)[None, :]
    np.testing.assert_array_equal(np.isnan(theirs), undefined)
    tolerance = ROUNDINGS * np.finfo(dtype).eps
    np.testing.assert_allclose(ours[~undefined], theirs[~undefined], rtol=0, atol=tolerance)


# ----------------------------------------------------------------- kinds, dtypes, shapes
@pytest.mark.parametrize("op", VARIANTS)
def test_kind_dtype_and_empty_inputs(op):
    a = np.array([[0, 0, 2, 2]], np.float32)
    b = np.array([[1, 1, 3, 3], [0, 0, 1, 2]], np.float32)
    out = op(Tensor(a), Tensor(b))
    assert isinstance(out, Tensor) and out.shape == (1, 2) and out.dtype == np.float32
    array_out = op(a, b)
    assert isinstance(array_out, np.ndarray) and array_out.dtype == np.float32
    np.testing.assert_array_equal(out.data, array_out)
    assert op(a, b.astype(np.float64)).dtype == np.float64
    assert op(a.astype(np.int64), b.astype(np.int64)).dtype == np.float64
    assert op(np.zeros((0, 4), np.float32), b).shape == (0, 2)
    assert op(a, np.zeros((0, 4))).shape == (1, 0)
    np.testing.assert_array_equal(op([[0, 0, 2, 2]], [[0, 0, 2, 2]]), [[1.0]])


def test_on_each_device(device):
    a = mv.tensor([[0.0, 0.0, 1.0, 1.0]], device=device)
    b = mv.tensor([[1.0, 0.0, 2.0, 1.0]], device=device)
    for op in VARIANTS:
        out = op(a, b)
        assert isinstance(out, Tensor) and out.device == device
        np.testing.assert_allclose(
            out.numpy(), [[-1 / (5 + EPS)]], rtol=1e-6
        )  # as the unit squares above


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("op", VARIANTS)
@pytest.mark.parametrize(
    "eps, shown",
    [
        (-1e-7, "-1e-07"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ("0.1", "'0.1'"),
        (True, "True"),
    ],
)
def test_bad_eps(op, eps, shown):
    with pytest.raises(ValueError, match=rf"eps must be a finite number >= 0, got {shown}"):
        op(np.zeros((1, 4)), np.zeros((1, 4)), eps=eps)


@pytest.mark.parametrize("op", VARIANTS)
def test_bad_boxes_are_named(op):
    with pytest.raises(ValueError, match=r"boxes1 must have shape \(N, 4\).*got shape \(2, 3\)"):
        op(np.zeros((2, 3)), np.zeros((1, 4)))
    with pytest.raises(
        ValueError,
        match=r"boxes2 must satisfy x2 >= x1 and y2 >= y1.*"
        r"row 1: \[0\.0, 3\.0, 1\.0, 1\.0\]",
    ):
        op(np.zeros((1, 4)), np.array([[0.0, 0, 1, 1], [0, 3, 1, 1]]))
    with pytest.raises(ValueError, match=r"boxes2 must be finite, got NaN or inf at row 0"):
        op(np.zeros((1, 4)), np.array([[0.0, 0, np.inf, 1]]))
    with pytest.raises(TypeError, match=r"boxes1 must hold real numbers.*got dtype <U1"):
        op(np.array([["a", "b", "c", "d"]]), np.zeros((1, 4)))
