"""sum/mean/max/min over axes with keepdim: gradcheck, PyTorch parity, bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
from tests.helpers import check_parity, torch_or_skip


@st.composite
def shape_and_dims(draw):
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    dims = draw(
        st.none()
        | st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True)
    )
    negative = draw(st.booleans())
    if dims is not None and negative:
        dims = [d - len(shape) for d in dims]
    return shape, dims, draw(st.booleans())


REDUCTIONS = ["sum", "mean", "max", "min"]


@pytest.mark.parametrize("name", REDUCTIONS)
@given(case=shape_and_dims(), seed=st.integers(0, 2**16))
def test_reductions_match_torch(name, case, seed):
    torch = torch_or_skip()
    shape, dims, keepdim = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    th_name = {"max": "amax", "min": "amin"}.get(name, name)

    def th_fn(t):
        fn = getattr(torch, th_name)
        return (
            fn(t)
            if dims is None and not keepdim
            else fn(t, dim=tuple(dims) if dims else tuple(range(t.ndim)), keepdim=keepdim)
        )

    check_parity(
        lambda t: getattr(mv, name)(t, dim=None if dims is None else tuple(dims), keepdim=keepdim),
        th_fn,
        [x],
        rng,
    )


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_share_gradient_among_ties_like_torch_amax(name):
    torch = torch_or_skip()
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    th = {"max": torch.amax, "min": torch.amin}[name]
    check_parity(
        lambda t: getattr(mv, name)(t, dim=1), lambda t: th(t, dim=1), [x], np.random.default_rng(0)
    )
    check_parity(lambda t: getattr(mv, name)(t), lambda t: th(t), [x], np.random.default_rng(1))


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_gradcheck(name):
    x = mv.Tensor(np.random.default_rng(0).standard_normal((3, 4, 2)), requires_grad=True)
    mv.gradcheck(lambda t: getattr(mv, name)(t, dim=(0, 2), keepdim=True), [x])
    mv.gradcheck(lambda t: getattr(t, name)(1), [x])


def test_numpy_style_aliases():
    x = mv.tensor(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(mv.sum(x, axis=1, keepdims=True).numpy(), [[3.0], [12.0]])
    with pytest.raises(TypeError, match="dim or its alias axis, not both"):
        mv.sum(x, dim=0, axis=1)


def test_reduction_dim_out_of_range():
    with pytest.raises(ValueError, match="dim 2 is out of range for a tensor with 2 dimensions"):
        mv.tensor(np.ones((2, 3))).sum(2)


def test_reduction_repeated_dim():
    with pytest.raises(ValueError, match="names the same dimension twice"):
        mv.tensor(np.ones((2, 3))).sum((1, -1))


def test_mean_of_integers_is_refused():
    with pytest.raises(TypeError, match="mean needs a floating-point tensor, got dtype int64"):
        mv.tensor([1, 2]).mean()


def test_argmax_takes_first_maximum():
    x = mv.tensor([[1.0, 5.0, 5.0], [7.0, 0.0, 7.0]])
    assert x.argmax(dim=1).tolist() == [1, 0]
    assert x.argmax().item() == 3
