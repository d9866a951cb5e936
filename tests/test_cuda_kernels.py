"""The CUDA kernels, run on the CPU by tests/cuda_emulation.py, against their CPU twins.

Each kernel's source is checked by NVRTC (where the nvidia-cuda-nvrtc wheel is installed)
and run through its Python wrapper on NumPy arrays. Where the CPU and the GPU kernel do
the same arithmetic in the same order (switches, NMS, IoU, col2im's sums), the results
must be equal to the bit. The last tests route whole ops through the GPU kernels.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minivision as mv
import minivision.functional as F
from minivision import _cuda, optim
from minivision.dispatch import numba_kernels_apply
from minivision.functional import _im2col_cuda, _norm_cuda, _norm_kernels, _pool_cuda, _pool_fast
from minivision.functional import _winograd as winograd
from minivision.functional import im2col as im2col_module
from minivision.functional import norm as norm_module
from minivision.functional._geometry import Windows, output_hw
from minivision.models import MODELS
from minivision.ops import _cpu_kernels, _cuda_kernels, _nms_cuda
from tests import cuda_emulation
from tests.cuda_emulation import EmulatedKernel
from tests.models.common import shapes_batch


@pytest.fixture(autouse=True)
def emulated(monkeypatch):
    cuda_emulation.emulate(monkeypatch)


@st.composite
def windows_cases(draw, pooling=False):
    """A window geometry, an input (N, C, H, W) it fits and, for im2col, a band of output rows."""
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    win = Windows(
        kernel,
        (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        tuple(draw(st.integers(0, k // 2 if pooling else k)) for k in kernel),
        (draw(st.integers(1, 2)), draw(st.integers(1, 2))),
    )
    shape = (
        draw(st.integers(1, 3)),
        draw(st.integers(1, 3)),
        draw(st.integers(1, 9)),
        draw(st.integers(1, 9)),
    )
    reach = [d * (k - 1) + 1 for k, d in zip(win.kernel, win.dilation)]
    assume(all(n + 2 * p >= r for n, p, r in zip(shape[2:], win.padding, reach)))
    out_hw = output_hw("test", shape, *win, ceil_mode=pooling and draw(st.booleans()))
    first = draw(st.integers(0, out_hw[0] - 1))
    rows = slice(first, draw(st.integers(first + 1, out_hw[0])))
    return win, shape, out_hw, rows, draw(st.sampled_from([np.float32, np.float64]))


def _data(shape, dtype, seed, ties=False):
    rng = np.random.default_rng(seed)
    values = rng.integers(-3, 4, shape) if ties else rng.standard_normal(shape)
    return values.astype(dtype)


# ----------------------------------------------------------------- im2col and col2im
@given(windows_cases(), st.integers(0, 2**16))
def test_im2col_equals_the_cpu(case, seed):
    win, shape, out_hw, rows, dtype = case
    x = _data(shape, dtype, seed)
    np.testing.assert_array_equal(
        _im2col_cuda.im2col(x, win, rows, out_hw[1]), im2col_module.im2col(x, win, rows, out_hw[1])
    )


@given(windows_cases(), st.integers(0, 2**16))
def test_col2im_equals_the_cpu_to_the_bit(case, seed):
    win, shape, out_hw, rows, dtype = case
    band = rows.stop - rows.start
    cols = _data(
        (shape[1] * win.kernel[0] * win.kernel[1], shape[0] * band * out_hw[1]), dtype, seed
    )
    windows = cols.reshape(shape[1], *win.kernel, shape[0], band, out_hw[1]).transpose(
        3, 0, 1, 2, 4, 5
    )
    expected, got = (
        _data(shape, dtype, seed + 1),
        _data(shape, dtype, seed + 1),
    )  # both add onto the same values
    im2col_module.col2im_add(expected, windows, win, rows)
    _im2col_cuda.col2im_add(got, windows, win, rows)
    np.testing.assert_array_equal(got, expected)


def test_col2im_into_a_strided_target(rng):
    win = Windows((3, 3), (2, 2), (1, 1), (1, 1))
    cols = rng.standard_normal((2 * 9, 2 * 3 * 3))
    windows = cols.reshape(2, 3, 3, 2, 3, 3).transpose(3, 0, 1, 2, 4, 5)
    base = rng.standard_normal((2, 4, 6, 6))
    expected, got = base[:, ::2].copy(), base.copy()
    im2col_module.col2im_add(expected, windows, win, slice(0, 3))
    _im2col_cuda.col2im_add(got[:, ::2], windows, win, slice(0, 3))
    np.testing.assert_array_equal(got[:, ::2], expected)
    np.testing.assert_array_equal(got[:, 1::2], base[:, 1::2])


# ----------------------------------------------------------------- max pooling
@given(windows_cases(pooling=True), st.integers(0, 2**16), st.booleans())
def test_max_pool_switches_and_gradient_equal_the_cpu(case, seed, special):
    win, shape, out_hw, _, dtype = case
    x = _data(shape, dtype, seed, ties=True)
    if special:  # NaN and -inf, where the first-maximum and NaN rules decide
        x.reshape(-1)[::5] = -np.inf
        x.reshape(-1)[1::7] = np.nan
    values, switches = _pool_cuda.max_pool_switches(x, win, out_hw)
    expected_values, expected_switches = _pool_fast.max_pool2d(x, win, out_hw)
    np.testing.assert_array_equal(values, expected_values)
    np.testing.assert_array_equal(switches, expected_switches)
    grad = _data(values.shape, dtype, seed + 1)
    # A window that holds no input pixel (padding and dilation can make one) outputs -inf. Its
    # switch lies outside the window; max_pool2d marks such windows so that no device sends it a
    # gradient, and the raw kernels compared here are fed none.
    grad[_pool_fast.max_pool2d(np.zeros(shape, dtype), win, out_hw)[0] == -np.inf] = 0
    np.testing.assert_array_equal(
        _pool_cuda.max_pool_backward(grad, switches, win, shape),
        _pool_fast.max_pool2d_backward(grad, switches, shape),
    )


def test_unpool_scatter_and_gather_equal_the_cpu(rng):
    values = rng.standard_normal((2, 3, 4, 5))
    index = np.stack([rng.permutation(7 * 9)[:20] for _ in range(6)]).reshape(
        2, 3, 4, 5
    )  # distinct per plane
    scattered = _pool_cuda.scatter(values, index, (2, 3, 7, 9))
    np.testing.assert_array_equal(scattered, _pool_fast.max_unpool2d(values, index, (2, 3, 7, 9)))
    np.testing.assert_array_equal(_pool_cuda.gather(scattered, index), values)


# ----------------------------------------------------------------- batch norm
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape", [(3, 2, 5, 7), (6, 3), (4, 3, 9, 11)]
)  # the last: more values than threads
def test_batch_norm_kernels_equal_the_cpu(shape, dtype, rng):
    x, grad = (rng.standard_normal(shape).astype(dtype) + 2 for _ in range(2))
    vectors = [rng.standard_normal(shape[1]).astype(dtype) for _ in range(5)]
    mean, var = _norm_cuda.moments(x)
    expected_mean, expected_var = _norm_kernels.moments(x)
    precision = dict(
        rtol=1e-6 if dtype == np.float32 else 1e-13, atol=0
    )  # float64 sums in another order
    assert mean.dtype == var.dtype == dtype
    np.testing.assert_allclose(mean, expected_mean, **precision)
    np.testing.assert_allclose(var, expected_var, **precision)
    for got, expected in zip(
        _norm_cuda.gradient_sums(grad, x, *vectors[:2]),
        _norm_kernels.gradient_sums(grad, x, *vectors[:2]),
    ):
        np.testing.assert_allclose(got, expected, **precision)
    np.testing.assert_array_equal(
        _norm_cuda.affine(x, *vectors[:2]), _norm_kernels.affine(x, *vectors[:2])
    )
    np.testing.assert_array_equal(
        _norm_cuda.input_gradient(grad, x, *vectors),
        _norm_kernels.input_gradient(grad, x, *vectors),
    )


# ----------------------------------------------------------------- boxes
def _boxes(rng, n, dtype):
    corner = rng.uniform(0, 60, (n, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0, 30, (n, 2))], axis=1).round(
        1
    )  # rounded: exact ties
    boxes[::11, 2] = boxes[::11, 0]  # zero width
    return boxes.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_iou_matrix_equals_the_cpu_to_the_bit(dtype, rng):
    a, b = _boxes(rng, 70, dtype), _boxes(rng, 45, dtype)
    got = _cuda_kernels.iou_matrix(a, b)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, _cpu_kernels.iou_matrix(a, b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matched_iou_equals_the_cpu_to_the_bit(dtype, rng):
    a, b = _boxes(rng, 300, dtype), _boxes(rng, 300, dtype)
    b[::3] = a[::3] + 0.5  # overlapping partners, so few IoUs are 0
    got = _cuda_kernels.matched_iou(a, b)
    assert got.dtype == dtype and (got > 0).sum() >= 100
    np.testing.assert_array_equal(got, _cpu_kernels.matched_iou(a, b))


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 1.0])
def test_nms_keeps_the_cpu_indices(grouped, threshold, rng):
    n = 200  # four blocks of 64, the last one partial
    boxes = _boxes(rng, n, np.float32)
    scores = rng.integers(0, 20, n).astype(np.float32)  # many equal scores
    groups = rng.integers(0, 3, n) if grouped else None
    expected = (
        mv.ops.batched_nms(boxes, scores, groups, threshold)
        if grouped
        else mv.ops.nms(boxes, scores, threshold)
    )
    order = np.argsort(-scores, kind="stable")
    got = _nms_cuda.nms(
        boxes, order, np.zeros(n, np.int64) if groups is None else groups, threshold
    )
    np.testing.assert_array_equal(got, expected)


# ----------------------------------------------------------------- whole ops on the GPU kernels
def _route_to_gpu_kernels(monkeypatch, on=True, modules=(im2col_module, _pool_fast, norm_module)):
    """Make ``modules`` send NumPy float arrays to their CUDA kernels (emulated), or not (``on=False``)."""
    for module in modules:
        monkeypatch.setattr(
            module, "cuda_kernels_apply", lambda array: on and numba_kernels_apply(array)
        )


@pytest.fixture
def gpu_kernels(monkeypatch):
    """NumPy float arrays through the CUDA kernels (emulated), Winograd off (NumPy only)."""
    _route_to_gpu_kernels(monkeypatch)
    monkeypatch.setattr(winograd, "_enabled", False)


OPS = {
    "conv2d 3x3": (lambda x, w: F.conv2d(x, w, padding=1), (2, 3, 6, 7), (4, 3, 3, 3)),
    "conv2d 3x3/2 dilated": (
        lambda x, w: F.conv2d(x, w, stride=2, padding=2, dilation=2),
        (2, 3, 7, 7),
        (4, 3, 3, 3),
    ),
    "conv_transpose2d 3x3/2": (
        lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1),
        (2, 4, 4, 5),
        (4, 3, 3, 3),
    ),
    "batch_norm (training)": (
        lambda x, w: F.batch_norm(x, None, None, w.reshape(3), None, training=True),
        (2, 3, 2, 1),
        (3, 1, 1, 1),
    ),
    "max_pool2d 3x3/2 (overlapping)": (
        lambda x, w: F.max_pool2d(x * w.sum(), 3, 2, padding=1, ceil_mode=True),
        (2, 3, 7, 6),
        (1, 1, 1, 1),
    ),
    "max_pool2d 2x2 then unpool": (
        lambda x, w: F.max_unpool2d(
            *F.max_pool2d(x * w.sum(), 2, return_indices=True), 2, output_size=x.shape[2:]
        ),
        (2, 3, 7, 6),
        (1, 1, 1, 1),
    ),
}


@pytest.mark.parametrize("name", list(OPS))
def test_ops_on_the_gpu_kernels_match_and_pass_gradcheck(name, gpu_kernels, rng):
    fn, x_shape, w_shape = OPS[name]
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    inputs = [mv.tensor(x, requires_grad=True), mv.tensor(w, requires_grad=True)]
    mv.gradcheck(fn, inputs)
    got = fn(*inputs).numpy()
    with pytest.MonkeyPatch.context() as cpu:
        _route_to_gpu_kernels(cpu, on=False)
        np.testing.assert_allclose(
            got, fn(mv.tensor(x), mv.tensor(w)).numpy(), rtol=1e-12, atol=1e-12
        )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tiny_models_on_the_gpu_kernels_give_the_cpu_loss_and_gradients(name, monkeypatch):
    """Every lecture model, its convolutions and pools on the (emulated) CUDA kernels, against
    the CPU's kernels with Winograd off: the kernels add in the CPU's order, and BLAS does the
    products in both runs, so loss and gradients are equal to the bit."""
    images, targets = shapes_batch(2, image_size=64, max_objects=2)
    monkeypatch.setattr(winograd, "_enabled", False)
    results = []
    for on_gpu_kernels in (False, True):
        _route_to_gpu_kernels(monkeypatch, on_gpu_kernels, modules=(im2col_module, _pool_fast))
        mv.manual_seed(0)
        model = MODELS[name].tiny(3, 64)
        loss = model.loss(images, targets)
        loss.backward()
        results.append(
            {
                "loss": np.array(loss.item()),
                **{n: p.grad.numpy() for n, p in model.named_parameters()},
            }
        )
    for key, expected in results[0].items():
        np.testing.assert_array_equal(results[1][key], expected, err_msg=f"{name} {key}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_the_adam_kernel_steps_like_the_array_code_to_the_bit(
    weight_decay, dtype, monkeypatch, rng
):
    start = rng.standard_normal((5, 7)).astype(dtype)
    finals = []
    for on_gpu_kernels in (False, True):
        monkeypatch.setattr(optim, "cuda_kernels_apply", lambda array, on=on_gpu_kernels: on)
        weight = mv.tensor(start.copy(), requires_grad=True)
        opt = optim.Adam([weight], lr=0.05, weight_decay=weight_decay)
        for _ in range(4):
            opt.zero_grad()
            (weight * weight * weight).sum().backward()
            opt.step()
        state = opt.state[id(weight)]
        finals.append([weight.numpy(), state["exp_avg"], state["exp_avg_sq"]])
    for got, expected in zip(finals[1], finals[0]):
        np.testing.assert_array_equal(got, expected)


def test_a_grid_too_small_for_the_work_strides_over_all_of_it(monkeypatch, rng):
    """One block: every thread's grid-stride loop runs many times (the usual grids never loop)."""
    monkeypatch.setattr(_cuda, "MAX_BLOCKS", 1)
    win = Windows((3, 3), (2, 2), (1, 1), (1, 1))
    x = rng.standard_normal((2, 3, 9, 8))
    np.testing.assert_array_equal(
        _im2col_cuda.im2col(x, win, slice(0, 5), 4), im2col_module.im2col(x, win, slice(0, 5), 4)
    )
    windows = (
        rng.standard_normal((3 * 9, 2 * 5 * 4))
        .reshape(3, 3, 3, 2, 5, 4)
        .transpose(3, 0, 1, 2, 4, 5)
    )
    expected, got = x.copy(), x.copy()
    im2col_module.col2im_add(expected, windows, win, slice(0, 5))
    _im2col_cuda.col2im_add(got, windows, win, slice(0, 5))
    np.testing.assert_array_equal(got, expected)
    values, switches = _pool_cuda.max_pool_switches(x, win, (5, 4))
    np.testing.assert_array_equal(switches, _pool_fast.max_pool2d(x, win, (5, 4))[1])
    np.testing.assert_array_equal(
        _pool_cuda.max_pool_backward(values, switches, win, x.shape),
        _pool_fast.max_pool2d_backward(values, switches, x.shape),
    )


