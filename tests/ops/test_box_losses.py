"""generalized_box_iou_loss, distance_box_iou_loss, complete_box_iou_loss: hand-worked
values, identical and degenerate boxes, agreement with the pairwise functions, float64
gradcheck, torchvision parity of values and both gradients (where installed), reductions
and bad input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minivision as mv
from minivision.ops import (
    complete_box_iou,
    complete_box_iou_loss,
    distance_box_iou,
    distance_box_iou_loss,
    generalized_box_iou,
    generalized_box_iou_loss,
)
from minivision.tensor import Tensor
from tests.ops.test_box_iou import boxes_strategy

SETTINGS = settings(max_examples=50, deadline=None)
EPS = 1e-7
# Each loss, its pairwise function with eps 0 (GIoU has none), and the loss's upper bound.
LOSSES = {
    "generalized_box_iou_loss": (generalized_box_iou_loss, generalized_box_iou, 2),
    "distance_box_iou_loss": (
        distance_box_iou_loss,
        lambda a, b: distance_box_iou(a, b, eps=0.0),
        2,
    ),
    "complete_box_iou_loss": (
        complete_box_iou_loss,
        lambda a, b: complete_box_iou(a, b, eps=0.0),
        3,
    ),
}
NAMES = list(LOSSES)
# Values of order 1 after a handful of roundings: 4 machine epsilons.
ROUNDINGS = 4


@st.composite
def matched_boxes(draw, dtype=np.float64, max_rows=10):
    """Partners ``(N, 4)``, ``(N, 4)``: each row of the second set is a copy of its partner
    (identical boxes) or a fresh box; points, segments and shared edges are common."""
    a = draw(boxes_strategy(max_rows=max_rows, dtype=dtype))
    fresh = draw(boxes_strategy(max_rows=len(a), dtype=dtype))
    fresh = np.concatenate([fresh, a[len(fresh) :]])
    copy = np.array(draw(st.lists(st.booleans(), min_size=len(a), max_size=len(a))), bool)
    return a, np.where(copy[:, None], a, fresh).astype(dtype)


def _loss(name, boxes1, boxes2, **kwargs):
    return LOSSES[name][0](boxes1, boxes2, **kwargs)


# ----------------------------------------------------------------- hand-worked values
def test_unit_squares_side_by_side():
    """[0,0,1,1] and [1,0,2,1]: no overlap, IoU 0 / (2 + eps) = 0. Their union fills the
    enclosing [0,0,2,1] (area 2), so GIoU = 0 and its loss is exactly 1. Centres 1 apart,
    enclosing diagonal^2 = 5, and both are squares (v = 0): DIoU and CIoU losses 1 + 1/(5 + eps)."""
    a, b = np.array([[0.0, 0, 1, 1]]), np.array([[1.0, 0, 2, 1]])
    assert generalized_box_iou_loss(a, b).item() == 1.0
    for loss in (distance_box_iou_loss, complete_box_iou_loss):
        assert loss(a, b).item() == pytest.approx(1 + 1 / (5 + EPS), rel=1e-15)


def test_nested_boxes_of_different_aspect():
    """[0,0,2,1] contains [0,0,1,1]: IoU 1 / (2 + eps); the union is the enclosing box, so
    GIoU = IoU. Centres (1, 0.5) and (0.5, 0.5): d^2 = 1/4 over diagonal^2 5. Angles atan(2)
    and atan(1) differ by atan(1/3), v = 4 / pi^2 atan(1/3)^2, alpha = v / (1 - IoU + v + eps)."""
    a, b = np.array([[0.0, 0, 2, 1]]), np.array([[0.0, 0, 1, 1]])
    iou = 1 / (2 + EPS)
    v = 4 / math.pi**2 * math.atan(1 / 3) ** 2
    alpha = v / (1 - iou + v + EPS)
    assert generalized_box_iou_loss(a, b).item() == pytest.approx(1 - iou, rel=1e-15)
    assert distance_box_iou_loss(a, b).item() == pytest.approx(
        1 - iou + 0.25 / (5 + EPS), rel=1e-15
    )
    assert complete_box_iou_loss(a, b).item() == pytest.approx(
        1 - iou + 0.25 / (5 + EPS) + alpha * v, rel=1e-14
    )


def test_segment_against_a_square():
    """[0,0,2,0] (a horizontal segment, angle pi/2) and [0,0,2,2] (angle pi/4): IoU 0, the
    union (4) fills the enclosing box; centres 1 apart over diagonal^2 8;
    v = 4 / pi^2 (pi/4)^2 = 1/4 and alpha = (1/4) / (1 + 1/4 + eps)."""
    a, b = np.array([[0.0, 0, 2, 0]]), np.array([[0.0, 0, 2, 2]])
    assert generalized_box_iou_loss(a, b).item() == 1.0
    assert distance_box_iou_loss(a, b).item() == pytest.approx(1 + 1 / (8 + EPS), rel=1e-15)
    expected = 1 + 1 / (8 + EPS) + 0.25 / (1.25 + EPS) * 0.25
    assert complete_box_iou_loss(a, b).item() == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_identical_boxes(name):
    """Copies of a box of area A: IoU A / (A + eps), no distance, no aspect gap, so every
    loss is eps / (A + eps), exactly 0 with eps = 0. Copies of a point or segment have
    IoU 0 (and no aspect gap): loss 1. Gradients stay finite."""
    boxes = np.array([[0, 0, 2, 3], [5, 5, 5.5, 6], [1, 1, 1, 1], [0, 0, 0, 5], [0, 4, 3, 4]])
    area = np.array([6, 0.5])
    np.testing.assert_allclose(_loss(name, boxes, boxes)[:2].numpy(), EPS / (area + EPS), rtol=1e-9)
    np.testing.assert_array_equal(_loss(name, boxes, boxes, eps=0.0).numpy(), [0, 0, 1, 1, 1])
    a, b = Tensor(boxes, requires_grad=True), Tensor(boxes.copy(), requires_grad=True)
    _loss(name, a, b, reduction="sum").backward()
    assert np.isfinite(a.grad.numpy()).all() and np.isfinite(b.grad.numpy()).all()


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(pair=matched_boxes())
def test_with_eps_zero_the_loss_is_one_minus_the_pairwise_diagonal(name, pair):
    """Without eps the losses and the pairwise functions are the same numbers (zero-area
    boxes included), in [0, 2] (GIoU), [0, 2) (DIoU), [0, 3) (CIoU); symmetric."""
    a, b = pair
    loss = _loss(name, a, b, eps=0.0).numpy()
    assert loss.shape == (len(a),) and np.isfinite(loss).all()
    _, pairwise, upper = LOSSES[name]
    np.testing.assert_allclose(
        loss, 1 - np.diag(pairwise(a, b)), rtol=0, atol=ROUNDINGS * np.finfo(np.float64).eps
    )
    np.testing.assert_allclose(
        _loss(name, b, a).numpy(), _loss(name, a, b).numpy(), rtol=0, atol=1e-15
    )
    assert ((loss >= 0) & (loss <= upper)).all()


# ----------------------------------------------------------------- gradients
def _random_pairs(rng, n=8):
    """Boxes with sides in [0.5, 4] a few units apart: overlapping and disjoint pairs, no
    coordinate ties, nothing within a finite-difference step of a kink."""
    corners = rng.uniform(0, 6, (2, n, 2))
    sides = rng.uniform(0.5, 4, (2, n, 2))
    a, b = np.concatenate([corners, corners + sides], axis=2)
    return a, b


def _aspect_terms(a, b, eps):
    """CIoU's v and alpha per pair, in NumPy from their definitions (for boxes with area)."""
    w1, h1, w2, h2 = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    inter = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None) * np.clip(
        np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None
    )
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    v = 4 / np.pi**2 * (np.arctan(w1 / h1) - np.arctan(w2 / h2)) ** 2
    return v, v / (1 - iou + v + eps)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("name", ["generalized_box_iou_loss", "distance_box_iou_loss"])
