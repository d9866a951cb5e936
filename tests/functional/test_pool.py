"""max_pool2d (switches), max_unpool2d and avg_pool2d as ops: PyTorch parity on every device,
the unrolled 2x2 kernel, windows that hold no input pixel, empty batches and bad input.
The switch rules by hand, gradchecks and the reference's own tests are in tests/reference."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minivision as mv
import minivision.functional as F
from minivision.functional import pool as pool_module
from tests import cuda_emulation
from tests.helpers import DEVICES, assert_close, check_parity, torch_or_skip
from tests.reference.test_pool import pool_args, pool_cases

torch = None


def setup_module():
    global torch
    torch = torch_or_skip()


@pytest.mark.parametrize("device", DEVICES)
@given(case=pool_cases())
def test_max_pool2d_matches_torch_values_switches_and_gradient(case, device):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["shape"])  # continuous values: no ties
    kw = pool_args(case)
    check_parity(
        lambda a: F.max_pool2d(a, **kw),
        lambda a: _torch_max_pool2d(a, **kw),
        [x],
        rng,
        device=device,
    )
    _, switches = F.max_pool2d(mv.tensor(x, device=device), return_indices=True, **kw)
    _, expected = torch.nn.functional.max_pool2d(
        torch.tensor(x, device=device), return_indices=True, **kw
    )
    np.testing.assert_array_equal(switches.numpy(), expected.cpu().numpy())
    assert switches.dtype == np.int64


def _torch_max_pool2d(a, **kw):
    """torch's max_pool2d, its gradient dropped at windows that hold no input pixel (found as
    the -inf maxima of a zero input): they depend on no input. torch's CUDA kernel drops it,
    its CPU one sends it to the switch, which for such a window lies outside it, past the
    plane's end at times (a write outside the gradient tensor, harmless only for a zero)."""
    out = torch.nn.functional.max_pool2d(a, **kw)
    empty = torch.nn.functional.max_pool2d(torch.zeros_like(a), **kw) == -np.inf
    return torch.where(empty, out.detach(), out)


