"""Max pooling with switches, max unpooling and average pooling over (N, C, H, W).

Switches follow PyTorch: per (n, c) plane, the flat index ``h * W + w`` into the unpadded
input of each window's maximum, the first maximum in row-major window order on ties.
Max pooling is then a gather at the switches (its gradient scatters back to them) and
max unpooling a scatter to them (its gradient gathers). The switches, scatters and
gathers are Numba loops over planes on the CPU and CUDA kernels on the GPU
(``_pool_cuda``, where the pooling gradient is a deterministic gather per input pixel);
float16 takes the same ops written with ``xp``.

Adaptive pooling fixes the output size instead of the window: bin ``i`` of ``out`` along an
axis of ``n`` pixels covers ``[floor(i * n / out), ceil((i + 1) * n / out))`` (PyTorch's bins,
which overlap by a pixel where ``out`` does not divide ``n``). Its max pooling gathers each
bin's pixels and takes the first maximum, giving max_pool2d's switches; its average pooling
is linear and separable, a matrix of bin means on each side.
"""
from __future__ import annotations

import numbers

import numpy as np

from minivision import threads
from minivision.backend import cuda_kernels_apply, get_array_module, numba_kernels_apply, to_numpy
from minivision.functional import _pool_cuda
from minivision.functional import _pool_kernels as kernels
from minivision.functional._geometry import Windows, accepts_unbatched, check_nchw, output_hw, pair, raw
from minivision.functional.im2col import col2im_add, read_padded, sliding_windows
from minivision.tensor import Function, Tensor


def _kernel_and_stride(kernel_size, stride):
    """Parsed (kernel, stride) pairs; no stride (None or empty, as PyTorch allows) means the kernel."""
    kernel = pair(kernel_size, "kernel_size", 1)
    return kernel, kernel if stride is None or stride == [] or stride == () else pair(stride, "stride", 1)


def _pool_windows(op: str, input, kernel_size, stride, padding, dilation=1, ceil_mode=False):
    """Parse a pooling op's size arguments (stride defaults to the kernel) and its output size."""
    check_nchw(input, op)
    kernel, stride = _kernel_and_stride(kernel_size, stride)
    padding, dilation = pair(padding, "padding"), pair(dilation, "dilation", 1)
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{op}: padding must be at most half of kernel_size, got padding={padding}, kernel_size={kernel}")
    win = Windows(kernel, stride, padding, dilation)
    return win, output_hw(op, input.shape, *win, ceil_mode=ceil_mode)


def _per_plane(kernel, planes) -> None:
    """kernel(share) for each worker's share (a slice) of the planes, on the worker threads."""
    threads.over_batch(planes, lambda share, _: kernel(share))


def _planes(a):
    """(N, C, ...) -> (N * C, prod(...)), contiguous, for the per-plane kernels; N or C may be 0."""
    xp = get_array_module(a)
    return xp.ascontiguousarray(a).reshape(a.shape[0] * a.shape[1], int(np.prod(a.shape[2:])))


# ----------------------------------------------------------------- switches
def _max_pool_switches(x, win: Windows, out_hw):
    """x (N, C, H, W) -> (maxima, switches), both (N, C, out_h, out_w)."""
    if cuda_kernels_apply(x):
        return _pool_cuda.max_pool_switches(x, win, out_hw)
    if not numba_kernels_apply(x):
        return _max_pool_switches_xp(x, win, out_hw)
    planes = np.ascontiguousarray(x).reshape((-1,) + x.shape[2:])
    out = np.empty((planes.shape[0],) + tuple(out_hw), dtype=x.dtype)
    switches = np.empty(out.shape, dtype=np.int64)
    shape = x.shape[:2] + out.shape[1:]
    # BEGIN FAST PATH pool
    if win == Windows((2, 2), (2, 2), (0, 0), (1, 1)):
        _per_plane(lambda p: kernels.max_pool_2x2_planes(planes[p], out[p], switches[p]), planes)
        return out.reshape(shape), switches.reshape(shape)
    # END FAST PATH pool
    _per_plane(lambda p: kernels.max_pool_planes(planes[p], *win.sizes(), out[p], switches[p]), planes)
    return out.reshape(shape), switches.reshape(shape)