def test_empty_inputs_launch_nothing(rng):
    """A GPU refuses a grid of no blocks (the emulator too): wrappers return early instead."""
    assert _norm_cuda.moments(np.zeros((2, 0, 3)))[0].shape == (0,)
    assert _norm_cuda.gradient_sums(
        np.zeros((2, 0, 3)), np.zeros((2, 0, 3)), np.zeros(0), np.zeros(0)
    )[1].shape == (0,)
    assert _nms_cuda.nms(
        np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, np.int64), 0.5
    ).shape == (0,)
    assert _cuda_kernels.iou_matrix(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)


# ----------------------------------------------------------------- the emulator's own checks
def test_a_wrong_argument_type_fails_to_launch():
    kernel = EmulatedKernel(
        f"typedef float T;\n{_cuda.PRELUDE}\n"
        + r"""
extern "C" __global__ void fill(const long long count, const int value, T* out) {
    FOR_EACH(k, count) out[k] = value;
}""",
        "fill",
    )
    out = np.zeros(5, np.float32)
    kernel((1,), (8,), (np.int64(5), np.int32(3), out))
    np.testing.assert_array_equal(out, 3)
    with pytest.raises(RuntimeError, match="argument 1 is passed as long long"):
        kernel((1,), (8,), (np.int64(5), np.int64(3), out))
    with pytest.raises(ValueError, match="not C-contiguous"):
        kernel((1,), (8,), (np.int64(5), np.int32(3), np.zeros(10, np.float32)[::2]))
    with pytest.raises(TypeError, match="NumPy scalars"):
        kernel((1,), (8,), (5, np.int32(3), out))
    for grid, block in (((0,), (8,)), ((1, 70000), (8,)), ((1,), (2048,))):
        with pytest.raises(ValueError, match="no GPU launches grid"):
            kernel(grid, block, (np.int64(5), np.int32(3), out))


