"""Activations, softmax/log_softmax, dropout: gradcheck, PyTorch parity, stability, bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
from minivision import functional as F
from tests.helpers import DEVICES, check_parity, torch_or_skip

ACTIVATIONS = {
    "relu": (F.relu, "relu", {}),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), "leaky_relu", {"negative_slope": 0.2}),
    "sigmoid": (F.sigmoid, "sigmoid", {}),
    "tanh": (F.tanh, "tanh", {}),
    "softplus": (
        lambda x: F.softplus(x, beta=2.0, threshold=3.0),
        "softplus",
        {"beta": 2.0, "threshold": 3.0},
    ),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    scale=st.sampled_from([1.0, 30.0]),
    seed=st.integers(0, 2**16),
)
def test_activations_match_torch(name, shape, scale, seed, device):
    torch = torch_or_skip()
    mv_fn, th_name, kwargs = ACTIVATIONS[name]
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal(shape)
    check_parity(
        mv_fn, lambda t: getattr(torch.nn.functional, th_name)(t, **kwargs), [x], rng, device=device
    )


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_gradcheck(name, rng):
    x = rng.standard_normal((3, 4))
    x = x + 0.05 * np.sign(x)  # relu-like kinks at 0 have no derivative
    mv.gradcheck(ACTIVATIONS[name][0], [mv.Tensor(x, requires_grad=True)])


def test_relu_gradient_at_zero_is_zero_like_torch():
    torch = torch_or_skip()
    check_parity(F.relu, torch.relu, [np.array([-1.0, 0.0, 1.0])], np.random.default_rng(0))


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
@pytest.mark.parametrize("slope", [0.0, 0.01, 1.0, 1.5, -0.3])
def test_leaky_relu_matches_torch_for_every_kind_of_slope_and_special_values(slope, reference):
    """NumPy floats take one Numba pass each way unless the reference switch is on (CuPy's
    arrays and a student copy take the reference). On both, zeros, infinities and NaN come
    out as in PyTorch, and so do the gradients."""
    torch = torch_or_skip()
    x = np.array([-2.0, -0.0, 0.0, 0.5, 3.0, np.inf, -np.inf, np.nan])
    with mv.use_reference(reference):
        got = F.leaky_relu(mv.tensor(x), slope).numpy()
        expected = torch.nn.functional.leaky_relu(torch.tensor(x), slope).numpy()
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))
        finite = np.random.default_rng(1).standard_normal((4, 5))
        check_parity(
            lambda t: F.leaky_relu(t, slope),
            lambda t: torch.nn.functional.leaky_relu(t, slope),
            [finite],
            np.random.default_rng(2),
        )


def test_sigmoid_does_not_overflow_for_large_inputs():
    x = mv.tensor([-1000.0, 1000.0], requires_grad=True)
    with np.errstate(over="raise"):
        y = F.sigmoid(x)
    np.testing.assert_array_equal(y.numpy(), [0.0, 1.0])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data())
def test_softmax_family_matches_torch(fn, shape, data, device):
    torch = torch_or_skip()
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(len(shape) + dim)
    x = 10 * rng.standard_normal(shape)
    check_parity(
        lambda t: getattr(F, fn)(t, dim),
        lambda t: getattr(torch, fn)(t, dim),
        [x],
        rng,
        device=device,
    )


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_family_gradcheck(fn, rng):
    mv.gradcheck(
        lambda t: getattr(F, fn)(t, 1), [mv.Tensor(rng.standard_normal((2, 5)), requires_grad=True)]
    )


def test_log_softmax_is_stable_for_huge_scores():
    y = F.log_softmax(mv.tensor([[1000.0, 0.0, -1000.0]]), dim=1).numpy()
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y[0, :2], [0.0, -1000.0], atol=1e-3)


def test_softmax_needs_dim():
    with pytest.raises(ValueError, match=r"softmax needs dim, an int in \[-2, 2\), got None"):
        F.softmax(mv.tensor(np.ones((2, 3))), None)


def test_dropout_keeps_expectation_and_masks_gradient():
    mv.manual_seed(0)
    x = mv.ones(20000, requires_grad=True)
    y = F.dropout(x, p=0.25, training=True)
    kept = y.numpy() != 0
    assert abs(kept.mean() - 0.75) < 0.02  # binomial std is 0.003
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.where(kept, 1 / 0.75, 0.0), rtol=1e-6)


def test_dropout_in_eval_is_identity_and_bad_p_is_rejected():
    x = mv.ones(5)
    assert F.dropout(x, 0.5, training=False) is x
    with pytest.raises(ValueError, match=r"dropout probability p must be in \[0, 1\], got 1.5"):
        F.dropout(x, 1.5)