def test_gradcheck(name, reduction, rng):
    a, b = _random_pairs(rng)
    mv.gradcheck(
        lambda x, y: _loss(name, x, y, reduction=reduction),
        [Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)],
    )


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_complete_loss_gradcheck_with_alpha_held_constant(reduction, rng):
    """CIoU's alpha is a constant for backprop (the paper's choice, and torchvision's), so
    the gradient is that of DIoU_loss + alpha0 v with alpha0 frozen at the checked point.
    The checked function adds (alpha0 - alpha) v, a constant to backprop, so that its
    values are exactly that: central differences then see alpha0 throughout."""
    a, b = _random_pairs(rng)
    eps = 1e-7
    _, alpha0 = _aspect_terms(a, b, eps)

    def frozen_alpha_loss(x, y):
        v, alpha = _aspect_terms(x.data, y.data, eps)
        loss = complete_box_iou_loss(x, y, eps=eps) + Tensor((alpha0 - alpha) * v)
        return loss.sum() if reduction == "sum" else loss

    mv.gradcheck(frozen_alpha_loss, [Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)])


# ----------------------------------------------------------------- torchvision parity
def _gradient_term_bound(a, b):
    """Per pair, how large one term of a coordinate's gradient can be: 1 / the shortest
    positive length among the sides of both boxes, of their intersection and of their
    enclosing box (each term is a length over an area, or a length over a squared length);
    rounding errs by a few epsilons of that even where the terms cancel to a tiny gradient."""

    def span(axis, inner):
        """Extent of the intersection (inner) or the enclosing box along x (0) or y (1)."""
        low, high = (np.maximum, np.minimum) if inner else (np.minimum, np.maximum)
        return high(a[:, axis + 2], b[:, axis + 2]) - low(a[:, axis], b[:, axis])

    inter_w, inter_h = span(0, True), span(1, True)
    overlap = (inter_w > 0) & (inter_h > 0)
    lengths = np.stack(
        [
            a[:, 2] - a[:, 0],
            a[:, 3] - a[:, 1],
            b[:, 2] - b[:, 0],
            b[:, 3] - b[:, 1],
            np.where(overlap, inter_w, 0),
            np.where(overlap, inter_h, 0),
            span(0, False),
            span(1, False),
        ],
        axis=1,
    )
    shortest = np.where(lengths > 0, lengths.astype(np.float64), np.inf).min(axis=1, initial=np.inf)
    return np.where(
        np.isfinite(shortest), 1 / shortest, 1.0
    )  # two copies of a point: every term is 0