def _max_pool_switches_xp(x, win: Windows, out_hw):
    """The same as the Numba kernel with array ops, one kernel offset at a time (float16)."""
    xp = get_array_module(x)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = win
    band = read_padded(x, win.input_span(0, 0, out_hw[0]), win.input_span(1, 0, out_hw[1]), fill=-np.inf)
    view = sliding_windows(band, win, out_hw)
    best = xp.full(x.shape[:2] + tuple(out_hw), -np.inf, dtype=x.dtype)
    offset = xp.full(best.shape, -1, dtype=np.int64)  # -1: nothing beat -inf
    for p in range(kh):
        for q in range(kw):
            value = view[:, :, p, q]
            better = (value > best) | xp.isnan(value)  # strict: the first maximum stays
            best = xp.where(better, value, best)
            offset = xp.where(better, p * kw + q, offset)
    top = xp.arange(out_hw[0]) * sh - ph
    left = xp.arange(out_hw[1]) * sw - pw
    # windows of -inf point at their first in-bounds position, as PyTorch's loop does
    first_p = (-(-xp.maximum(-top, 0) // dh))[:, None]
    first_q = (-(-xp.maximum(-left, 0) // dw))[None, :]
    p = xp.where(offset < 0, first_p, offset // kw)
    q = xp.where(offset < 0, first_q, offset % kw)
    return best, (top[:, None] + p * dh) * x.shape[3] + left[None, :] + q * dw


def _windows_reading_input(win: Windows, in_hw, out_hw) -> np.ndarray:
    """(out_h, out_w) bools: whether window (i, j) holds an input pixel. Padding and dilation
    can make one that holds none: its maximum is -inf and its switch (PyTorch's) lies outside it."""
    axes = []
    for n, k, s, p, d, o in zip(in_hw, *win, out_hw):
        start = np.arange(o) * s - p
        first = -(-np.maximum(-start, 0) // d)  # steps to the window's first position >= 0
        axes.append((first < k) & (start + first * d < n))
    return np.logical_and.outer(*axes)


# ----------------------------------------------------------------- scatter and gather
def _gather(source, index):
    """out[n, c, ...] = source[n, c].flat[index[n, c, ...]]: index's shape, source's dtype."""
    if cuda_kernels_apply(source):
        return _pool_cuda.gather(source, index)
    if not numba_kernels_apply(source):
        xp = get_array_module(source)
        return xp.take_along_axis(_planes(source), _planes(index), axis=1).reshape(index.shape)
    out = np.empty((index.shape[0] * index.shape[1], int(np.prod(index.shape[2:]))), dtype=source.dtype)
    source_planes, index_planes = _planes(source), _planes(index)
    _per_plane(lambda p: kernels.gather_planes(source_planes[p], index_planes[p], out[p]), index_planes)
    return out.reshape(index.shape)


def _scatter(values, index, shape, accumulate: bool):
    """An array of ``shape`` (N, C, H, W), zero but at ``index`` (per plane, flat), where it
    holds ``values``; summed where indices repeat when ``accumulate``, else the last wins
    (on the GPU: an unspecified one). With ``accumulate``, an index outside the plane is
    skipped, as the Numba kernel skips it."""
    if cuda_kernels_apply(values) and not accumulate:
        return _pool_cuda.scatter(values, index, shape)
    xp = get_array_module(values)
    out = xp.zeros((shape[0] * shape[1], shape[2] * shape[3]), dtype=values.dtype)
    vals, idx = _planes(values), _planes(index)
    if numba_kernels_apply(values):
        kernel = kernels.scatter_add_planes if accumulate else kernels.scatter_planes
        _per_plane(lambda p: kernel(vals[p], idx[p], out[p]), out)
    elif accumulate:  # float16
        valid = (idx >= 0) & (idx < out.shape[1])
        idx, vals = xp.where(valid, idx, 0), xp.where(valid, vals, 0)  # adding 0 changes nothing
        if xp is np:
            np.add.at(out, (np.arange(out.shape[0])[:, None], idx), vals)
        else:
            import cupyx  # CuPy arrays, so CuPy is present

            cupyx.scatter_add(out, (xp.arange(out.shape[0])[:, None], idx), vals)
    else:
        out[xp.arange(out.shape[0])[:, None], idx] = vals
    return out.reshape(shape)


class _GatherAtSwitches(Function):
    """out = x.flat[switches] per plane; the maxima, computed with the switches, come in as
    ``values`` to save a second pass. The gradient scatters (adds) back to the switches;
    on the GPU each input pixel gathers it from the windows ``win`` that reach it. A window
    that holds no input pixel depends on no input and passes no gradient (as PyTorch's CUDA
    kernel; its CPU one sends it to the switch, outside the window): its switch becomes -1.
    Without ``win`` (adaptive bins, each holding a pixel) the gradient always scatters."""

    def forward(self, x, switches=None, values=None, win=None):
        if win is not None:
            reads = _windows_reading_input(win, x.shape[2:], switches.shape[2:])
            if not reads.all():
                xp = get_array_module(switches)
                switches = xp.where(xp.asarray(reads), switches, -1)
        self.switches, self.x_shape, self.win = switches, x.shape, win
        return values

    def backward(self, grad):
        if self.win is not None and cuda_kernels_apply(grad):
            return _pool_cuda.max_pool_backward(grad, self.switches, self.win, self.x_shape)
        return _scatter(grad, self.switches, self.x_shape, accumulate=True)


class _ScatterToSwitches(Function):
    """out.flat[switches] = x per plane, zeros elsewhere; the gradient gathers from the switches."""

    def forward(self, x, switches=None, out_shape=None):
        self.switches = switches
        return _scatter(x, switches, out_shape, accumulate=False)

    def backward(self, grad):
        return _gather(grad, self.switches)


@accepts_unbatched
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """input (N, C, H, W) -> maxima (N, C, out_h, out_w), and with ``return_indices`` the
    switches (int64, same shape): flat ``h * W + w`` positions of the maxima in the input."""
    win, out_hw = _pool_windows("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)
    values, switches = _max_pool_switches(raw(input), win, out_hw)
    out = _GatherAtSwitches.apply(input, switches=switches, values=values, win=win)
    return (out, Tensor(switches)) if return_indices else out


def _unpool_size(input_shape, win: Windows, output_size) -> tuple[int, int]:
    """PyTorch's unpooled size: (H - 1) * stride - 2 * padding + kernel, or ``output_size``
    (2 or 4 numbers) when it lies strictly within one stride of that."""
    default = tuple((n - 1) * s - 2 * p + k for n, s, p, k in zip(input_shape[2:], win.stride, win.padding, win.kernel))
    if output_size is None:
        return default
    size = tuple(output_size)
    if len(size) not in (2, 4):
        raise ValueError(f"max_unpool2d: output_size must have 2 or 4 elements, got {output_size!r}")
    size = size[-2:]
    for dim, (want, base, s) in enumerate(zip(size, default, win.stride)):
        if not base - s < want < base + s:
            raise ValueError(
                f"max_unpool2d: invalid output_size {tuple(output_size)} (dim {dim} must be between "
                f"{base - s} and {base + s}, exclusive, for input of shape {tuple(input_shape)})"
            )
    return tuple(int(n) for n in size)


@accepts_unbatched
def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Put each value of input (N, C, h, w) at its switch in indices (N, C, h, w) of a zero
    (N, C, out_h, out_w) map; the inverse of ``max_pool2d(..., return_indices=True)``.
    Where indices repeat (overlapping windows), which value lands is unspecified, as in PyTorch."""
    check_nchw(input, "max_unpool2d")
    index = raw(indices)
    if not hasattr(index, "shape") or tuple(index.shape) != tuple(input.shape):
        shape = tuple(index.shape) if hasattr(index, "shape") else type(index).__name__
        raise ValueError(f"max_unpool2d: indices must have the input's shape {tuple(input.shape)}, got {shape}")
    if index.dtype.kind not in "iu":
        raise TypeError(f"max_unpool2d: indices must be integers (int64), got dtype {index.dtype}")
    kernel, stride = _kernel_and_stride(kernel_size, stride)
    win = Windows(kernel, stride, pair(padding, "padding"), (1, 1))
    out_hw = _unpool_size(input.shape, win, output_size)
    if min(out_hw) < 1:
        raise ValueError(f"max_unpool2d: the output would be {out_hw[0]}x{out_hw[1]} for input {tuple(input.shape)}")
    xp = get_array_module(raw(input), index)  # one device for both
    low, high = to_numpy(xp.stack([index.min(), index.max()])).tolist() if index.size else (0, 0)  # one copy
    if low < 0 or high >= out_hw[0] * out_hw[1]:
        raise ValueError(
            f"max_unpool2d: indices must lie in [0, {out_hw[0] * out_hw[1]}) for an output of {out_hw[0]}x{out_hw[1]}, "
            f"got values from {low} to {high}"
        )
    return _ScatterToSwitches.apply(input, switches=index.astype(np.int64, copy=False),
                                    out_shape=tuple(input.shape[:2]) + out_hw)


# ----------------------------------------------------------------- average pooling
def _avg_divisors(xp, in_hw, win: Windows, out_hw, count_include_pad, divisor_override):
    """(out_h, out_w) divisors, PyTorch's rule: the window clipped to the padded input, or to
    the input itself without ``count_include_pad``; ``divisor_override`` replaces both."""
    if divisor_override:
        return xp.asarray(float(divisor_override))
    counts = []
    for n, k, s, p, o in zip(in_hw, win.kernel, win.stride, win.padding, out_hw):
        start = np.arange(o) * s - p
        stop = np.minimum(start + k, n + p)
        if not count_include_pad:
            start, stop = np.maximum(start, 0), np.minimum(stop, n)
        counts.append(stop - start)
    return xp.asarray(np.outer(*counts).astype(np.float64))


class _AvgPool2d(Function):
    def forward(self, x, win=None, out_hw=None, divisors=None):
        self.win, self.x_shape = win, x.shape
        self.divisors = divisors.astype(x.dtype)
        band = read_padded(x, win.input_span(0, 0, out_hw[0]), win.input_span(1, 0, out_hw[1]))
        return sliding_windows(band, win, out_hw).sum(axis=(2, 3)) / self.divisors

    def backward(self, grad):
        xp = get_array_module(grad)
        share = grad / self.divisors  # every position of a window gets the same share
        windows = xp.broadcast_to(share[:, :, None, None], share.shape[:2] + self.win.kernel + share.shape[2:])
        grad_x = xp.zeros(self.x_shape, dtype=grad.dtype)
        col2im_add(grad_x, windows, self.win, slice(0, share.shape[2]))
        return grad_x


@accepts_unbatched
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """input (N, C, H, W) -> window means (N, C, out_h, out_w), zero padding counted unless
    ``count_include_pad=False``; ``divisor_override`` divides every window sum by itself."""
    win, out_hw = _pool_windows("avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and (not isinstance(divisor_override, int) or divisor_override <= 0):
        raise ValueError(f"avg_pool2d: divisor_override must be a positive int or None, got {divisor_override!r}")
    xp = get_array_module(raw(input))
    divisors = _avg_divisors(xp, input.shape[2:], win, out_hw, count_include_pad, divisor_override)
    return _AvgPool2d.apply(input, win=win, out_hw=out_hw, divisors=divisors)


# ----------------------------------------------------------------- adaptive pooling
def _adaptive_output_hw(op: str, input, output_size) -> tuple[int, int]:
    """(out_h, out_w) from PyTorch's ``output_size``: an int, or a pair whose entries may be
    None (keep the input's size on that axis)."""
    check_nchw(input, op)
    if min(input.shape[2:]) < 1:
        raise ValueError(f"{op}: input must have at least one row and one column, got shape {tuple(input.shape)}")
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(sizes) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair (out_h, out_w), got {output_size!r}")
    if not all(n is None or isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in sizes):
        raise TypeError(f"{op}: output_size must hold ints (or None to keep the input's size), got {output_size!r}")
    if any(n is not None and n < 1 for n in sizes):
        raise ValueError(f"{op}: output_size must be >= 1 in both dimensions, got {output_size!r}")
    return tuple(int(m if n is None else n) for n, m in zip(sizes, input.shape[2:]))


def _adaptive_bins(size: int, out: int):
    """(start, stop) arrays (out,): bin i covers input [floor(i * size / out), ceil((i + 1) * size / out))."""
    i = np.arange(out)
    return i * size // out, -(-(i + 1) * size // out)


def _adaptive_windows(in_hw, out_hw) -> np.ndarray:
    """(out_h * out_w, kh * kw) flat positions ``h * W + w`` of each bin's pixels in row-major
    order, kh x kw the largest bin. A smaller bin repeats its last row or column: a repeat
    comes after its original, so it moves neither the maximum nor which one comes first.
    Bins are at most ceil(n / out) + 1 wide, so this holds a few times the input or output."""
    rows, cols = (np.minimum(start[:, None] + np.arange((stop - start).max()), stop[:, None] - 1)
                  for start, stop in (_adaptive_bins(n, o) for n, o in zip(in_hw, out_hw)))
    return (rows[:, None, :, None] * in_hw[1] + cols[None, :, None, :]).reshape(out_hw[0] * out_hw[1], -1)


def _adaptive_max_switches(x, out_hw):
    """x (N, C, H, W) -> (maxima, switches), both (N, C, out_h, out_w): each bin's first maximum
    in row-major order, or its last NaN where it holds one, as max_pool2d picks them."""
    xp = get_array_module(x)
    index = xp.asarray(_adaptive_windows(x.shape[2:], out_hw))
    windows = _planes(x)[:, index]  # (N * C, out_h * out_w, kh * kw)
    nan = xp.isnan(windows)
    last_nan = nan.shape[2] - 1 - nan[:, :, ::-1].argmax(axis=2)
    pick = xp.where(nan.any(axis=2), last_nan, windows.argmax(axis=2))  # argmax: the first maximum
    values = xp.take_along_axis(windows, pick[:, :, None], axis=2)
    switches = index[xp.arange(index.shape[0]), pick]
    shape = x.shape[:2] + tuple(out_hw)
    return values.reshape(shape), switches.reshape(shape)


@accepts_unbatched
def adaptive_max_pool2d(input, output_size, return_indices=False):
    """input (N, C, H, W) -> bin maxima (N, C, out_h, out_w) for ``output_size`` (out_h, out_w),
    and with ``return_indices`` the switches (int64, same shape), as max_pool2d's."""
    out_hw = _adaptive_output_hw("adaptive_max_pool2d", input, output_size)
    values, switches = _adaptive_max_switches(raw(input), out_hw)
    out = _GatherAtSwitches.apply(input, switches=switches, values=values)
    return (out, Tensor(switches)) if return_indices else out


def _bin_means(size: int, out: int, xp, dtype):
    """(out, size) matrix whose row i averages bin i: 1 / (bin size) on the bin, 0 elsewhere."""
    start, stop = _adaptive_bins(size, out)
    pixel = np.arange(size)
    inside = (start[:, None] <= pixel) & (pixel < stop[:, None])
    return xp.asarray(inside / (stop - start)[:, None], dtype=dtype)


class _AdaptiveAvgPool2d(Function):
    """out = A_h @ x @ A_w^T per plane (a bin's mean is the mean over its rows of the means
    over its columns); the gradient is A_h^T @ grad @ A_w."""

    def forward(self, x, out_hw=None):
        xp = get_array_module(x)
        self.rows, self.cols = (_bin_means(n, o, xp, x.dtype) for n, o in zip(x.shape[2:], out_hw))
        return self.rows @ (x @ self.cols.T)

    def backward(self, grad):
        return self.rows.T @ (grad @ self.cols)


@accepts_unbatched
def adaptive_avg_pool2d(input, output_size):
    """input (N, C, H, W) -> bin means (N, C, out_h, out_w) for ``output_size`` (out_h, out_w)."""
    out_hw = _adaptive_output_hw("adaptive_avg_pool2d", input, output_size)
    return _AdaptiveAvgPool2d.apply(input, out_hw=out_hw)
