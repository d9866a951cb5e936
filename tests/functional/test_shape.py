"""reshape, permute, flatten, indexing, cat, stack, pad, casts: gradcheck, parity, bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
from minivision import functional as F
from tests.helpers import check_parity, torch_or_skip


@pytest.fixture(scope="module")
def torch():
    return torch_or_skip()


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_reshape_permute_flatten_match_torch(shape, seed):
    torch_or_skip()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    perm = tuple(rng.permutation(len(shape)).tolist())
    check_parity(
        lambda t: t.permute(*perm).reshape(-1, shape[0]),
        lambda t: t.permute(*perm).reshape(-1, shape[0]),
        [x],
        rng,
    )
    check_parity(lambda t: t.flatten(), lambda t: t.flatten(), [x], rng)
    check_parity(
        lambda t: t.transpose(0, -1).unsqueeze(1),
        lambda t: t.transpose(0, -1).unsqueeze(1),
        [x],
        rng,
    )


def test_squeeze_matches_torch(torch, rng):
    x = rng.standard_normal((1, 3, 1, 2))
    check_parity(lambda t: t.squeeze(), lambda t: t.squeeze(), [x], rng)
    check_parity(lambda t: t.squeeze(2), lambda t: t.squeeze(2), [x], rng)
    check_parity(lambda t: t.squeeze(1), lambda t: t.squeeze(1), [x], rng)


def test_T_reverses_dimensions(rng):
    x = rng.standard_normal((2, 3, 4))
    np.testing.assert_array_equal(mv.tensor(x).T.numpy(), x.T)


INDEXES = {
    "slice": lambda: (slice(1, None), slice(None, None, 2)),
    "int_and_ellipsis": lambda: (Ellipsis, 1),
    "negative_step_free": lambda: (slice(None), None, 0),
    "int_array_with_repeats": lambda: np.array([0, 2, 0, 0]),
    "two_int_arrays": lambda: (np.array([0, 1, 0]), np.array([2, 2, 2])),
    "bool_mask": lambda: np.array([True, False, True]),
}


@pytest.mark.parametrize("name", sorted(INDEXES))
def test_getitem_matches_torch_including_repeated_indices(name, torch, rng):
    x = rng.standard_normal((3, 4))
    index = INDEXES[name]()
    th_index = (
        tuple(torch.tensor(i) if isinstance(i, np.ndarray) else i for i in index)
        if isinstance(index, tuple)
        else torch.tensor(index)
    )
    check_parity(lambda t: t[index], lambda t: t[th_index], [x], rng)


def test_getitem_with_full_boolean_mask_and_tensor_index(torch, rng):
    x = rng.standard_normal((3, 4))
    mask = x > 0
    check_parity(lambda t: t[mv.Tensor(mask)], lambda t: t[torch.tensor(mask)], [x], rng)


def test_getitem_gradcheck_repeated_rows(rng):
    x = mv.Tensor(rng.standard_normal((3, 2)), requires_grad=True)
    mv.gradcheck(lambda t: t[np.array([2, 0, 2])], [x])


def test_getitem_out_of_range_names_shape():
    with pytest.raises(IndexError, match=r"does not fit a tensor of shape \(2, 3\)"):
        mv.tensor(np.ones((2, 3)))[5]


@given(n=st.integers(1, 4), dim=st.integers(-3, 2), seed=st.integers(0, 2**16))
def test_cat_and_stack_match_torch(n, dim, seed):
    torch = torch_or_skip()
    rng = np.random.default_rng(seed)
    base = [2, 3, 2]
    arrays = []
    for _ in range(n):
        shape = list(base)
        shape[dim] = int(rng.integers(1, 4))
        arrays.append(rng.standard_normal(shape))
    check_parity(lambda *ts: mv.cat(ts, dim=dim), lambda *ts: torch.cat(ts, dim=dim), arrays, rng)
    same = [rng.standard_normal(base) for _ in range(n)]
    check_parity(lambda *ts: mv.stack(ts, dim=dim), lambda *ts: torch.stack(ts, dim=dim), same, rng)


def test_cat_gradcheck(rng):
    a = mv.Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    b = mv.Tensor(rng.standard_normal((2, 1)), requires_grad=True)
    mv.gradcheck(lambda x, y: mv.cat([x, y * 2.0], dim=1), [a, b])


def test_cat_shape_mismatch_names_the_tensor():
    with pytest.raises(
        ValueError,
        match=r"cat: tensor 1 has shape \(3, 3\), expected \(2, 3\) except in dimension 1",
    ):
        mv.cat([mv.tensor(np.ones((2, 3))), mv.tensor(np.ones((3, 3)))], dim=1)


def test_cat_dtype_mismatch():
    with pytest.raises(TypeError, match="cat: tensor 1 has dtype float64, expected float32"):
        mv.cat([mv.tensor(np.ones(2, np.float32)), mv.tensor(np.ones(2, np.float64))])


def test_stack_shape_mismatch_and_empty():
    with pytest.raises(ValueError, match=r"stack: tensor 1 has shape \(3,\), expected \(2,\)"):
        mv.stack([mv.tensor(np.ones(2)), mv.tensor(np.ones(3))])
    with pytest.raises(ValueError, match="non-empty sequence"):
        mv.cat([])


@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=4), data=st.data())
def test_pad_matches_torch(shape, data):
    torch = torch_or_skip()
    pairs = data.draw(st.integers(1, len(shape)))
    pad = tuple(data.draw(st.lists(st.integers(0, 2), min_size=2 * pairs, max_size=2 * pairs)))
    value = data.draw(st.sampled_from([0.0, -1.5]))
    rng = np.random.default_rng(len(shape))
    check_parity(
        lambda t: F.pad(t, pad, value=value),
        lambda t: torch.nn.functional.pad(t, pad, value=value),
        [rng.standard_normal(shape)],
        rng,
    )


def test_pad_bad_arguments():
    x = mv.tensor(np.ones((2, 2)))
    with pytest.raises(ValueError, match="pad must have an even length"):
        F.pad(x, (1, 2, 3))
    with pytest.raises(ValueError, match="non-negative integers"):
        F.pad(x, (1, -1))
    with pytest.raises(ValueError, match="pad mode must be 'constant', got 'reflect'"):
        F.pad(x, (1, 1), mode="reflect")


def test_reshape_bad_shape_names_sizes():
    with pytest.raises(
        ValueError, match=r"cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into \(4, -1\)"
    ):
        mv.tensor(np.ones((2, 3))).reshape(4, -1)


def test_permute_must_be_a_permutation():
    with pytest.raises(ValueError, match="is not a permutation"):
        mv.tensor(np.ones((2, 3))).permute(0, 0)


def test_cast_passes_gradient_back_in_source_dtype():
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    y = x.double() * 3.0
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