def _assert_gradients_close(ours, theirs, a, b, upstream_size, rows):
    """Gradients wrt both box sets agree on ``rows`` to a few epsilons of the largest term
    (seen: at most 1.6 epsilons of |upstream| / shortest length)."""
    atol = (ROUNDINGS * np.finfo(a.dtype).eps * upstream_size * _gradient_term_bound(a, b))[:, None]
    for mine, reference in zip(ours, theirs):
        assert mine.shape == reference.shape
        assert (np.abs(mine - reference) <= atol)[rows].all(), (mine, reference)


def _torchvision_loss(name, a, b, upstream, reduction="none", eps=EPS):
    torch = pytest.importorskip("torch")
    tv_ops = pytest.importorskip("torchvision.ops")
    ta = torch.from_numpy(a.copy()).requires_grad_(True)
    tb = torch.from_numpy(b.copy()).requires_grad_(True)
    loss = getattr(tv_ops, name)(ta, tb, reduction=reduction, eps=eps)
    loss.backward(torch.from_numpy(upstream))
    return loss.detach().numpy(), ta.grad.numpy(), tb.grad.numpy()


def _our_loss(name, a, b, upstream, reduction="none", eps=EPS):
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    loss = _loss(name, ta, tb, reduction=reduction, eps=eps)
    loss.backward(upstream)
    return loss.numpy(), ta.grad.numpy(), tb.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_matches_torchvision_values_and_both_gradients(name, dtype, data):
    """Pair by pair (reduction "none", random upstream gradient), identical and zero-size
    boxes included. torchvision's CIoU has atan(w / 0): its value is NaN for a point and its
    gradient NaN for any zero height; there these losses are finite and a point's loss is
    its DIoU loss (v = 0)."""
    a, b = data.draw(matched_boxes(dtype=dtype))
    upstream = (
        np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        .standard_normal(len(a))
        .astype(dtype)
    )
    theirs = _torchvision_loss(name, a, b, upstream)
    ours = _our_loss(name, a, b, upstream)
    assert ours[0].dtype == theirs[0].dtype == dtype
    assert all(np.isfinite(mine).all() for mine in ours)
    value_nan = np.isnan(theirs[0])
    grad_nan = np.isnan(theirs[1]).any(axis=1) | np.isnan(theirs[2]).any(axis=1)
    if name == "complete_box_iou_loss":
        points = lambda boxes: (boxes[:, 2] == boxes[:, 0]) & (boxes[:, 3] == boxes[:, 1])  # noqa: E731
        flat = (a[:, 3] == a[:, 1]) | (b[:, 3] == b[:, 1])
        np.testing.assert_array_equal(value_nan, points(a) | points(b))
        assert not (grad_nan & ~flat).any()
        np.testing.assert_array_equal(
            ours[0][value_nan], distance_box_iou_loss(a, b)[value_nan].numpy()
        )
    else:
        assert not value_nan.any() and not grad_nan.any()
    scale = ROUNDINGS * np.finfo(dtype).eps
    np.testing.assert_allclose(ours[0][~value_nan], theirs[0][~value_nan], rtol=0, atol=scale)
    _assert_gradients_close(ours[1:], theirs[1:], a, b, np.abs(upstream), rows=~grad_nan)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_keep_the_box_dtype(name):
    a = Tensor(np.array([[0, 0, 2, 1]], np.float32), requires_grad=True)
    b = Tensor(np.array([[1, 0, 2, 3]], np.float32), requires_grad=True)
    _loss(name, a, b, reduction="sum").backward()
    assert a.grad.dtype == b.grad.dtype == np.float32


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(pair=matched_boxes())
def test_reductions_match_torchvision(name, reduction, pair):
    """Boxes of positive height only, so torchvision's CIoU is defined everywhere."""
    a, b = pair
    keep = (a[:, 3] > a[:, 1]) & (b[:, 3] > b[:, 1])
    a, b = a[keep], b[keep]
    upstream = np.array(-1.7)
    theirs = _torchvision_loss(name, a, b, upstream, reduction)
    ours = _our_loss(name, a, b, upstream, reduction)
    assert ours[0].shape == ()
    scale = ROUNDINGS * np.finfo(np.float64).eps
    np.testing.assert_allclose(ours[0], theirs[0], rtol=0, atol=scale * max(1, len(a)))
    _assert_gradients_close(
        ours[1:], theirs[1:], a, b, np.full(len(a), abs(upstream)), rows=slice(None)
    )


