"""Helpers for parity tests against PyTorch (skipped cleanly where torch is missing)."""
import numpy as np
import pytest

import minivision as mv


def torch_or_skip():
    """The torch module, or skip the calling test when it is not installed."""
    return pytest.importorskip("torch")


def to_torch(array, requires_grad=False):
    """A float64/int64 torch tensor with the same values as a NumPy array."""
    torch = torch_or_skip()
    return torch.tensor(np.asarray(array), requires_grad=requires_grad)


def mv_leaf(array):
    """A minivision leaf Tensor that requires grad, from a NumPy array."""
    return mv.Tensor(np.array(array), requires_grad=True)


def assert_close(actual, expected, rtol=1e-7, atol=1e-9, what="value"):
    """Compare a minivision/NumPy value with a torch/NumPy one, naming what is compared."""
    if hasattr(actual, "numpy") and not isinstance(actual, np.ndarray):
        actual = actual.detach().numpy() if hasattr(actual, "detach") else actual.numpy()
    if hasattr(expected, "detach"):
        expected = expected.detach().numpy()
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol, err_msg=what)


def check_parity(mv_fn, torch_fn, arrays, rng, rtol=1e-7, atol=1e-9):
    """Run both functions on float64 copies of ``arrays``, push the same random upstream
    gradient through both, and compare the outputs and every input's gradient."""
    torch = torch_or_skip()
    mv_inputs = [mv_leaf(a) for a in arrays]
    th_inputs = [to_torch(a, requires_grad=True) for a in arrays]
    out = mv_fn(*mv_inputs)
    expected = torch_fn(*th_inputs)
    assert_close(out, expected, rtol, atol, what="forward")
    upstream = rng.standard_normal(expected.shape)
    out.backward(upstream)
    expected.backward(torch.tensor(upstream))
    for i, (m, t) in enumerate(zip(mv_inputs, th_inputs)):
        expected_grad = t.grad if t.grad is not None else torch.zeros_like(t)
        actual_grad = m.grad if m.grad is not None else np.zeros(m.shape)
        assert_close(actual_grad, expected_grad, rtol, atol, what=f"gradient of input {i}")