@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(2, 9), st.integers(2, 9)),
    ceil_mode=st.booleans(),
    values=st.lists(st.sampled_from([0.0, 1.0, -np.inf, np.nan]), min_size=4, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_unrolled_2x2_kernel_equals_the_general_one_and_torch(shape, ceil_mode, values, seed):
    """2x2/2 pooling takes its own unrolled kernels: same maxima and switches as the general
    loop and PyTorch, and PyTorch's gradient, with ties, -inf, NaN and odd edges (windows
    hanging off them with ceil_mode, rows and columns no window reads without)."""
    from minivision.functional import _pool_fast
    from minivision.functional import _pool_kernels as kernels

    rng = np.random.default_rng(seed)
    x = rng.choice(np.array(values), size=shape)
    win, out_hw = pool_module._pool_windows("max_pool2d", x, 2, 2, 0, 1, ceil_mode)
    assert win == _pool_fast.LECTURE_2X2
    values_2x2, switches_2x2 = _pool_fast.max_pool2d(x, win, out_hw)
    planes = x.reshape((-1,) + x.shape[2:])
    general, general_switches = (
        np.empty((planes.shape[0],) + out_hw),
        np.empty((planes.shape[0],) + out_hw, np.int64),
    )
    kernels.max_pool_planes(planes, 2, 2, 2, 2, 0, 0, 1, 1, general, general_switches)
    np.testing.assert_array_equal(switches_2x2.reshape(general_switches.shape), general_switches)
    np.testing.assert_array_equal(values_2x2.reshape(general.shape), general)
    _, expected = torch.nn.functional.max_pool2d(
        torch.tensor(x), 2, ceil_mode=ceil_mode, return_indices=True
    )
    np.testing.assert_array_equal(switches_2x2, expected.numpy())
    check_parity(
        lambda a: F.max_pool2d(a, 2, ceil_mode=ceil_mode),
        lambda a: torch.nn.functional.max_pool2d(a, 2, ceil_mode=ceil_mode),
        [x],
        rng,
    )


@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)),
    odd=st.tuples(st.integers(-1, 1), st.integers(-1, 1)),
    foreign=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_2x2_unpool_matches_torch_with_any_indices(shape, odd, foreign, seed):
    """2x2/2 unpooling of indices inside their own windows (as a 2x2 pool's switches are)
    or anywhere in the output: values and gradient as PyTorch's, odd output sizes included."""
    rng = np.random.default_rng(seed)
    out_hw = tuple(max(1, 2 * n + o) for n, o in zip(shape[2:], odd))
    x = rng.standard_normal(shape)
    if foreign:  # distinct positions anywhere in each output plane
        assume(out_hw[0] * out_hw[1] >= shape[2] * shape[3])
        flat = [
            rng.permutation(out_hw[0] * out_hw[1])[: shape[2] * shape[3]]
            for _ in range(shape[0] * shape[1])
        ]
        index = np.array(flat).reshape(shape)
    else:  # a position inside each window that lies in the output
        rows = np.minimum(
            2 * np.arange(shape[2])[:, None] + rng.integers(0, 2, shape), out_hw[0] - 1
        )
        cols = np.minimum(
            2 * np.arange(shape[3])[None, :] + rng.integers(0, 2, shape), out_hw[1] - 1
        )
        assume(
            (
                (rows // 2 == np.arange(shape[2])[:, None])
                & (cols // 2 == np.arange(shape[3])[None, :])
            ).all()
        )
        index = rows * out_hw[1] + cols
    kw = dict(kernel_size=2, stride=2, output_size=out_hw)
    check_parity(
        lambda a: F.max_unpool2d(a, mv.Tensor(index), **kw),
        lambda a: torch.nn.functional.max_unpool2d(a, torch.tensor(index), **kw),
        [x],
        rng,
    )


@pytest.mark.parametrize("device", DEVICES)
@given(
    case=pool_cases(dilation=False),
    count_include_pad=st.booleans(),
    divisor_override=st.one_of(st.none(), st.integers(1, 5)),
)
def test_avg_pool2d_matches_torch(case, count_include_pad, divisor_override, device):
    rng = np.random.default_rng(case["seed"])
    kw = dict(
        pool_args(case), count_include_pad=count_include_pad, divisor_override=divisor_override
    )
    check_parity(
        lambda a: F.avg_pool2d(a, **kw),
        lambda a: torch.nn.functional.avg_pool2d(a, **kw),
        [rng.standard_normal(case["shape"])],
        rng,
        device=device,
    )


@given(case=pool_cases(dilation=False))
def test_max_unpool2d_matches_torch(case):
    rng = np.random.default_rng(case["seed"])
    kw = pool_args(case)
    x = rng.standard_normal(case["shape"])
    _, switches = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    stride = kw["stride"] or kw["kernel_size"]
    unpool = dict(
        kernel_size=kw["kernel_size"], stride=stride, padding=kw["padding"], output_size=x.shape[2:]
    )
    planes = switches.numpy().reshape(x.shape[0] * x.shape[1], -1)
    # where overlapping windows share a switch, which value lands there is unspecified (in PyTorch too)
    assume(all(len(np.unique(p)) == p.size for p in planes))
    values = rng.standard_normal(tuple(switches.shape))
    check_parity(
        lambda v: F.max_unpool2d(v, mv.Tensor(switches.numpy()), **unpool),
        lambda v: torch.nn.functional.max_unpool2d(v, switches, **unpool),
        [values],
        rng,
    )


def test_avg_pool2d_divisors_by_hand():
    x = np.ones((1, 1, 3, 3))
    with_pad = F.avg_pool2d(mv.Tensor(x), 2, padding=1)
    without_pad = F.avg_pool2d(mv.Tensor(x), 2, padding=1, count_include_pad=False)
    np.testing.assert_allclose(with_pad.numpy()[0, 0], [[0.25, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(without_pad.numpy()[0, 0], np.ones((2, 2)))


# ----------------------------------------------------------------- bad input
def _pooled():
    x = mv.Tensor(np.arange(16.0).reshape(1, 1, 4, 4))
    return F.max_pool2d(x, 2, return_indices=True)


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d])
def test_pool_bad_input(op):
    x = mv.Tensor(np.zeros((1, 1, 4, 4)))
    with pytest.raises(
        ValueError, match=r"padding must be at most half of kernel_size, got padding=\(2, 2\)"
    ):
        op(x, 3, padding=2)
    with pytest.raises(ValueError, match=r"kernel size 5x5 .* larger than the padded input 4x4"):
        op(x, 5)
    with pytest.raises(ValueError, match=r"input must have shape \(N, C, H, W\), got \(4, 4\)"):
        op(mv.Tensor(np.zeros((4, 4))), 2)
    with pytest.raises(TypeError, match="kernel_size must be an int or a pair of ints"):
        op(x, (2, 2, 2))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        op(x, 2, stride=0)


def test_max_unpool2d_rejects_indices_of_another_shape():
    pooled, switches = _pooled()
    with pytest.raises(
        ValueError, match=r"indices must have the input's shape \(1, 1, 2, 2\), got \(1, 1, 2, 1\)"
    ):
        F.max_unpool2d(pooled, mv.Tensor(switches.numpy()[..., :1]), 2)


def test_max_unpool2d_rejects_float_and_out_of_range_indices():
    pooled, switches = _pooled()
    with pytest.raises(TypeError, match="indices must be integers"):
        F.max_unpool2d(pooled, mv.Tensor(switches.numpy().astype(np.float64)), 2)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 16\)"):
        F.max_unpool2d(pooled, mv.Tensor(switches.numpy() + 10), 2)


@pytest.mark.parametrize(
    "size,message",
    [
        ((6, 4), r"invalid output_size \(6, 4\) \(dim 0 must be between 2 and 6"),
        ((2, 4), r"invalid output_size \(2, 4\) \(dim 0 must be between 2 and 6"),
        ((4,), "output_size must have 2 or 4 elements"),
    ],
)
def test_max_unpool2d_rejects_wrong_output_size(size, message):
    pooled, switches = _pooled()
    with pytest.raises(ValueError, match=message):
        F.max_unpool2d(pooled, switches, 2, output_size=size)


def test_max_unpool2d_accepts_the_sizes_torch_accepts():
    pooled, switches = _pooled()
    for size in [(4, 4), (5, 5), (1, 1, 4, 5)]:
        expected = torch.nn.functional.max_unpool2d(
            torch.tensor(pooled.numpy()), torch.tensor(switches.numpy()), 2, output_size=size
        )
        assert_close(F.max_unpool2d(pooled, switches, 2, output_size=size), expected)


def test_pool_ops_take_an_unbatched_image_like_torch(rng):
    x = rng.standard_normal((2, 5, 5))
    pooled, switches = F.max_pool2d(mv.Tensor(x), 2, return_indices=True)
    expected, expected_switches = torch.nn.functional.max_pool2d(
        torch.tensor(x), 2, return_indices=True
    )
    assert_close(pooled, expected)
    np.testing.assert_array_equal(switches.numpy(), expected_switches.numpy())
    assert_close(
        F.max_unpool2d(pooled, switches, 2, output_size=(5, 5)),
        torch.nn.functional.max_unpool2d(expected, expected_switches, 2, output_size=(5, 5)),
    )
    assert_close(
        F.avg_pool2d(mv.Tensor(x), 3, padding=1),
        torch.nn.functional.avg_pool2d(torch.tensor(x), 3, padding=1),
    )


def test_a_window_without_input_pixels_passes_no_gradient_anywhere():
    """Kernel 2 at dilation 2 with padding 1 over one input row: each window reads only padding,
    outputs -inf, and has its switch (PyTorch's rule) one row past the plane. Its gradient must
    not land in another plane or outside the input."""
    x = mv.tensor(np.ones((2, 2, 1, 3)), requires_grad=True)
    out = F.max_pool2d(x, (2, 1), stride=1, padding=(1, 0), dilation=(2, 1))
    assert np.all(out.numpy() == -np.inf)
    out.backward(mv.tensor(np.ones(out.shape)))
    np.testing.assert_array_equal(x.grad.numpy(), 0)


# ----------------------------------------------------------------- windows that hold no input pixel
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_a_window_of_padding_only_gives_torchs_value_and_switch_and_no_gradient(dtype, device):
    """Kernel 2 at dilation 3 with padding 1 over a 2x2 input: the one window reads positions
    -1 and 2 on each axis, padding only. Every dtype (float16 runs the reference) gives
    PyTorch's -inf and switch 6 (one past the plane), and a zero gradient."""
    x = mv.tensor(
        np.arange(4.0).reshape(1, 1, 2, 2), dtype=dtype, device=device, requires_grad=True
    )
    out, switches = F.max_pool2d(x, 2, stride=1, padding=1, dilation=3, return_indices=True)
    expected, expected_switches = torch.nn.functional.max_pool2d(
        torch.arange(4.0).reshape(1, 1, 2, 2),
        2,
        stride=1,
        padding=1,
        dilation=3,
        return_indices=True,
    )
    np.testing.assert_array_equal(out.numpy(), expected.numpy())
    np.testing.assert_array_equal(switches.numpy(), expected_switches.numpy())
    assert out.dtype == dtype
    out.backward(mv.tensor([[[[3.0]]]], dtype=dtype, device=device))
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((1, 1, 2, 2)))


# (N, C, H, W), kernel, padding, dilation: a 1x2 window reading columns -1 and 2 of a 3x2
# input; its switch h * 2 + 2 is pixel (h + 1, 0), which torch's CPU kernel sends the gradient to.
ALIASED = ((1, 2, 3, 2), (1, 2), (0, 1), (1, 3))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_a_window_of_padding_only_passes_no_gradient_to_the_pixel_its_switch_names(dtype, device):
    shape, kernel, padding, dilation = ALIASED
    x = mv.tensor(np.arange(12.0).reshape(shape), dtype=dtype, device=device, requires_grad=True)
    out, switches = F.max_pool2d(
        x, kernel, stride=1, padding=padding, dilation=dilation, return_indices=True
    )
    np.testing.assert_array_equal(
        switches.numpy()[:, :, :, 0], [[[2, 4, 6]] * 2]
    )  # torch's, kept for unpooling
    assert np.all(out.numpy() == -np.inf)
    out.backward(mv.tensor(np.full(out.shape, 5.0), dtype=dtype, device=device))
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros(shape))