def test_a_block_syncs_as_one_and_threads_at_different_barriers_are_reported():
    kernel = EmulatedKernel(
        r"""
extern "C" __global__ void reverse(const int* x, int* out) {  // through shared memory: needs the barrier
    __shared__ int staged[64];
    staged[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = staged[blockDim.x - 1 - threadIdx.x];
}""",
        "reverse",
    )
    x, out = np.arange(128, dtype=np.int32), np.zeros(128, np.int32)
    kernel((2,), (64,), (x, out))
    np.testing.assert_array_equal(out, np.concatenate([x[:64][::-1], x[64:][::-1]]))
    diverging = EmulatedKernel(
        r"""
extern "C" __global__ void halves(int* out) {
    if (threadIdx.x < 3) {
        __syncthreads();
        out[threadIdx.x] = 1;
    } else {
        __syncthreads();
        out[threadIdx.x] = 2;
    }
}""",
        "halves",
    )
    with pytest.raises(
        RuntimeError,
        match="halves: the threads of a block wait at different __syncthreads "
        r"\(one at line 7 of its source\)",
    ):
        diverging((1,), (8,), (np.zeros(8, np.int32),))


def test_accesses_out_of_bounds_are_reported_or_poisoned():
    shift = EmulatedKernel(
        f"typedef float T;\n{_cuda.PRELUDE}\n"
        + r"""
extern "C" __global__ void shift(const long long count, const int by, const T* x, T* out) {
    FOR_EACH(k, count) out[k + by] = x[k - by];
}""",
        "shift",
    )
    x, out = np.arange(6, dtype=np.float32), np.zeros(6, np.float32)
    shift((1,), (8,), (np.int64(6), np.int32(0), x, out))
    np.testing.assert_array_equal(out, x)
    with pytest.raises(
        RuntimeError,
        match=r"shift: argument 3 \(shape \(6,\)\) was written out of bounds, past its end",
    ):
        shift((1,), (8,), (np.int64(6), np.int32(1), x, out))
    with pytest.raises(RuntimeError, match="argument 3 .* before its start"):
        shift((1,), (8,), (np.int64(6), np.int32(-1), x, out))
    read_before = np.zeros(7, np.float32)  # out[k + 1] = x[k - 1]: x[-1] is read, out has room
    shift((1,), (8,), (np.int64(6), np.int32(1), x, read_before))
    assert np.isnan(read_before[1]) and read_before[2:].tolist() == x[:5].tolist()
    np.testing.assert_array_equal(x, np.arange(6))  # the input is as it was


