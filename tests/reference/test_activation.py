"""minivision.reference.activation: PyTorch parity of values and gradients, gradcheck, hand
cases, and the Numba (leaky) ReLU equal to the reference bit for bit."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minivision as mv
from minivision import functional as F
from minivision.reference import activation as reference
from tests.helpers import assert_close, torch_or_skip

SLOPES = [0.0, 0.01, 0.2, 1.0, 1.5, -0.3]

# name: (forward(x, p), backward(grad, x, y, p), torch forward(torch, t, p), a strategy for p,
# given x's number of dimensions), p being the slope for relu and the dim for the softmaxes
OPS = {
    "relu": (
        reference.relu,
        lambda grad, x, y, slope: reference.relu_backward(grad, x, slope),
        lambda torch, t, slope: torch.nn.functional.leaky_relu(t, slope) if slope else t.relu(),
        lambda ndim: st.sampled_from(SLOPES),
    ),
    "sigmoid": (
        lambda x, _: reference.sigmoid(x),
        lambda grad, x, y, _: reference.sigmoid_backward(grad, y),
        lambda torch, t, _: torch.sigmoid(t),
        lambda ndim: st.none(),
    ),
    "softmax": (
        reference.softmax,
        lambda grad, x, y, dim: reference.softmax_backward(grad, y, dim),
        lambda torch, t, dim: torch.softmax(t, dim),
        lambda ndim: st.integers(-ndim, ndim - 1),
    ),
    "log_softmax": (
        reference.log_softmax,
        lambda grad, x, y, dim: reference.log_softmax_backward(grad, y, dim),
        lambda torch, t, dim: torch.log_softmax(t, dim),
        lambda ndim: st.integers(-ndim, ndim - 1),
    ),
}

# the functional op, run with the reference switch on, for gradcheck
FUNCTIONAL = {
    "relu": F.relu,
    "sigmoid": F.sigmoid,
    "softmax": lambda t: F.softmax(t, 1),
    "log_softmax": lambda t: F.log_softmax(t, -1),
}


def float_arrays(dtype=np.float64, limit=40.0):
    """Arrays of 1 to 3 dimensions, sides 1 to 5, values in [-limit, limit] (zeros often)."""
    return hnp.arrays(
        dtype,
        hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
        elements=st.floats(-limit, limit, width=np.dtype(dtype).itemsize * 8),
    )


@pytest.mark.parametrize("name", sorted(OPS))
@given(x=float_arrays(), seed=st.integers(0, 2**16), data=st.data())
def test_matches_torch(name, x, seed, data):
    """Forward and the gradient for a random upstream gradient, against PyTorch in float64."""
    torch = torch_or_skip()
    forward, backward, torch_forward, parameter = OPS[name]
    p = data.draw(parameter(x.ndim), label="parameter")
    grad = np.random.default_rng(seed).standard_normal(x.shape)
    y = forward(x, p)
    t = torch.tensor(x, requires_grad=True)
    expected = torch_forward(torch, t, p)
    expected.backward(torch.tensor(grad))
    assert_close(y, expected, what="forward")
    assert_close(backward(grad, x, y, p), t.grad, what="gradient")


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradcheck(name, rng):
    x = rng.standard_normal((3, 4, 2))
    x = x + 0.05 * np.sign(x)  # away from the ReLU's kink at 0
    with mv.use_reference(True):
        mv.gradcheck(FUNCTIONAL[name], [mv.Tensor(x, requires_grad=True)])


def test_relu_hand_case():
    x = np.array([-2.0, 0.0, 3.0])
    grad = np.array([5.0, 7.0, 11.0])
    np.testing.assert_array_equal(reference.relu(x), [0.0, 0.0, 3.0])
    np.testing.assert_array_equal(reference.relu(x, 0.1), [-0.2, 0.0, 3.0])
    np.testing.assert_array_equal(reference.relu_backward(grad, x), [0.0, 0.0, 11.0])  # 0 at 0
    np.testing.assert_array_equal(reference.relu_backward(grad, x, 0.5), [2.5, 3.5, 11.0])


def test_sigmoid_hand_case():
    x = np.array([-1000.0, 0.0, np.log(3.0), 1000.0])
    with np.errstate(over="raise"):
        y = reference.sigmoid(x)
    np.testing.assert_allclose(y, [0.0, 0.5, 0.75, 1.0], rtol=1e-15)
    grad = np.array([2.0, 4.0, 16.0, 3.0])
    got = reference.sigmoid_backward(grad, y)  # grad y (1 - y)
    np.testing.assert_allclose(got, [0.0, 1.0, 3.0, 0.0], rtol=1e-15)


def test_softmax_hand_case():
    x = np.array([[0.0, np.log(3.0)], [1000.0, 1000.0]])
    y = reference.softmax(x, 1)
    np.testing.assert_allclose(y, [[0.25, 0.75], [0.5, 0.5]], rtol=1e-15)
    # y_j (g_j - sum_i g_i y_i): row 1, g = (1, 0): sum = 1/4
    got = reference.softmax_backward(np.array([[1.0, 0.0], [3.0, 3.0]]), y, 1)
    np.testing.assert_allclose(got, [[3 / 16, -3 / 16], [0.0, 0.0]], rtol=1e-15, atol=1e-300)


def test_log_softmax_hand_case():
    x = np.array([[0.0, np.log(3.0)], [1000.0, -1000.0]])
    y = reference.log_softmax(x, -1)
    np.testing.assert_allclose(y, [[np.log(0.25), np.log(0.75)], [0.0, -2000.0]], rtol=1e-15)
    # g_j - exp(y_j) sum_i g_i
    got = reference.log_softmax_backward(np.array([[1.0, 0.0], [2.0, 1.0]]), y, -1)
    np.testing.assert_allclose(got, [[0.75, -0.75], [-1.0, 1.0]], rtol=1e-15)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(x=float_arrays(), seed=st.integers(0, 2**16), data=st.data())
def test_gradient_sums_to_zero_along_dim(name, x, seed, data):
    """Adding a constant along ``dim`` changes neither output, so no gradient points that way."""
    forward, backward, _, parameter = OPS[name]
    dim = data.draw(parameter(x.ndim), label="dim")
    grad = np.random.default_rng(seed).standard_normal(x.shape)
    dx = backward(grad, x, forward(x, dim), dim)
    scale = np.abs(grad).sum(axis=dim) + 1
    np.testing.assert_array_less(np.abs(dx.sum(axis=dim)), 1e-12 * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data(), slope=st.sampled_from(SLOPES), seed=st.integers(0, 2**16))
def test_fast_relu_equals_reference_bit_for_bit(dtype, data, slope, seed):
    """The Numba pass (switch off) and the reference (switch on) give the same bits, forward
    and backward, for zeros of both signs (gradient 0 at 0 for ReLU), infinities and NaN."""
    specials = st.sampled_from([0.0, -0.0, np.inf, -np.inf, np.nan])
    x = data.draw(
        hnp.arrays(
            dtype,
            hnp.array_shapes(max_dims=4, max_side=6),
            elements=st.floats(-(2.0**100), 2.0**100, width=32) | specials,
        )
    )
    grad = np.random.default_rng(seed).standard_normal(x.shape).astype(dtype)
    results = []
    for switch in (False, True):
        with mv.use_reference(switch):
            t = mv.Tensor(x.copy(), requires_grad=True)
            y = F.leaky_relu(t, slope)
            y.backward(mv.Tensor(grad))
            results.append((y.numpy(), t.grad.numpy()))
    for fast, ref in zip(*results):
        assert fast.dtype == ref.dtype == dtype
        np.testing.assert_array_equal(fast, ref)
        np.testing.assert_array_equal(np.signbit(fast), np.signbit(ref))


def test_float16_takes_the_reference():
    x = np.array([-1.5, 0.0, 2.0], dtype=np.float16)
    t = mv.Tensor(x, requires_grad=True)
    y = F.leaky_relu(t, 0.25)
    y.backward(mv.Tensor(np.ones(3, np.float16)))
    assert y.dtype == t.grad.dtype == np.float16
    np.testing.assert_array_equal(y.numpy(), reference.relu(x, 0.25))
    np.testing.assert_array_equal(t.grad.numpy(), [0.25, 0.25, 1.0])


@pytest.mark.parametrize("path", ["reference", "fast"])
def test_relu_matches_torch_relu_at_infinities_zeros_and_nan(path):
    torch = torch_or_skip()
    x = np.array([-np.inf, -2.0, -0.0, 0.0, 0.5, np.inf, np.nan], dtype=np.float32)
    with mv.use_reference(path == "reference"):
        got = F.relu(mv.tensor(x)).numpy()
    expected = torch.relu(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(got, expected)  # -inf gives 0 (not 0 * -inf = NaN)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))
