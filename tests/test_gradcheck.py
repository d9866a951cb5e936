"""gradcheck catches wrong backwards, names the element, and passes correct ones."""

import numpy as np
import pytest

import minivision as mv
from minivision.tensor import Function


class _CubeWithOneWrongElement(Function):
    """x^3 whose backward is wrong at flat index 4 only (a planted bug)."""

    def forward(self, x):
        self.x = x
        return x**3

    def backward(self, grad):
        g = 3 * self.x**2 * grad
        g.reshape(-1)[4] *= 1.5
        return g


class _SumInsteadOfUpstream(Function):
    """Ignores the upstream gradient, a bug an all-ones upstream gradient would hide."""

    def forward(self, x):
        return 2 * x

    def backward(self, grad):
        return 2 * np.ones_like(grad)


def test_gradcheck_reports_the_planted_wrong_element(rng):
    x = mv.Tensor(rng.standard_normal((2, 3)) + 2.0, requires_grad=True)
    with pytest.raises(
        mv.GradcheckError, match=r"input 0 \(shape \(2, 3\)\) at element \(1, 1\).*1 of 6 elements"
    ):
        mv.gradcheck(_CubeWithOneWrongElement.apply, [x])


def test_gradcheck_catches_a_backward_that_ignores_upstream(rng):
    x = mv.Tensor(rng.standard_normal(4), requires_grad=True)
    with pytest.raises(mv.GradcheckError, match="analytic"):
        mv.gradcheck(_SumInsteadOfUpstream.apply, [x])


def test_fast_gradcheck_catches_the_planted_bug_in_one_direction(rng):
    x = mv.Tensor(rng.standard_normal((2, 3)) + 2.0, requires_grad=True)
    with pytest.raises(mv.GradcheckError, match="along a random direction"):
        mv.gradcheck(_CubeWithOneWrongElement.apply, [x], fast=True)


def test_gradcheck_passes_and_reports_per_input(rng):
    a = mv.Tensor(rng.standard_normal((3, 2)), requires_grad=True)
    b = mv.Tensor(rng.standard_normal((2, 4)), requires_grad=True)
    report = mv.gradcheck(lambda x, y: (x @ y).tanh(), [a, b])
    assert set(report.max_rel_error) == {0, 1}
    assert max(report.max_rel_error.values()) < 1e-6
    assert "gradcheck passed" in str(report)
    fast = mv.gradcheck(lambda x, y: (x @ y).tanh(), [a, b], fast=True)
    assert fast.fast


def test_gradcheck_works_on_float32_inputs_by_checking_float64_copies(rng):
    x = mv.tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)
    mv.gradcheck(lambda t: (t * t).sum(), [x])
    assert x.grad is None  # the caller's tensor is untouched


def test_gradcheck_handles_tuple_outputs_and_non_tensor_inputs(rng):
    x = mv.Tensor(rng.standard_normal(3), requires_grad=True)
    mv.gradcheck(lambda t, k: (t * k, t.exp()), [x, 3.0])


def test_gradcheck_needs_a_float_tensor():
    with pytest.raises(ValueError, match="no floating-point Tensor"):
        mv.gradcheck(lambda k: k, [3.0])


def test_rel_error_is_the_notebook_formula():
    # |1 - 1.1| / (1 + 1.1) = 0.0476..., and 0 for the equal pair
    assert mv.rel_error(np.array([1.0, 2.0]), np.array([1.1, 2.0])) == pytest.approx(0.1 / 2.1)
    assert mv.rel_error(np.zeros(2), np.zeros(2)) == 0.0