def test_results_that_depend_on_the_threads_order_are_reported_as_a_race():
    source = (
        f"typedef float T;\n{_cuda.PRELUDE}\n"
        + r"""
extern "C" __global__ void last_wins(const long long count, const T* x, T* out) {
    FOR_EACH(k, count) out[k / 4] = x[k];  // four threads write each element
}"""
    )
    x, out = np.arange(8, dtype=np.float32), np.zeros(2, np.float32)
    with pytest.raises(
        RuntimeError,
        match="last_wins: argument 2 depends on the order the threads run in: a data race",
    ):
        EmulatedKernel(source, "last_wins")((1,), (8,), (np.int64(8), x, out))
    EmulatedKernel(source, "last_wins", both_orders=False)((1,), (8,), (np.int64(8), x, out))
    assert out.tolist() == [3, 7]  # one order, no check: the last thread in order wins


def test_nvrtc_rejects_what_cupy_could_not_compile():
    if not cuda_emulation.nvrtc_available():
        pytest.skip("the nvidia-cuda-nvrtc wheel is not installed (Linux x86_64 only)")
    with pytest.raises(RuntimeError, match='identifier "INFINITY" is undefined'):
        cuda_emulation.nvrtc_check(
            'extern "C" __global__ void f(float* x) { x[0] = INFINITY; }', "f", ()
        )
