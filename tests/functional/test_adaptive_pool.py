"""adaptive_max_pool2d and adaptive_avg_pool2d (and their modules): PyTorch parity, the bin
rule by hand, switches, gradchecks, empty batches and bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivision as mv
import minivision.functional as F
from minivision import nn
from tests.helpers import DEVICES, assert_close, check_parity, torch_or_skip

torch = None


def setup_module():
    global torch
    torch = torch_or_skip()


@st.composite
def adaptive_cases(draw):
    """Input shapes (unbatched at times) and output sizes smaller than, equal to and larger than
    the input, divisible or not, as an int or a pair with None entries."""
    shape = (
        draw(st.integers(1, 2)),
        draw(st.integers(1, 3)),
        draw(st.integers(1, 9)),
        draw(st.integers(1, 9)),
    )
    if draw(st.booleans()):
        shape = shape[1:]
    side = st.integers(1, 12)
    output_size = draw(
        st.one_of(side, st.tuples(side, side), st.tuples(st.none() | side, st.none() | side))
    )
    return shape, output_size, draw(st.integers(0, 2**16))


def _torch_pools(output_size):
    return {
        "max": (
            lambda a: F.adaptive_max_pool2d(a, output_size),
            lambda a: torch.nn.functional.adaptive_max_pool2d(a, output_size),
        ),
        "avg": (
            lambda a: F.adaptive_avg_pool2d(a, output_size),
            lambda a: torch.nn.functional.adaptive_avg_pool2d(a, output_size),
        ),
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["max", "avg"])
@given(case=adaptive_cases())
def test_adaptive_pools_match_torch(case, kind, device):
    shape, output_size, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)  # continuous values: no ties
    ours, theirs = _torch_pools(output_size)[kind]
    check_parity(ours, theirs, [x], rng, device=device)


@pytest.mark.parametrize("device", DEVICES)
@given(
    case=adaptive_cases(),
    values=st.lists(st.sampled_from([0.0, 1.0, -np.inf, np.nan]), min_size=4, max_size=4),
)
def test_adaptive_max_switches_equal_torchs(case, values, device):
    """Ties (the first maximum in row-major order), -inf and NaN (the last one) included."""
    shape, output_size, seed = case
    x = np.random.default_rng(seed).choice(np.array(values), size=shape)
    out, switches = F.adaptive_max_pool2d(
        mv.tensor(x, device=device), output_size, return_indices=True
    )
    expected, expected_switches = torch.nn.functional.adaptive_max_pool2d(
        torch.tensor(x), output_size, return_indices=True
    )
    np.testing.assert_array_equal(out.numpy(), expected.numpy())
    np.testing.assert_array_equal(switches.numpy(), expected_switches.numpy())
    assert switches.dtype == np.int64


@pytest.mark.parametrize("output_size", [(3, 4), (7, 2), 1])
def test_adaptive_pools_gradcheck(output_size, rng):
    """5 rows into 3 bins overlap ([0, 2), [1, 4), [3, 5)); 5 into 7 repeats rows."""
    x = mv.Tensor(
        rng.permutation(2 * 3 * 5 * 5).reshape(2, 3, 5, 5) / 7.0, requires_grad=True
    )  # distinct values
    mv.gradcheck(lambda t: F.adaptive_max_pool2d(t, output_size), [x])
    mv.gradcheck(lambda t: F.adaptive_avg_pool2d(t, output_size), [x])


# ----------------------------------------------------------------- the bin rule, by hand
def test_bins_overlap_where_the_output_does_not_divide_the_input():
    """5 pixels into 3 bins: [0, 2), [1, 4), [3, 5); pixels 1 and 3 sit in two bins each."""
    x = mv.tensor(np.array([1.0, 4.0, 2.0, 8.0, 0.0]).reshape(1, 1, 1, 5), requires_grad=True)
    avg = F.adaptive_avg_pool2d(x, (1, 3))
    np.testing.assert_allclose(avg.numpy()[0, 0, 0], [2.5, 14.0 / 3, 4.0])
    avg.backward(mv.tensor(np.array([[[[6.0, 3.0, 12.0]]]])))
    np.testing.assert_allclose(x.grad.numpy()[0, 0, 0], [3.0, 4.0, 1.0, 7.0, 6.0])
    x.grad = None
    out, switches = F.adaptive_max_pool2d(x, (1, 3), return_indices=True)
    np.testing.assert_array_equal(out.numpy()[0, 0, 0], [4.0, 8.0, 8.0])
    np.testing.assert_array_equal(switches.numpy()[0, 0, 0], [1, 3, 3])
    out.backward(
        mv.tensor(np.array([[[[1.0, 2.0, 4.0]]]]))
    )  # both bins holding the 8 send it theirs
    np.testing.assert_array_equal(x.grad.numpy()[0, 0, 0], [0.0, 1.0, 0.0, 6.0, 0.0])


def test_an_output_larger_than_the_input_repeats_pixels():
    """2 pixels into 3 bins: [0, 1), [0, 2), [1, 2)."""
    x = np.array([[1.0, 2.0], [3.0, 5.0]]).reshape(1, 1, 2, 2)
    np.testing.assert_allclose(
        F.adaptive_avg_pool2d(mv.Tensor(x), (3, 1)).numpy()[0, 0, :, 0], [1.5, 2.75, 4.0]
    )
    out, switches = F.adaptive_max_pool2d(mv.Tensor(x), 3, return_indices=True)
    np.testing.assert_array_equal(out.numpy()[0, 0], [[1, 2, 2], [3, 5, 5], [3, 5, 5]])
    np.testing.assert_array_equal(switches.numpy()[0, 0], [[0, 1, 1], [2, 3, 3], [2, 3, 3]])


def test_ties_go_to_the_first_maximum_in_row_major_order_and_nan_to_the_last():
    x = np.array([[1.0, 3.0, 3.0], [3.0, 0.0, 3.0]]).reshape(1, 1, 2, 3)
    _, switches = F.adaptive_max_pool2d(mv.Tensor(x), 1, return_indices=True)
    assert switches.numpy().item() == 1
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = np.nan
    out, switches = F.adaptive_max_pool2d(mv.Tensor(x), 1, return_indices=True)
    assert np.isnan(out.numpy().item()) and switches.numpy().item() == 4


@pytest.mark.parametrize("kernel", [1, 2, 3])
def test_uniform_bins_are_an_ordinary_pool(kernel, rng):
    x = rng.standard_normal((2, 3, 6, 12))  # both sides divisible by each kernel
    out_hw = (6 // kernel, 12 // kernel)
    out, switches = F.adaptive_max_pool2d(mv.Tensor(x), out_hw, return_indices=True)
    expected, expected_switches = F.max_pool2d(mv.Tensor(x), kernel, return_indices=True)
    np.testing.assert_array_equal(out.numpy(), expected.numpy())
    np.testing.assert_array_equal(switches.numpy(), expected_switches.numpy())
    assert_close(
        F.adaptive_avg_pool2d(mv.Tensor(x), out_hw), F.avg_pool2d(mv.Tensor(x), kernel).numpy()
    )


def test_max_unpool2d_takes_the_switches(rng):
    """5x5 into 2x2 bins [0, 3), [2, 5) on each axis: the windows of a 3x3 pool at stride 2,
    which max_unpool2d takes back to 5x5 as PyTorch does."""
    x = rng.standard_normal((2, 3, 5, 5))
    pooled, switches = F.adaptive_max_pool2d(mv.Tensor(x), 2, return_indices=True)
    expected, expected_switches = torch.nn.functional.adaptive_max_pool2d(
        torch.tensor(x), 2, return_indices=True
    )
    restored = F.max_unpool2d(pooled, switches, 3, stride=2)
    assert_close(
        restored, torch.nn.functional.max_unpool2d(expected, expected_switches, 3, stride=2)
    )
    np.testing.assert_array_equal(
        np.take_along_axis(x.reshape(2, 3, 25), switches.numpy().reshape(2, 3, 4), axis=2),
        pooled.numpy().reshape(2, 3, 4),
    )


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_adaptive_pools_keep_the_dtype(dtype, rng):
    """float16 (the array path, no Numba) and float32 give float64's maxima and switches exactly,
    and its means to the dtype's precision."""
    x = rng.standard_normal((2, 3, 7, 5)).astype(dtype)
    low, high = (
        mv.tensor(x, requires_grad=True),
        mv.tensor(x.astype(np.float64), requires_grad=True),
    )
    out, switches = F.adaptive_max_pool2d(low, (3, 4), return_indices=True)
    expected, expected_switches = F.adaptive_max_pool2d(high, (3, 4), return_indices=True)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out.numpy(), expected.numpy().astype(dtype))
    np.testing.assert_array_equal(switches.numpy(), expected_switches.numpy())
    upstream = rng.standard_normal(out.shape).astype(dtype)
    out.backward(mv.tensor(upstream))
    expected.backward(mv.tensor(upstream.astype(np.float64)))
    tolerance = (
        float(np.finfo(dtype).eps) * 8
    )  # overlapping bins add up to four upstream values at a pixel
    assert low.grad.dtype == dtype
    assert_close(low.grad, high.grad.numpy(), rtol=tolerance, atol=tolerance, what="max gradient")
    means = F.adaptive_avg_pool2d(mv.tensor(x), (3, 4))
    assert means.dtype == dtype
    assert_close(
        means,
        F.adaptive_avg_pool2d(high, (3, 4)).numpy(),
        rtol=tolerance,
        atol=tolerance,
        what="means",
    )


