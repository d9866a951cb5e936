"""minivision.reference.pool: max pooling with switches, max unpooling and average pooling.

PyTorch parity of the reference over hypothesis-drawn shapes and values (maxima, switches,
gradients), float64 gradchecks of the functional ops with the reference switch on, the
lecture's cases by hand (on both paths), and the fast paths (Numba kernels, the unrolled 2x2
one) equal to the reference: switches, maxima and gradients to the bit.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minivision as mv
import minivision.functional as F
from minivision.reference import pool as reference
from tests.helpers import assert_close, torch_or_skip

SPECIAL = np.array([0.0, 1.0, -np.inf, np.nan])  # ties, -inf and NaN, where the switch rules decide
PATHS = ["reference", "fast"]  # the hand cases run on both; the graded ones are [reference]


@st.composite
def pool_cases(draw, dilation=True):
    """A pooling case: input shape, kernel, stride (None: the kernel), padding, ceil_mode, a seed,
    and dilation unless ``dilation=False``; the (dilated) kernel fits the padded input."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    case = dict(
        shape=(
            draw(st.integers(1, 2)),
            draw(st.integers(1, 3)),
            draw(st.integers(1, 8)),
            draw(st.integers(1, 8)),
        ),
        kernel_size=kernel,
        stride=draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3)))),
        padding=tuple(draw(st.integers(0, k // 2)) for k in kernel),
        ceil_mode=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )
    if dilation:
        case["dilation"] = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    reach = [d * (k - 1) + 1 for k, d in zip(kernel, case.get("dilation", (1, 1)))]
    assume(all(n + 2 * p >= r for n, p, r in zip(case["shape"][2:], case["padding"], reach)))
    return case


def pool_args(case) -> dict:
    """The case's keyword arguments for F.max_pool2d and torch's."""
    return {k: v for k, v in case.items() if k not in ("shape", "seed")}


def sizes(case) -> tuple:
    """The case as the reference's int pairs (kernel, stride, padding, dilation) and ceil_mode."""
    kernel, dilation = case["kernel_size"], case.get("dilation", (1, 1))
    return kernel, case["stride"] or kernel, case["padding"], dilation, case["ceil_mode"]


def values(case, special: bool) -> np.ndarray:
    """The case's input: standard normal (no ties), or drawn from SPECIAL."""
    rng = np.random.default_rng(case["seed"])
    shape = case["shape"]
    return rng.choice(SPECIAL, size=shape) if special else rng.standard_normal(shape)


# ----------------------------------------------------------------- the reference against PyTorch
@given(case=pool_cases(), special=st.booleans())
def test_max_pool2d_maxima_and_switches_match_torch(case, special):
    torch = torch_or_skip()
    x = values(case, special)
    maxima, switches = reference.max_pool2d(x, *sizes(case))
    expected, expected_switches = torch.nn.functional.max_pool2d(
        torch.tensor(x), return_indices=True, **pool_args(case)
    )
    np.testing.assert_array_equal(maxima, expected.numpy())  # NaN where torch has NaN
    np.testing.assert_array_equal(switches, expected_switches.numpy())
    assert maxima.dtype == x.dtype and switches.dtype == np.int64


@given(case=pool_cases())
def test_max_pool2d_backward_matches_torch(case):
    """The gradient added at the switches, overlapping windows included. A window of padding
    only (maximum -inf here) has its switch marked -1, as the op marks it, and no upstream
    gradient: torch's CPU kernel sends it to the switch, outside the window."""
    torch = torch_or_skip()
    x = values(case, special=False)
    maxima, switches = reference.max_pool2d(x, *sizes(case))
    upstream = np.random.default_rng(case["seed"] + 1).standard_normal(maxima.shape)
    upstream[maxima == -np.inf] = 0
    switches = np.where(maxima == -np.inf, -1, switches)
    t = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(t, **pool_args(case)).backward(torch.tensor(upstream))
    got = reference.max_pool2d_backward(upstream, switches, x.shape)
    assert_close(got, t.grad, rtol=1e-12, atol=0)


@given(case=pool_cases(dilation=False))
def test_max_unpool2d_and_its_backward_match_torch(case):
    """Unpooling torch's own switches to the input's size; windows that share a switch are
    assumed away (which value lands there is unspecified, in PyTorch too)."""
    torch = torch_or_skip()
    x = values(case, special=False)
    _, switches = torch.nn.functional.max_pool2d(
        torch.tensor(x), return_indices=True, **pool_args(case)
    )
    planes = switches.numpy().reshape(x.shape[0] * x.shape[1], -1)
    assume(all(len(np.unique(p)) == p.size for p in planes))
    rng = np.random.default_rng(case["seed"] + 1)
    pooled, upstream = rng.standard_normal(tuple(switches.shape)), rng.standard_normal(x.shape)
    kernel, stride, padding, _, _ = sizes(case)
    t = torch.tensor(pooled, requires_grad=True)
    expected = torch.nn.functional.max_unpool2d(
        t, switches, kernel, stride, padding, output_size=x.shape[2:]
    )
    expected.backward(torch.tensor(upstream))
    switches = switches.numpy()
    assert_close(reference.max_unpool2d(pooled, switches, x.shape[2:]), expected, rtol=0, atol=0)
    assert_close(reference.max_unpool2d_backward(upstream, switches), t.grad, rtol=0, atol=0)


@given(
    case=pool_cases(dilation=False),
    count_include_pad=st.booleans(),
    divisor_override=st.one_of(st.none(), st.integers(1, 5)),
)
def test_avg_pool2d_and_its_backward_match_torch(case, count_include_pad, divisor_override):
    torch = torch_or_skip()
    x = values(case, special=False)
    kernel, stride, padding, _, ceil_mode = sizes(case)
    kw = dict(count_include_pad=count_include_pad, divisor_override=divisor_override)
    t = torch.tensor(x, requires_grad=True)
    expected = torch.nn.functional.avg_pool2d(t, kernel, stride, padding, ceil_mode, **kw)
    upstream = np.random.default_rng(case["seed"] + 1).standard_normal(tuple(expected.shape))
    expected.backward(torch.tensor(upstream))
    got = reference.avg_pool2d(x, kernel, stride, padding, ceil_mode, **kw)
    assert_close(got, expected, what="forward")
    got = reference.avg_pool2d_backward(upstream, x.shape, kernel, stride, padding, **kw)
    assert_close(got, t.grad, what="gradient")


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_the_reference_keeps_the_dtype(dtype, rng):
    """float16 (which only the reference takes) and float32: float64's maxima and switches
    exactly; sums and means to the dtype's precision."""
    x = rng.standard_normal((2, 3, 7, 6))
    low = x.astype(dtype)
    high = low.astype(np.float64)
    window = ((3, 3), (2, 2), (1, 1), (1, 1), True)
    maxima, switches = reference.max_pool2d(low, *window)
    expected, expected_switches = reference.max_pool2d(high, *window)
    assert maxima.dtype == dtype
    np.testing.assert_array_equal(maxima, expected.astype(dtype))
    np.testing.assert_array_equal(switches, expected_switches)
    upstream = rng.standard_normal(maxima.shape).astype(dtype)
    grad = reference.max_pool2d_backward(upstream, switches, x.shape)
    tolerance = float(np.finfo(dtype).eps) * 8  # overlapping windows add up to 4 values at a pixel
    assert grad.dtype == dtype
    expected_grad = reference.max_pool2d_backward(upstream.astype(np.float64), switches, x.shape)
    assert_close(grad, expected_grad, rtol=tolerance, atol=tolerance)
    means = reference.avg_pool2d(low, (3, 3), (2, 2), (1, 1), False, True, None)
    assert means.dtype == dtype
    expected_means = reference.avg_pool2d(high, (3, 3), (2, 2), (1, 1), False, True, None)
    assert_close(means, expected_means, rtol=tolerance, atol=tolerance)


# ----------------------------------------------------------------- gradchecks, reference switch on
GRADCHECKS = {
    "avg_pool2d 3x3/2 pad 1 ceil": lambda t: F.avg_pool2d(
        t, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False
    ),
    "avg_pool2d 2x3/(1, 2) divisor 4": lambda t: F.avg_pool2d(
        t, (2, 3), stride=(1, 2), divisor_override=4
    ),
    "adaptive_max_pool2d (3, 4)": lambda t: F.adaptive_max_pool2d(t, (3, 4)),  # bins overlap
}


def _distinct(rng):
    """A float64 (2, 2, 5, 6) input of distinct values: no ties, at which max pooling has no
    derivative."""
    return mv.Tensor(rng.permutation(2 * 2 * 5 * 6).reshape(2, 2, 5, 6) / 7.0, requires_grad=True)


@pytest.mark.parametrize("name", list(GRADCHECKS))
def test_avg_and_adaptive_pool_gradcheck(name, rng):
    x = _distinct(rng)
    with mv.use_reference(True):
        mv.gradcheck(GRADCHECKS[name], [x])


def test_max_pool2d_gradcheck_without_ties(rng):
    x = _distinct(rng)
    with mv.use_reference(True):
        mv.gradcheck(lambda t: F.max_pool2d(t, (3, 2), (2, 1), padding=1, ceil_mode=True), [x])
        mv.gradcheck(lambda t: F.max_pool2d(t, 3, stride=1, padding=1), [x])  # windows overlap
        mv.gradcheck(lambda t: F.max_pool2d(t, 2, dilation=2), [x])


def test_max_unpool2d_gradcheck(rng):
    x = mv.Tensor(rng.standard_normal((2, 2, 3, 3)), requires_grad=True)
    switches = np.array([[0, 3, 4], [12, 14, 17], [30, 33, 35]]) + np.zeros((2, 2, 1, 1), np.int64)
    switches = mv.Tensor(switches)
    with mv.use_reference(True):
        mv.gradcheck(lambda t: F.max_unpool2d(t, switches, 2, output_size=(6, 6)), [x])


# ----------------------------------------------------------------- by hand, on both paths
def _pool(x, *args, **kwargs):
    return F.max_pool2d(mv.Tensor(x), *args, return_indices=True, **kwargs)


@pytest.mark.parametrize("path", PATHS)
def test_lecture_example_pool_then_unpool(path):
    """The lecture's 4x4 -> 2x2 -> 4x4: pooling remembers where each maximum was, and
    unpooling [[1, 2], [3, 4]] puts each value there, zeros elsewhere."""
    x = np.array(
        [[1.0, 2.0, 6.0, 3.0], [3.0, 5.0, 2.0, 1.0], [1.0, 2.0, 2.0, 1.0], [7.0, 3.0, 4.0, 8.0]]
    ).reshape(1, 1, 4, 4)
    with mv.use_reference(path == "reference"):
        pooled, switches = _pool(x, 2)
        restored = F.max_unpool2d(mv.Tensor(np.array([[[[1.0, 2.0], [3.0, 4.0]]]])), switches, 2)
    np.testing.assert_array_equal(pooled.numpy()[0, 0], [[5.0, 6.0], [7.0, 8.0]])
    np.testing.assert_array_equal(switches.numpy()[0, 0], [[5, 2], [12, 15]])  # h * 4 + w
    np.testing.assert_array_equal(
        restored.numpy()[0, 0], [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]]
    )


@pytest.mark.parametrize("path", PATHS)
def test_ties_go_to_the_first_maximum_in_row_major_window_order(path):
    x = np.array([[1.0, 4.0, 2.0, 2.0], [4.0, 4.0, 2.0, 2.0]]).reshape(1, 1, 2, 4)
    xt = mv.Tensor(x, requires_grad=True)
    with mv.use_reference(path == "reference"):
        pooled, switches = F.max_pool2d(xt, 2, return_indices=True)
        pooled.backward(np.array([[[[10.0, 20.0]]]]))
    np.testing.assert_array_equal(switches.numpy()[0, 0], [[1, 2]])
    np.testing.assert_array_equal(xt.grad.numpy()[0, 0], [[0, 10, 20, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize("path", PATHS)
def test_nan_beats_every_number_and_the_last_nan_wins(path):
    x = np.array([[np.nan, 5.0, np.nan, -np.inf]]).reshape(1, 1, 1, 4)
    with mv.use_reference(path == "reference"):
        pooled, switches = _pool(x, (1, 4))
        all_inf, inf_switch = _pool(np.full((1, 1, 1, 3), -np.inf), (1, 2), stride=1)
    assert np.isnan(pooled.numpy().item()) and switches.numpy().item() == 2
    np.testing.assert_array_equal(all_inf.numpy()[0, 0, 0], [-np.inf, -np.inf])
    np.testing.assert_array_equal(inf_switch.numpy()[0, 0, 0], [0, 1])  # each window's first


@pytest.mark.parametrize("path", PATHS)
def test_overlapping_windows_add_their_gradients_at_a_shared_switch(path):
    x = mv.Tensor(np.array([0.0, 1.0, 9.0, 1.0, 0.0]).reshape(1, 1, 1, 5), requires_grad=True)
    with mv.use_reference(path == "reference"):
        out = F.max_pool2d(x, (1, 3), stride=1)  # all three windows pick the 9
        out.backward(np.array([[[[1.0, 2.0, 4.0]]]]))
    np.testing.assert_array_equal(x.grad.numpy()[0, 0, 0], [0, 0, 7, 0, 0])


@pytest.mark.parametrize("path", PATHS)
def test_padding_never_wins_and_switches_index_the_unpadded_input(path):
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # all negative: a zero pad would win if counted
    with mv.use_reference(path == "reference"):
        pooled, switches = _pool(x, 3, stride=2, padding=1)
    # each window's top-left pixel in the input holds its largest value
    np.testing.assert_array_equal(pooled.numpy()[0, 0], [[-1.0, -2.0], [-4.0, -5.0]])
    np.testing.assert_array_equal(switches.numpy()[0, 0], [[0, 1], [3, 4]])


@pytest.mark.parametrize("path", PATHS)
def test_ceil_mode_keeps_windows_that_hang_off_the_edge(path):
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    with mv.use_reference(path == "reference"):
        floor = F.max_pool2d(mv.Tensor(x), 2)
        ceil, switches = _pool(x, 2, ceil_mode=True)
        late = F.max_pool2d(mv.Tensor(np.zeros((1, 1, 4, 4))), 2, 2, padding=1, ceil_mode=True)
    assert floor.shape == (1, 1, 2, 2) and ceil.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(switches.numpy()[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    assert late.shape == (1, 1, 3, 3)  # not a window that would start in the right padding


@pytest.mark.parametrize("path", PATHS)
def test_a_window_of_padding_only_keeps_torchs_switch_and_passes_no_gradient(path):
    """Kernel 2 at dilation 3 with padding 1 over a 2x2 input: the one window reads rows and
    columns -1 and 2, padding only. Its maximum is -inf, its switch PyTorch's 6 (row 1, column
    2: outside the window and the plane), and the op hands the backward a switch of -1."""
    x = mv.tensor(np.arange(4.0).reshape(1, 1, 2, 2), requires_grad=True)
    with mv.use_reference(path == "reference"):
        out, switches = F.max_pool2d(x, 2, stride=1, padding=1, dilation=3, return_indices=True)
        out.backward(mv.tensor([[[[3.0]]]]))
        grad = reference.max_pool2d_backward(
            np.array([[[[3.0, 5.0]]]]), np.array([[[[-1, 2]]]]), (1, 1, 2, 2)
        )
    assert out.numpy().item() == -np.inf and switches.numpy().item() == 6
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((1, 1, 2, 2)))
    np.testing.assert_array_equal(grad[0, 0], [[0.0, 0.0], [5.0, 0.0]])


@pytest.mark.parametrize("path", PATHS)
def test_unpool_to_an_odd_output_size(path):
    x = np.arange(1.0, 26.0).reshape(1, 1, 5, 5)
    with mv.use_reference(path == "reference"):
        pooled, switches = _pool(x, 2)
        restored = F.max_unpool2d(pooled, switches, 2, output_size=(1, 1, 5, 5))
    expected = np.zeros((5, 5))
    expected[[1, 1, 3, 3], [1, 3, 1, 3]] = [7.0, 9.0, 17.0, 19.0]
    np.testing.assert_array_equal(restored.numpy()[0, 0], expected)


def test_avg_pool_divisors_by_hand():
    """3 pixels, kernel 2, stride 1, padding 1: windows [-1, 1), [0, 2), [1, 3), [2, 4) of the
    padded [-1, 4), each of 2 positions with the padding counted, of 1, 2, 2, 1 pixels without.
    5 pixels, kernel 2, stride 2, ceil_mode: the last window [4, 6) is clipped to [4, 5) even
    with the padding counted. ``divisor_override`` replaces every divisor."""

    def divisors(n, stride, padding, out, count_include_pad, divisor_override=None):
        return reference.avg_pool_divisors(
            (n, 1), (2, 1), (stride, 1), (padding, 0), (out, 1), count_include_pad, divisor_override
        )[:, 0]

    np.testing.assert_array_equal(divisors(3, 1, 1, 4, True), [2, 2, 2, 2])
    np.testing.assert_array_equal(divisors(3, 1, 1, 4, False), [1, 2, 2, 1])
    np.testing.assert_array_equal(divisors(5, 2, 0, 3, True), [2, 2, 1])
    np.testing.assert_array_equal(divisors(3, 1, 1, 4, False, 7), [7, 7, 7, 7])


# ----------------------------------------------------------------- fast paths equal the reference
@st.composite
def fast_cases(draw):
    """Pooling cases, a third of them the lecture's 2x2 windows at stride 2 (the unrolled
    kernel)."""
    case = draw(pool_cases())
    if draw(st.integers(0, 2)) == 0:
        case.update(kernel_size=(2, 2), stride=None, padding=(0, 0), dilation=(1, 1))
        assume(min(case["shape"][2:]) >= 2)
    return case


def _run_max_pool(x, upstream, kw, reference_on: bool):
    with mv.use_reference(reference_on):
        t = mv.tensor(x, requires_grad=True)
        out, switches = F.max_pool2d(t, return_indices=True, **kw)
        out.backward(mv.tensor(upstream))
    return out.numpy(), switches.numpy(), t.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(case=fast_cases(), special=st.booleans())
def test_fast_max_pool_equals_the_reference_to_the_bit(case, special, dtype):
    """Maxima, switches and gradient (added at the switches in the same order) of the Numba
    kernels and of the reference, through F.max_pool2d with the switch off and on."""
    x = values(case, special).astype(dtype)
    out_shape = reference.max_pool2d(x, *sizes(case))[0].shape
    upstream = np.random.default_rng(case["seed"] + 1).standard_normal(out_shape).astype(dtype)
    fast = _run_max_pool(x, upstream, pool_args(case), reference_on=False)
    slow = _run_max_pool(x, upstream, pool_args(case), reference_on=True)
    for got, expected, what in zip(fast, slow, ("maxima", "switches", "gradient")):
        assert got.dtype == expected.dtype, what
        np.testing.assert_array_equal(got, expected, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(
    shape=st.tuples(st.integers(0, 2), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
    out_hw=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    seed=st.integers(0, 2**16),
)
def test_fast_unpool_scatter_and_gather_equal_the_reference(shape, out_hw, seed, dtype):
    """Switches anywhere in the output plane, repeats included (the last value lands on both
    paths), and the gather of the gradient."""
    from minivision.functional import _pool_fast

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    switches = rng.integers(0, out_hw[0] * out_hw[1], shape)
    out_shape = shape[:2] + out_hw
    unpooled = _pool_fast.max_unpool2d(x, switches, out_shape)
    np.testing.assert_array_equal(unpooled, reference.max_unpool2d(x, switches, out_hw))
    upstream = rng.standard_normal(out_shape).astype(dtype)
    np.testing.assert_array_equal(
        _pool_fast.max_unpool2d_backward(upstream, switches),
        reference.max_unpool2d_backward(upstream, switches),
    )


@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 7), st.integers(1, 7)),
    out_hw=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    special=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_adaptive_max_pool_gradient_equals_the_reference(shape, out_hw, special, seed):
    """Adaptive bins overlap: the Numba scatter adds in the reference's order."""
    rng = np.random.default_rng(seed)
    x = rng.choice(SPECIAL, size=shape) if special else rng.standard_normal(shape)
    upstream = rng.standard_normal(shape[:2] + out_hw)
    grads = []
    for reference_on in (False, True):
        with mv.use_reference(reference_on):
            t = mv.tensor(x, requires_grad=True)
            F.adaptive_max_pool2d(t, out_hw).backward(mv.tensor(upstream))
        grads.append(t.grad.numpy())
    np.testing.assert_array_equal(*grads)