@pytest.fixture
def gpu_kernels(monkeypatch):
    """NumPy float32 and float64 arrays through the (emulated) CUDA kernels, fast paths on."""
    from minivision.functional import _pool_fast

    cuda_emulation.emulate(monkeypatch)
    monkeypatch.setattr(_pool_fast, "cuda_kernels_apply", mv.dispatch.numba_kernels_apply)
    with mv.use_reference(False):
        yield


def test_the_gpu_kernels_drop_the_gradient_of_a_window_of_padding_only_too(gpu_kernels):
    """The same two cases through the (emulated) CUDA kernels: the same values, switches and
    zero gradient as on the CPU."""
    for shape, kernel, padding, dilation in [((1, 1, 2, 2), 2, 1, 3), ALIASED]:
        x = mv.tensor(np.arange(float(np.prod(shape))).reshape(shape), requires_grad=True)
        out, switches = F.max_pool2d(
            x, kernel, stride=1, padding=padding, dilation=dilation, return_indices=True
        )
        expected, expected_switches = torch.nn.functional.max_pool2d(
            torch.tensor(x.numpy()),
            kernel,
            stride=1,
            padding=padding,
            dilation=dilation,
            return_indices=True,
        )
        np.testing.assert_array_equal(out.numpy(), expected.numpy())
        np.testing.assert_array_equal(switches.numpy(), expected_switches.numpy())
        out.backward(mv.tensor(np.full(out.shape, 5.0)))
        np.testing.assert_array_equal(x.grad.numpy(), np.zeros(shape))


