"""minivision.reference.loss: nll_loss and cross_entropy against PyTorch (values and gradients,
with class weights, ignore_index and every reduction), gradcheck, hand cases."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
from minivision import functional as F
from minivision.reference import activation
from minivision.reference import loss as reference
from tests.helpers import assert_close, torch_or_skip

REDUCTIONS = ["none", "mean", "sum"]


@st.composite
def classification_cases(draw):
    """(scores (N, C, d...), target (N, d...), weight (C,) or None, ignore_index, reduction, rng):
    a fifth of the targets ignored, at least one counted so that "mean" is defined."""
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    spatial = draw(st.lists(st.integers(1, 3), max_size=2))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    scores = 3 * rng.standard_normal((n, c, *spatial))
    target = rng.integers(0, c, size=(n, *spatial))
    ignore = draw(st.sampled_from([-100, 255] + ([0] if c > 1 else [])))  # 0: a class ignored
    target[rng.random(target.shape) < 0.2] = ignore
    if (target == ignore).all():
        target.flat[0] = c - 1
    weight = rng.random(c) + 0.1 if draw(st.booleans()) else None
    return scores, target, weight, ignore, draw(st.sampled_from(REDUCTIONS)), rng


def torch_loss(name, scores, target, weight, ignore, reduction, upstream):
    """PyTorch's loss ``name`` ("cross_entropy" or "nll_loss") and its gradient w.r.t. scores."""
    torch = torch_or_skip()
    x = torch.tensor(scores, requires_grad=True)
    loss = getattr(torch.nn.functional, name)(
        x,
        torch.tensor(target),
        None if weight is None else torch.tensor(weight),
        ignore_index=ignore,
        reduction=reduction,
    )
    loss.backward(torch.tensor(upstream).reshape(loss.shape))
    return loss, x.grad


def upstream_for(loss, rng):
    """A random upstream gradient shaped like ``loss`` (a scalar for "mean" and "sum")."""
    return rng.standard_normal(np.shape(loss))


@given(case=classification_cases())
def test_cross_entropy_matches_torch(case):
    scores, target, weight, ignore, reduction, rng = case
    loss = reference.cross_entropy(scores, target, weight, ignore, reduction)
    upstream = upstream_for(loss, rng)
    grad = reference.cross_entropy_backward(upstream, scores, target, weight, ignore, reduction)
    expected, expected_grad = torch_loss(
        "cross_entropy", scores, target, weight, ignore, reduction, upstream
    )
    assert_close(loss, expected, what="loss")
    assert_close(grad, expected_grad, what="gradient")


@given(case=classification_cases())
def test_nll_loss_matches_torch(case):
    scores, target, weight, ignore, reduction, rng = case
    logp = activation.log_softmax(scores, 1)
    loss = reference.nll_loss(logp, target, weight, ignore, reduction)
    upstream = upstream_for(loss, rng)
    grad = reference.nll_loss_backward(upstream, logp, target, weight, ignore, reduction)
    expected, expected_grad = torch_loss(
        "nll_loss", logp, target, weight, ignore, reduction, upstream
    )
    assert_close(loss, expected, what="loss")
    assert_close(grad, expected_grad, what="gradient")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_gradcheck_with_weights_and_ignore(reduction, rng):
    scores = mv.Tensor(rng.standard_normal((3, 4, 2, 2)), requires_grad=True)
    target = rng.integers(0, 4, size=(3, 2, 2))
    target[0, 0, 0] = target[2, 1, 0] = 255
    weight = mv.tensor(rng.random(4) + 0.5, dtype="float64")
    with mv.use_reference(True):
        mv.gradcheck(
            lambda x: F.cross_entropy(x, mv.tensor(target), weight, 255, reduction), [scores]
        )


def test_hand_case_uniform_scores_ignored_sample_and_weighted_mean():
    """Two classes with equal scores: each counted sample loses log 2 and its gradient is
    softmax - onehot = (1/2 - 1, 1/2) or (1/2, 1/2 - 1), times its share of the mean."""
    scores = np.zeros((3, 2))
    target = np.array([0, 1, -100])  # the third sample is ignored
    weight = np.array([1.0, 3.0])
    mean = reference.cross_entropy(scores, target, weight)
    np.testing.assert_allclose(mean, np.log(2), rtol=1e-15)  # (1 log 2 + 3 log 2) / (1 + 3)
    np.testing.assert_allclose(
        reference.cross_entropy(scores, target, weight, reduction="sum"), 4 * np.log(2), rtol=1e-15
    )
    np.testing.assert_allclose(
        reference.cross_entropy(scores, target, weight, reduction="none"),
        [np.log(2), 3 * np.log(2), 0.0],
        rtol=1e-15,
    )
    grad = reference.cross_entropy_backward(np.array(8.0), scores, target, weight)
    np.testing.assert_allclose(grad, [[-1.0, 1.0], [3.0, -3.0], [0.0, 0.0]], rtol=1e-15)


def test_nll_loss_backward_puts_minus_the_weight_at_the_target_only():
    logp = np.log(np.full((2, 3, 1), 1 / 3))
    target = np.array([[2], [0]])
    got = reference.nll_loss_backward(
        np.array([[1.0], [2.0]]), logp, target, np.array([0.5, 1.0, 4.0]), reduction="none"
    )
    np.testing.assert_array_equal(got[..., 0], [[0.0, 0.0, -4.0], [-1.0, 0.0, 0.0]])


def test_sample_weights_zero_ignored_targets_and_give_a_safe_index():
    w, index = reference.sample_weights(
        np.array([2, 255, 0]), np.array([1.0, 2.0, 3.0]), 255, np.float32
    )
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w, [3.0, 0.0, 1.0])
    np.testing.assert_array_equal(index, [2, 0, 0])


def test_huge_scores_stay_finite():
    scores = np.array([[1e4, -1e4]])
    assert reference.cross_entropy(scores, np.array([1])) == pytest.approx(2e4)
    grad = reference.cross_entropy_backward(np.array(1.0), scores, np.array([1]))
    np.testing.assert_array_equal(grad, [[1.0, -1.0]])
