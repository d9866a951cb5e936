"""minivision.reference.norm: batch normalisation in training and evaluation.

PyTorch parity of the reference (output, running statistics, the three gradients) over
hypothesis-drawn shapes; float64 gradchecks of ``batch_norm`` on both paths; cases by hand
and the invariances of training mode; the fast path (Numba kernels) equal to the reference
to rounding (its sums run in another order).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
from minivision import functional as F
from minivision.reference import norm as reference
from tests.helpers import assert_close, torch_or_skip

PATHS = ["reference", "fast"]


@st.composite
def norm_cases(draw):
    """(shape (N, C) or (N, C, H[, W]), training, affine, seed)."""
    spatial = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    shape = (draw(st.integers(2, 4)), draw(st.integers(1, 3))) + spatial
    return shape, draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 2**16))


def _reference_step(x, running, weight, bias, training, grad, momentum=0.3, eps=1e-5):
    """The reference's forward (updating ``running`` in place while training) and backward."""
    mean, var = reference.batch_statistics(x) if training else running
    y = reference.batch_norm(x, mean, var, weight, bias, eps)
    if training:
        reference.update_running_statistics(*running, mean, var, x.size // x.shape[1], momentum)
    return y, reference.batch_norm_backward(grad, x, mean, var, weight, eps, batch_stats=training)


@given(case=norm_cases())
def test_matches_torch_with_running_statistics(case):
    torch = torch_or_skip()
    shape, training, affine, seed = case
    rng = np.random.default_rng(seed)
    x, grad = 2 + 3 * rng.standard_normal(shape), rng.standard_normal(shape)
    c = shape[1]
    running = [rng.standard_normal(c), rng.random(c) + 0.5]
    weight, bias = (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)
    th = [torch.tensor(a, requires_grad=True) if a is not None else None for a in (x, weight, bias)]
    th_running = [torch.tensor(r) for r in running]
    expected = torch.nn.functional.batch_norm(
        th[0], *th_running, th[1], th[2], training=training, momentum=0.3
    )
    expected.backward(torch.tensor(grad))
    y, grads = _reference_step(x, running, weight, bias, training, grad)
    assert_close(y, expected, what="forward")
    for got, want, what in zip(running, th_running, ("running_mean", "running_var")):
        assert_close(got, want, what=what)
    for got, t, what in zip(grads, th, ("x", "weight", "bias")):
        if t is not None:
            assert_close(got, t.grad, what=f"gradient of {what}")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_gradcheck(affine, training, path, rng):
    x = mv.Tensor(rng.standard_normal((3, 2, 2, 2)), requires_grad=True)
    params = [mv.Tensor(rng.standard_normal(2), requires_grad=True) for _ in range(2 * affine)]
    mean, var = np.zeros(2), np.ones(2) * 1.5
    with mv.use_reference(path == "reference"):
        mv.gradcheck(
            lambda t, *wb: F.batch_norm(t, mean, var, *wb, training=training), [x] + params
        )


def test_by_hand():
    """One channel of 1, 2, 3: mean 2, biased variance 2/3, so x_hat = (x - 2) * sqrt(3/2);
    the running statistics (0, 1) move halfway to the mean 2 and the unbiased variance 1."""
    x = np.array([1.0, 2.0, 3.0]).reshape(3, 1)
    mean, var = reference.batch_statistics(x)
    np.testing.assert_allclose([mean[0], var[0]], [2.0, 2.0 / 3.0])
    y = reference.batch_norm(x, mean, var, np.array([2.0]), np.array([1.0]), eps=0.0)
    np.testing.assert_allclose(y[:, 0], 2 * np.array([-1.0, 0.0, 1.0]) * np.sqrt(1.5) + 1)
    running = [np.zeros(1), np.ones(1)]
    reference.update_running_statistics(*running, mean, var, 3, momentum=0.5)
    np.testing.assert_allclose(running, [[1.0], [1.0]])
    grad = np.array([[1.0], [2.0], [4.0]])
    fixed = reference.batch_norm_backward(grad, x, mean, var, np.array([2.0]), eps=0.0)
    # grad * weight / std; sum of grad * x_hat; sum of grad
    np.testing.assert_allclose(fixed[0][:, 0], np.array([2.0, 4.0, 8.0]) * np.sqrt(1.5))
    np.testing.assert_allclose([fixed[1][0], fixed[2][0]], [3.0 * np.sqrt(1.5), 7.0])


@given(shape=st.sampled_from([(4, 2), (3, 2, 3), (2, 3, 2, 2)]), seed=st.integers(0, 2**16))
def test_training_gradient_is_blind_to_shifts_and_scales_of_a_channel(shape, seed):
    """In training the output does not change when a channel is shifted or scaled (eps = 0), so
    the input gradient is orthogonal to both directions: per channel it sums to 0, and so
    does its product with x."""
    rng = np.random.default_rng(seed)
    x, grad = rng.standard_normal(shape), rng.standard_normal(shape)
    mean, var = reference.batch_statistics(x)
    weight = rng.standard_normal(shape[1])
    grad_x, _, _ = reference.batch_norm_backward(grad, x, mean, var, weight, 0.0, batch_stats=True)
    axes = (0,) + tuple(range(2, len(shape)))
    np.testing.assert_allclose(grad_x.sum(axis=axes), 0, atol=1e-12)
    np.testing.assert_allclose((grad_x * x).sum(axis=axes), 0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_the_reference_keeps_the_dtype(dtype, rng):
    """float16 (which only the reference takes) and float32 against float64, to the dtype's
    precision."""
    x, grad = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal((4, 3, 2, 2))
    weight, bias = rng.standard_normal(3), rng.standard_normal(3)
    low = [a.astype(dtype) for a in (x, weight, bias, grad)]
    mean, var = reference.batch_statistics(low[0])
    y = reference.batch_norm(low[0], mean, var, low[1], low[2])
    grads = reference.batch_norm_backward(low[3], low[0], mean, var, low[1], batch_stats=True)
    assert mean.dtype == var.dtype == y.dtype == grads[0].dtype == dtype
    mean64, var64 = reference.batch_statistics(x)
    tolerance = float(np.finfo(dtype).eps) * 64
    expected_y = reference.batch_norm(x, mean64, var64, weight, bias)
    assert_close(y, expected_y, rtol=tolerance, atol=tolerance)
    expected_grad, _, _ = reference.batch_norm_backward(
        grad, x, mean64, var64, weight, batch_stats=True
    )
    assert_close(grads[0], expected_grad, rtol=tolerance, atol=tolerance * 10)


# ----------------------------------------------------------------- fast path equals the reference
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(case=norm_cases())
def test_fast_path_equals_the_reference(case, dtype):
    """Output, running statistics and the three gradients through F.batch_norm with the
    reference switch off (Numba kernels) and on."""
    shape, training, affine, seed = case
    rng = np.random.default_rng(seed)
    x = (2 + 3 * rng.standard_normal(shape)).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    c = shape[1]
    start = [rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)]
    params = [rng.standard_normal(c).astype(dtype) for _ in range(2)] if affine else []
    results = []
    for reference_on in (False, True):
        running = [s.copy() for s in start]
        inputs = [mv.tensor(a, requires_grad=True) for a in [x] + params]
        with mv.use_reference(reference_on):
            y = F.batch_norm(inputs[0], *running, *inputs[1:], training=training, momentum=0.3)
            y.backward(mv.tensor(grad))
        results.append([y.numpy(), *running, *(t.grad.numpy() for t in inputs)])
    tolerance = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    for i, (got, expected) in enumerate(zip(*results)):
        assert got.dtype == expected.dtype == dtype, i
        np.testing.assert_allclose(got, expected, err_msg=f"result {i}", **tolerance)