@given(case=pool_cases(), dilation=st.tuples(st.integers(1, 4), st.integers(1, 4)))
def test_windows_reading_input_by_brute_force(case, dilation):
    """Window (i, j) holds an input pixel iff one of the rows and one of the columns it reads lie in the input."""
    kw = dict(pool_args(case), dilation=dilation)
    in_hw = case["shape"][2:]
    assume(
        all(
            n + 2 * p >= d * (k - 1) + 1
            for n, p, d, k in zip(in_hw, kw["padding"], dilation, kw["kernel_size"])
        )
    )
    win, out_hw = pool_module._pool_windows(
        "max_pool2d",
        np.zeros(case["shape"]),
        kw["kernel_size"],
        kw["stride"],
        kw["padding"],
        dilation,
        kw["ceil_mode"],
    )
    reads = [
        [any(0 <= i * s - p + t * d < n for t in range(k)) for i in range(o)]
        for n, k, s, p, d, o in zip(in_hw, *win, out_hw)
    ]
    np.testing.assert_array_equal(
        pool_module._windows_reading_input(win, in_hw, out_hw), np.logical_and.outer(*reads)
    )


# ----------------------------------------------------------------- empty batches and zero channels
POOLS = {  # each written once for minivision's and torch's functional modules
    "max_pool2d 3x3/2": lambda F, x: F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True),
    "max_pool2d 2x2": lambda F, x: F.max_pool2d(x, 2),
    "max_pool2d switches": lambda F, x: F.max_pool2d(
        x, 3, stride=1, padding=1, return_indices=True
    )[0],
    "max_pool2d then unpool": lambda F, x: F.max_unpool2d(
        *F.max_pool2d(x, 2, return_indices=True), 2, output_size=x.shape[2:]
    ),
    "avg_pool2d": lambda F, x: F.avg_pool2d(x, 2, padding=1, count_include_pad=False),
}


