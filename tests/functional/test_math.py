"""Arithmetic, elementwise functions and matmul: gradcheck, PyTorch parity, bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import minivision as mv
from tests.helpers import check_parity, torch_or_skip

torch = None


def setup_module():
    global torch
    torch = torch_or_skip()


BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
    "maximum": (mv.maximum, lambda a, b: torch.maximum(a, b)),
    "minimum": (mv.minimum, lambda a, b: torch.minimum(a, b)),
    "pow": (lambda a, b: a**b, lambda a, b: a**b),
}


def _operands(name, shapes, seed):
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(s) for s in shapes)
    if name == "div":
        b = np.sign(b) * (np.abs(b) + 0.5)  # keep away from division by ~0
    if name == "pow":
        a = np.abs(a) + 0.5  # real powers need a positive base
    return a, b


@pytest.mark.parametrize("name", sorted(BINARY))
@given(
    shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4),
    seed=st.integers(0, 2**16),
)
def test_binary_ops_match_torch_with_broadcasting(name, shapes, seed):
    a, b = _operands(name, shapes.input_shapes, seed)
    mv_fn, th_fn = BINARY[name]
    check_parity(mv_fn, th_fn, [a, b], np.random.default_rng(seed))


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_ops_gradcheck_with_broadcasting(name):
    a, b = _operands(name, [(3, 1, 4), (2, 4)], 0)
    mv.gradcheck(
        BINARY[name][0], [mv.Tensor(a, requires_grad=True), mv.Tensor(b, requires_grad=True)]
    )


def test_maximum_splits_gradient_on_ties_like_torch():
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([1.0, 5.0, 3.0])
    check_parity(mv.maximum, torch.maximum, [a, b], np.random.default_rng(0))
    check_parity(mv.minimum, torch.minimum, [a, b], np.random.default_rng(1))


def test_pow_with_zero_base_has_finite_exponent_gradient():
    check_parity(
        lambda a, b: a**b,
        lambda a, b: a**b,
        [np.array([0.0, 2.0]), np.array([2.0, 3.0])],
        np.random.default_rng(0),
    )


UNARY = {
    "neg": (lambda x: -x, lambda x: -x, lambda x: x),
    "exp": (mv.exp, torch_exp := (lambda x: x.exp()), lambda x: x),
    "log": (mv.log, lambda x: x.log(), lambda x: np.abs(x) + 0.1),
    "sqrt": (mv.sqrt, lambda x: x.sqrt(), lambda x: np.abs(x) + 0.1),
    "abs": (mv.abs, lambda x: x.abs(), lambda x: x),
    "clip": (lambda x: mv.clip(x, -0.5, 0.7), lambda x: x.clamp(-0.5, 0.7), lambda x: x),
    "clip_min_only": (lambda x: x.clamp(min=0.2), lambda x: x.clamp(min=0.2), lambda x: x),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3), seed=st.integers(0, 2**16))
def test_unary_ops_match_torch(name, shape, seed):
    mv_fn, th_fn, domain = UNARY[name]
    x = domain(np.random.default_rng(seed).standard_normal(shape))
    check_parity(mv_fn, th_fn, [x], np.random.default_rng(seed + 1))


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ops_gradcheck(name):
    mv_fn, _, domain = UNARY[name]
    x = domain(np.random.default_rng(3).standard_normal((3, 4)))
    if name.startswith(("abs", "clip")):
        x = x + 0.05 * np.sign(x)  # stay clear of the kinks where the derivative jumps
    mv.gradcheck(mv_fn, [mv.Tensor(x, requires_grad=True)])


def test_clip_passes_gradient_at_the_bounds_like_torch():
    x = np.array([-0.5, 0.0, 0.7, 1.0])
    check_parity(
        lambda t: t.clip(-0.5, 0.7), lambda t: t.clamp(-0.5, 0.7), [x], np.random.default_rng(0)
    )


def test_clip_needs_a_bound():
    with pytest.raises(ValueError, match="at least one of min or max"):
        mv.clip(mv.tensor([1.0]))


@given(
    shapes=mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=4),
    seed=st.integers(0, 2**16),
)
def test_where_matches_torch(shapes, seed):
    rng = np.random.default_rng(seed)
    cond = rng.random(shapes.input_shapes[0]) > 0.5
    a, b = (rng.standard_normal(s) for s in shapes.input_shapes[1:])
    check_parity(
        lambda x, y: mv.where(mv.Tensor(cond), x, y),
        lambda x, y: torch.where(torch.tensor(cond), x, y),
        [a, b],
        rng,
    )


def test_where_needs_boolean_condition():
    with pytest.raises(TypeError, match="condition must be a boolean tensor, got float32"):
        mv.where(mv.tensor([1.0]), mv.tensor([1.0]), mv.tensor([2.0]))


MATMUL_SHAPES = [
    ((3,), (3,)),
    ((3,), (3, 2)),
    ((2, 3), (3,)),
    ((2, 3), (3, 4)),
    ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)),
    ((2, 1, 2, 3), (4, 3, 2)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES)
def test_matmul_matches_torch_for_vectors_and_batches(shapes, rng):
    a, b = (rng.standard_normal(s) for s in shapes)
    check_parity(lambda x, y: x @ y, lambda x, y: x @ y, [a, b], rng)


@given(
    batch=st.lists(st.integers(1, 3), max_size=2),
    n=st.integers(1, 4),
    k=st.integers(1, 4),
    m=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_matmul_parity_drawn_shapes(batch, n, k, m, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((*batch, n, k))
    b = rng.standard_normal((k, m))
    check_parity(mv.matmul, torch.matmul, [a, b], rng)


def test_matmul_gradcheck_batched():
    rng = np.random.default_rng(0)
    a = mv.Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    b = mv.Tensor(rng.standard_normal((4, 2)), requires_grad=True)
    mv.gradcheck(mv.matmul, [a, b])


def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(
        ValueError, match=r"matmul shape mismatch: input \(2, 3\) and other \(4, 5\)"
    ):
        mv.tensor(np.ones((2, 3))) @ mv.tensor(np.ones((4, 5)))


def test_matmul_dtype_mismatch_is_rejected():
    with pytest.raises(
        TypeError, match="matmul needs one dtype, got input float32 and other float64"
    ):
        mv.tensor(np.ones((2, 2), np.float32)) @ mv.tensor(np.ones((2, 2), np.float64))


def test_matmul_rejects_scalars():
    with pytest.raises(ValueError, match="at least 1 dimension"):
        mv.matmul(mv.tensor(2.0), mv.tensor([1.0]))


def test_reversed_operators_with_python_numbers():
    x = mv.tensor([1.0, 2.0, 4.0], dtype="float64", requires_grad=True)
    y = 3.0 - x + 2.0 * x + 8.0 / x + 2.0**x
    y.sum().backward()
    expected = (
        -1.0
        + 2.0
        - 8.0 / np.array([1.0, 4.0, 16.0])
        + np.log(2.0) * 2.0 ** np.array([1.0, 2.0, 4.0])
    )
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


def test_shapes_that_do_not_broadcast_are_named():
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\) do not broadcast"):
        mv.zeros(2, 3) + mv.zeros(4)
    with pytest.raises(ValueError, match=r"maximum: shapes \(2,\) and \(3,\) do not broadcast"):
        mv.maximum(mv.zeros(2), mv.zeros(3))