# ----------------------------------------------------------------- reductions, kinds, shapes
@pytest.mark.parametrize("name", NAMES)
def test_reductions_and_shapes(name, rng):
    a, b = _random_pairs(rng, n=5)
    each = _loss(name, a, b).numpy()
    assert _loss(name, a, b, reduction="mean").item() == pytest.approx(each.mean(), rel=1e-15)
    assert _loss(name, a, b, reduction="sum").item() == pytest.approx(each.sum(), rel=1e-15)
    single = _loss(name, a[0], b[0])
    assert single.shape == () and single.item() == each[0]


@pytest.mark.parametrize("name", NAMES)
def test_empty_input(name):
    """No pairs: an empty loss, and 0 for "sum" and "mean" (torchvision's rule), still
    attached to the graph so backward gives empty gradients."""
    a = Tensor(np.zeros((0, 4)), requires_grad=True)
    assert _loss(name, a, np.zeros((0, 4))).shape == (0,)
    assert _loss(name, a, np.zeros((0, 4)), reduction="sum").item() == 0
    mean = _loss(name, a, np.zeros((0, 4)), reduction="mean")
    assert mean.item() == 0
    mean.backward()
    assert a.grad.shape == (0, 4)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_a_tensor_paired_with_an_array_in_its_own_dtype(name):
    pred = Tensor(np.array([[0, 0, 2, 1]], np.float32), requires_grad=True)
    target = np.array([[0.5, 0, 1.5, 2]])  # float64: the loss computes in float64
    loss = _loss(name, pred, target, reduction="sum")
    assert loss.dtype == np.float64
    loss.backward()
    assert pred.grad.dtype == np.float32 and np.abs(pred.grad.numpy()).sum() > 0
    assert _loss(name, [[0, 0, 1, 1]], [[0, 0, 1, 1]], eps=0.0).dtype == np.float64  # lists of ints


def test_on_each_device(device):
    a = mv.tensor([[0.0, 0.0, 1.0, 1.0]], device=device, requires_grad=True)
    b = mv.tensor([[1.0, 0.0, 2.0, 1.0]], device=device)
    for name in NAMES:
        loss = _loss(name, a, b, reduction="sum")
        assert loss.device == device
        loss.backward()
        assert a.grad.device == device
        a.grad = None
    np.testing.assert_allclose(distance_box_iou_loss(a, b).numpy(), [1 + 1 / (5 + EPS)], rtol=1e-6)


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", NAMES)
def test_bad_input(name):
    one = np.zeros((1, 4))
    with pytest.raises(
        ValueError, match=r"reduction must be one of \('none', 'mean', 'sum'\), got 'avg'"
    ):
        _loss(name, one, one, reduction="avg")
    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0, got -1"):
        _loss(name, one, one, eps=-1)
    with pytest.raises(
        ValueError,
        match=r"boxes1 and boxes2 must have the same shape \(boxes1\[i\] is paired with "
        r"boxes2\[i\]\), got \(2, 4\) and \(1, 4\)",
    ):
        _loss(name, np.zeros((2, 4)), one)
    with pytest.raises(
        ValueError, match=r"boxes2 must have shape \(N, 4\) or \(4,\).*got shape \(1, 5\)"
    ):
        _loss(name, one, np.zeros((1, 5)))
    with pytest.raises(
        ValueError, match=r"boxes1 must have shape \(N, 4\) or \(4,\).*got shape \(1, 2, 4\)"
    ):
        _loss(name, np.zeros((1, 2, 4)), np.zeros((1, 2, 4)))
    with pytest.raises(
        ValueError,
        match=r"boxes1 must satisfy x2 >= x1 and y2 >= y1.*"
        r"row 0: \[3\.0, 0\.0, 1\.0, 1\.0\]",
    ):
        _loss(name, Tensor(np.array([[3.0, 0, 1, 1]])), one)
    with pytest.raises(ValueError, match=r"boxes2 must be finite, got NaN or inf at row 0"):
        _loss(name, one, np.array([[0, 0, np.nan, 1]]))
