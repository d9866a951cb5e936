"""Losses: gradcheck, PyTorch parity over shapes/reductions/weights/ignore_index, bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
from minivision import functional as F
from tests.helpers import assert_close, check_parity, torch_or_skip

REDUCTIONS = ["none", "mean", "sum"]


@st.composite
def classification_case(draw):
    n = draw(st.integers(1, 4))
    c = draw(st.integers(2, 5))
    spatial = draw(st.lists(st.integers(1, 3), max_size=2))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    logits = 3 * rng.standard_normal((n, c, *spatial))
    target = rng.integers(0, c, size=(n, *spatial))
    ignore = draw(st.sampled_from([-100, 255]))
    target[rng.random(target.shape) < 0.2] = ignore
    if (target == ignore).all():
        target.flat[0] = 0  # keep one counted sample so "mean" is defined
    weight = rng.random(c) + 0.1 if draw(st.booleans()) else None
    return logits, target, weight, ignore, draw(st.sampled_from(REDUCTIONS)), rng


@given(case=classification_case())
def test_cross_entropy_matches_torch(case):
    torch = torch_or_skip()
    logits, target, weight, ignore, reduction, rng = case
    th_weight = None if weight is None else torch.tensor(weight)
    check_parity(
        lambda x: F.cross_entropy(
            x, mv.tensor(target), None if weight is None else mv.tensor(weight), ignore, reduction
        ),
        lambda x: torch.nn.functional.cross_entropy(
            x, torch.tensor(target), th_weight, ignore_index=ignore, reduction=reduction
        ),
        [logits],
        rng,
    )


def test_cross_entropy_gradcheck_with_weights_and_ignore(rng):
    logits = mv.Tensor(rng.standard_normal((3, 4, 2, 2)), requires_grad=True)
    target = mv.tensor(rng.integers(0, 4, size=(3, 2, 2)))
    target.data[0, 0, 0] = 255
    weight = mv.tensor(rng.random(4) + 0.5, dtype="float64")
    mv.gradcheck(lambda x: F.cross_entropy(x, target, weight, ignore_index=255), [logits])


def test_cross_entropy_of_huge_logits_stays_finite():
    loss = F.cross_entropy(mv.tensor([[1e4, -1e4]]), mv.tensor([1]))
    assert loss.item() == pytest.approx(2e4)


def test_cross_entropy_bad_targets():
    x = mv.tensor(np.zeros((2, 3)))
    with pytest.raises(
        ValueError,
        match=r"target holds class index 3, expected values in \[0, 3\) or ignore_index=-100",
    ):
        F.cross_entropy(x, mv.tensor([0, 3]))
    with pytest.raises(
        ValueError, match=r"target shape \(3,\) does not match input \(2, 3\): expected \(2,\)"
    ):
        F.cross_entropy(x, mv.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="target must hold integer class indices, got float32"):
        F.cross_entropy(x, mv.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        F.cross_entropy(x, mv.tensor([0, 1]), weight=mv.tensor([1.0, 2.0]))
    with pytest.raises(
        ValueError, match=r"reduction must be one of \('none', 'mean', 'sum'\), got 'avg'"
    ):
        F.cross_entropy(x, mv.tensor([0, 1]), reduction="avg")
    with pytest.raises(ValueError, match=r"input must be \(N, C\)"):
        F.cross_entropy(mv.tensor([1.0, 2.0]), mv.tensor([0]))


PAIRWISE = {
    "mse": (
        lambda a, b, r: F.mse_loss(a, b, r),
        lambda a, b, r, nn: nn.mse_loss(a, b, reduction=r),
    ),
    "smooth_l1": (
        lambda a, b, r: F.smooth_l1_loss(a, b, r, beta=0.5),
        lambda a, b, r, nn: nn.smooth_l1_loss(a, b, reduction=r, beta=0.5),
    ),
    "smooth_l1_beta0": (
        lambda a, b, r: F.smooth_l1_loss(a, b, r, beta=0.0),
        lambda a, b, r, nn: nn.smooth_l1_loss(a, b, reduction=r, beta=0.0),
    ),
    "bce_logits": (
        lambda a, b, r: F.binary_cross_entropy_with_logits(a, b, reduction=r),
        lambda a, b, r, nn: nn.binary_cross_entropy_with_logits(a, b, reduction=r),
    ),
}


@pytest.mark.parametrize("name", sorted(PAIRWISE))
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    reduction=st.sampled_from(REDUCTIONS),
    seed=st.integers(0, 2**16),
)
def test_pairwise_losses_match_torch_in_both_arguments(name, shape, reduction, seed):
    torch = torch_or_skip()
    rng = np.random.default_rng(seed)
    a = 4 * rng.standard_normal(shape)
    b = rng.random(shape) if name == "bce_logits" else rng.standard_normal(shape)
    mv_fn, th_fn = PAIRWISE[name]
    check_parity(
        lambda x, y: mv_fn(x, y, reduction),
        lambda x, y: th_fn(x, y, reduction, torch.nn.functional),
        [a, b],
        rng,
    )


@pytest.mark.parametrize("name", sorted(PAIRWISE))
def test_pairwise_losses_gradcheck(name, rng):
    a = rng.standard_normal((3, 4))
    b = (
        rng.random((3, 4))
        if name == "bce_logits"
        else a + rng.choice([-1.0, 1.0], (3, 4)) * (0.1 + rng.random((3, 4)))
    )
    mv.gradcheck(
        lambda x, y: PAIRWISE[name][0](x, y, "mean"),
        [mv.Tensor(a, requires_grad=True), mv.Tensor(b, requires_grad=True)],
    )


def test_bce_with_logits_weight_and_pos_weight_match_torch(rng):
    torch = torch_or_skip()
    x, t = 30 * rng.standard_normal((4, 3)), rng.random((4, 3))
    w, pw = rng.random((4, 3)), rng.random(3) * 3
    check_parity(
        lambda a, b: F.binary_cross_entropy_with_logits(
            a, b, weight=mv.tensor(w, dtype="float64"), pos_weight=mv.tensor(pw, dtype="float64")
        ),
        lambda a, b: torch.nn.functional.binary_cross_entropy_with_logits(
            a, b, weight=torch.tensor(w), pos_weight=torch.tensor(pw)
        ),
        [x, t],
        rng,
    )


def test_bce_with_logits_is_stable_for_huge_logits():
    loss = F.binary_cross_entropy_with_logits(
        mv.tensor([1e4, -1e4]), mv.tensor([0.0, 1.0]), reduction="none"
    )
    assert_close(loss.numpy(), np.array([1e4, 1e4]), rtol=1e-6)


def test_pairwise_loss_shape_mismatch():
    with pytest.raises(
        ValueError, match=r"mse_loss: target shape \(3,\) must equal input shape \(2,\)"
    ):
        F.mse_loss(mv.tensor([1.0, 2.0]), mv.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="beta >= 0"):
        F.smooth_l1_loss(mv.tensor([1.0]), mv.tensor([1.0]), beta=-1.0)


def test_cross_entropy_needs_float_scores():
    with pytest.raises(TypeError, match="input must hold floating-point scores, got dtype int64"):
        F.cross_entropy(mv.tensor([[1, 2]]), mv.tensor([0]))