@pytest.mark.parametrize("route", ["cpu", "gpu kernels", DEVICES[1]])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("op", POOLS.values(), ids=POOLS.keys())
def test_pools_take_an_empty_batch_and_zero_channels(op, dtype, route, request):
    """N = 0 or C = 0, forward and backward, float16 (the reference) included, on the Numba
    kernels, the (emulated) CUDA ones or a GPU: the shapes and dtype torch gives for N = 0
    (torch refuses C = 0, so that case has its shape with the two axes swapped)."""
    if route == "gpu kernels":  # NumPy float32 through the CUDA kernels
        request.getfixturevalue("gpu_kernels")
    device = "cuda" if route == "cuda" else "cpu"
    expected = op(
        torch.nn.functional, torch.zeros((0, 2, 5, 5), dtype=getattr(torch, np.dtype(dtype).name))
    )
    for shape, out_shape in [
        ((0, 2, 5, 5), tuple(expected.shape)),
        ((2, 0, 5, 5), (2, 0) + tuple(expected.shape[2:])),
    ]:
        x = mv.tensor(np.zeros(shape), dtype=dtype, device=device, requires_grad=True)
        out = op(F, x)
        assert out.shape == out_shape and out.dtype == dtype
        out.backward(mv.tensor(np.zeros(out_shape), dtype=dtype, device=device))
        assert x.grad.shape == shape and x.grad.dtype == dtype