# ----------------------------------------------------------------- empty batches, modules
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape", [(0, 2, 5, 5), (2, 0, 5, 5)])
def test_adaptive_pools_take_an_empty_batch_and_zero_channels(shape, kind, dtype, device):
    """torch gives (0, 2, 3, 4) for N = 0 (it refuses C = 0 for the max): forward and backward keep shape and dtype."""
    x = mv.tensor(np.zeros(shape), dtype=dtype, device=device, requires_grad=True)
    out = _torch_pools((3, 4))[kind][0](x)
    assert out.shape == shape[:2] + (3, 4) and out.dtype == dtype
    out.backward(mv.tensor(np.zeros(out.shape), dtype=dtype, device=device))
    assert x.grad.shape == shape and x.grad.dtype == dtype


def test_the_modules_call_the_functions(rng):
    x = mv.Tensor(rng.standard_normal((2, 3, 7, 6)))
    pool = nn.AdaptiveMaxPool2d((3, None), return_indices=True)
    out, switches = pool(x)
    expected, expected_switches = torch.nn.AdaptiveMaxPool2d((3, None), return_indices=True)(
        torch.tensor(x.numpy())
    )
    assert_close(out, expected)
    np.testing.assert_array_equal(switches.numpy(), expected_switches.numpy())
    assert_close(nn.AdaptiveAvgPool2d(4)(x), torch.nn.AdaptiveAvgPool2d(4)(torch.tensor(x.numpy())))
    assert repr(pool) == "AdaptiveMaxPool2d(output_size=(3, None))"
    assert repr(nn.AdaptiveAvgPool2d(4)) == "AdaptiveAvgPool2d(output_size=4)"


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("op", [F.adaptive_max_pool2d, F.adaptive_avg_pool2d])
@pytest.mark.parametrize(
    "output_size,error,message",
    [
        (0, ValueError, r"output_size must be >= 1 in both dimensions, got 0"),
        ((3, -1), ValueError, r"output_size must be >= 1 in both dimensions, got \(3, -1\)"),
        ((None, 0), ValueError, r"output_size must be >= 1 in both dimensions, got \(None, 0\)"),
        ((3,), ValueError, r"output_size must be an int or a pair \(out_h, out_w\), got \(3,\)"),
        (
            [2, 3, 4],
            ValueError,
            r"output_size must be an int or a pair \(out_h, out_w\), got \[2, 3, 4\]",
        ),
        (
            2.0,
            TypeError,
            r"output_size must hold ints \(or None to keep the input's size\), got 2.0",
        ),
        ((2, True), TypeError, r"output_size must hold ints .*, got \(2, True\)"),
    ],
)
def test_adaptive_pools_reject_bad_output_sizes(op, output_size, error, message):
    with pytest.raises(error, match=rf"{op.__name__}: {message}"):
        op(mv.Tensor(np.zeros((1, 1, 4, 4))), output_size)


@pytest.mark.parametrize("op", [F.adaptive_max_pool2d, F.adaptive_avg_pool2d])
def test_adaptive_pools_reject_bad_inputs(op):
    name = op.__name__
    with pytest.raises(
        ValueError, match=rf"{name}: input must have shape \(N, C, H, W\), got \(4, 4\)"
    ):
        op(mv.Tensor(np.zeros((4, 4))), 2)
    with pytest.raises(
        ValueError, match=rf"{name}: input must have shape \(N, C, H, W\), got \(1, 1, 1, 4, 4\)"
    ):
        op(mv.Tensor(np.zeros((1, 1, 1, 4, 4))), 2)
    with pytest.raises(TypeError, match=rf"{name}: input must be floating point, got dtype int64"):
        op(mv.Tensor(np.zeros((1, 1, 4, 4), dtype=np.int64)), 2)
    with pytest.raises(
        ValueError,
        match=rf"{name}: input must have at least one row and one column, "
        r"got shape \(1, 1, 0, 4\)",
    ):
        op(mv.Tensor(np.zeros((1, 1, 0, 4))), 2)
