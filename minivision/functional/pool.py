"""Max pooling with switches, max unpooling, average pooling and adaptive pooling over
(N, C, H, W), as differentiable ops.

The math of max and average pooling and of max unpooling is ``minivision.reference.pool``;
this module parses and checks the arguments and records the ops for backward. Max pooling
and unpooling take their fast paths (``_pool_fast``: Numba kernels on the CPU, CUDA kernels
on the GPU, float32 and float64) unless the reference switch is on (``minivision.dispatch``).

Switches follow PyTorch: per (n, c) plane, the flat index ``h * W + w`` into the unpadded
input of each window's maximum, the first maximum in row-major window order on ties.
Max pooling's gradient is then a scatter-add to the switches and max unpooling a scatter to
them (its gradient a gather).

Adaptive pooling fixes the output size instead of the window: bin ``i`` of ``out`` along an
axis of ``n`` pixels covers ``[floor(i * n / out), ceil((i + 1) * n / out))`` (PyTorch's bins,
which overlap by a pixel where ``out`` does not divide ``n``). Its max pooling gathers each
bin's pixels and takes the first maximum, giving max_pool2d's switches (and its gradient);
its average pooling is linear and separable, a matrix of bin means on each side.
"""

from __future__ import annotations

import numbers

import numpy as np

from minivision.backend import get_array_module, to_numpy

# isort: split
# BEGIN FAST PATH pool
from minivision.dispatch import fast_paths_enabled
from minivision.functional import _pool_fast as fast

# END FAST PATH pool
# isort: split
from minivision.functional._geometry import (
    Windows,
    accepts_unbatched,
    check_nchw,
    output_hw,
    pair,
    raw,
)
from minivision.reference import pool as reference
from minivision.tensor import Function


def _kernel_and_stride(kernel_size, stride):
    """Parsed (kernel, stride) pairs; no stride (None or empty, as PyTorch allows) means the kernel."""
    kernel = pair(kernel_size, "kernel_size", 1)
    return kernel, kernel if stride is None or stride == [] or stride == () else pair(
        stride, "stride", 1
    )


def _pool_windows(op: str, input, kernel_size, stride, padding, dilation=1, ceil_mode=False):
    """Parse a pooling op's size arguments (stride defaults to the kernel) and its output size."""
    check_nchw(input, op)
    kernel, stride = _kernel_and_stride(kernel_size, stride)
    padding, dilation = pair(padding, "padding"), pair(dilation, "dilation", 1)
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(
            f"{op}: padding must be at most half of kernel_size, got padding={padding}, kernel_size={kernel}"
        )
    win = Windows(kernel, stride, padding, dilation)
    return win, output_hw(op, input.shape, *win, ceil_mode=ceil_mode)


# ----------------------------------------------------------------- max pooling and unpooling
def _windows_reading_input(win: Windows, in_hw, out_hw) -> np.ndarray:
    """(out_h, out_w) bools: whether window (i, j) holds an input pixel. Padding and dilation
    can make one that holds none: its maximum is -inf and its switch (PyTorch's) lies outside it."""
    axes = []
    for n, k, s, p, d, o in zip(in_hw, *win, out_hw):
        start = np.arange(o) * s - p
        first = -(-np.maximum(-start, 0) // d)  # steps to the window's first position >= 0
        axes.append((first < k) & (start + first * d < n))
    return np.logical_and.outer(*axes)


def _unread_windows_marked(switches, win: Windows, in_hw):
    """``switches`` with -1 at the windows that hold no input pixel (``_windows_reading_input``)."""
    reads = _windows_reading_input(win, in_hw, switches.shape[2:])
    if reads.all():
        return switches
    xp = get_array_module(switches)
    return xp.where(xp.asarray(reads), switches, -1)


def _max_pool(x, win: Windows, out_hw, ceil_mode: bool):
    """x (N, C, H, W) -> (maxima, switches), both (N, C, out_h, out_w)."""
    # BEGIN FAST PATH pool
    if fast_paths_enabled() and fast.takes(x):
        return fast.max_pool2d(x, win, out_hw)
    # END FAST PATH pool
    return reference.max_pool2d(x, *win, ceil_mode)


def _max_pool_backward(grad, switches, x_shape, win: Windows | None = None):
    """grad (N, C, out_h, out_w) added at the switches into an input gradient of ``x_shape``;
    a switch of -1 passes nothing. ``win``: the pool's windows (None for adaptive bins)."""
    # BEGIN FAST PATH pool
    if fast_paths_enabled() and fast.takes_gradient(grad, win):
        return fast.max_pool2d_backward(grad, switches, x_shape, win)
    # END FAST PATH pool
    return reference.max_pool2d_backward(grad, switches, x_shape)


class _MaxPool2d(Function):
    """The window maxima, and the switches beside them (outside the graph); the gradient is
    added at the switches. A window that holds no input pixel depends on no input and passes
    no gradient (as PyTorch's CUDA kernel; its CPU one sends it to the switch, outside the
    window): its switch becomes -1 for the backward, the caller gets PyTorch's."""

    def forward(self, x, win=None, out_hw=None, ceil_mode=False):
        maxima, switches = _max_pool(x, win, out_hw, ceil_mode)
        self.switches = _unread_windows_marked(switches, win, x.shape[2:])
        self.x_shape, self.win = x.shape, win
        return maxima, switches

    def backward(self, grad):
        return _max_pool_backward(grad, self.switches, self.x_shape, self.win)


class _MaxUnpool2d(Function):
    """Zeros with each value at its switch; the gradient gathers from the switches."""

    def forward(self, x, switches=None, out_shape=None):
        self.switches = switches
        # BEGIN FAST PATH pool
        if fast_paths_enabled() and fast.takes(x):
            return fast.max_unpool2d(x, switches, out_shape)
        # END FAST PATH pool
        return reference.max_unpool2d(x, switches, out_shape[2:])

    def backward(self, grad):
        # BEGIN FAST PATH pool
        if fast_paths_enabled() and fast.takes(grad):
            return fast.max_unpool2d_backward(grad, self.switches)
        # END FAST PATH pool
        return reference.max_unpool2d_backward(grad, self.switches)


@accepts_unbatched
def max_pool2d(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    """input (N, C, H, W) -> maxima (N, C, out_h, out_w), and with ``return_indices`` the
    switches (int64, same shape): flat ``h * W + w`` positions of the maxima in the input."""
    win, out_hw = _pool_windows(
        "max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode
    )
    out, switches = _MaxPool2d.apply(input, win=win, out_hw=out_hw, ceil_mode=ceil_mode)
    return (out, switches) if return_indices else out


def _unpool_size(input_shape, win: Windows, output_size) -> tuple[int, int]:
    """PyTorch's unpooled size: (H - 1) * stride - 2 * padding + kernel, or ``output_size``
    (2 or 4 numbers) when it lies strictly within one stride of that."""
    default = tuple(
        (n - 1) * s - 2 * p + k
        for n, s, p, k in zip(input_shape[2:], win.stride, win.padding, win.kernel)
    )
    if output_size is None:
        return default
    size = tuple(output_size)
    if len(size) not in (2, 4):
        raise ValueError(
            f"max_unpool2d: output_size must have 2 or 4 elements, got {output_size!r}"
        )
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
        raise ValueError(
            f"max_unpool2d: indices must have the input's shape {tuple(input.shape)}, got {shape}"
        )
    if index.dtype.kind not in "iu":
        raise TypeError(f"max_unpool2d: indices must be integers (int64), got dtype {index.dtype}")
    kernel, stride = _kernel_and_stride(kernel_size, stride)
    win = Windows(kernel, stride, pair(padding, "padding"), (1, 1))
    out_hw = _unpool_size(input.shape, win, output_size)
    if min(out_hw) < 1:
        raise ValueError(
            f"max_unpool2d: the output would be {out_hw[0]}x{out_hw[1]} for input {tuple(input.shape)}"
        )
    xp = get_array_module(raw(input), index)  # one device for both
    low, high = (
        to_numpy(xp.stack([index.min(), index.max()])).tolist() if index.size else (0, 0)
    )  # one copy
    if low < 0 or high >= out_hw[0] * out_hw[1]:
        raise ValueError(
            f"max_unpool2d: indices must lie in [0, {out_hw[0] * out_hw[1]}) for an output of {out_hw[0]}x{out_hw[1]}, "
            f"got values from {low} to {high}"
        )
    return _MaxUnpool2d.apply(
        input,
        switches=index.astype(np.int64, copy=False),
        out_shape=tuple(input.shape[:2]) + out_hw,
    )


# ----------------------------------------------------------------- average pooling
class _AvgPool2d(Function):
    """The window means; every position of a window gets an equal share of its gradient."""

    def forward(self, x, win=None, ceil_mode=False, count_include_pad=True, divisor_override=None):
        self.x_shape, self.win = x.shape, win
        self.divisor = (count_include_pad, divisor_override)
        kernel, stride, padding, _ = win
        return reference.avg_pool2d(x, kernel, stride, padding, ceil_mode, *self.divisor)

    def backward(self, grad):
        kernel, stride, padding, _ = self.win
        return reference.avg_pool2d_backward(
            grad, self.x_shape, kernel, stride, padding, *self.divisor
        )


@accepts_unbatched
def avg_pool2d(
    input,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    """input (N, C, H, W) -> window means (N, C, out_h, out_w), zero padding counted unless
    ``count_include_pad=False``; ``divisor_override`` divides every window sum by itself."""
    win, _ = _pool_windows("avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and (
        not isinstance(divisor_override, int) or divisor_override <= 0
    ):
        raise ValueError(
            f"avg_pool2d: divisor_override must be a positive int or None, got {divisor_override!r}"
        )
    divisor = dict(count_include_pad=count_include_pad, divisor_override=divisor_override)
    return _AvgPool2d.apply(input, win=win, ceil_mode=ceil_mode, **divisor)


# ----------------------------------------------------------------- adaptive pooling
def _adaptive_output_hw(op: str, input, output_size) -> tuple[int, int]:
    """(out_h, out_w) from PyTorch's ``output_size``: an int, or a pair whose entries may be
    None (keep the input's size on that axis)."""
    check_nchw(input, op)
    if min(input.shape[2:]) < 1:
        raise ValueError(
            f"{op}: input must have at least one row and one column, got shape {tuple(input.shape)}"
        )
    sizes = (
        tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    )
    if len(sizes) != 2:
        raise ValueError(
            f"{op}: output_size must be an int or a pair (out_h, out_w), got {output_size!r}"
        )
    if not all(
        n is None or isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in sizes
    ):
        raise TypeError(
            f"{op}: output_size must hold ints (or None to keep the input's size), got {output_size!r}"
        )
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
    rows, cols = (
        np.minimum(start[:, None] + np.arange((stop - start).max()), stop[:, None] - 1)
        for start, stop in (_adaptive_bins(n, o) for n, o in zip(in_hw, out_hw))
    )
    return (rows[:, None, :, None] * in_hw[1] + cols[None, :, None, :]).reshape(
        out_hw[0] * out_hw[1], -1
    )


def _adaptive_max_pool(x, out_hw):
    """x (N, C, H, W) -> (maxima, switches), both (N, C, out_h, out_w): each bin's first maximum
    in row-major order, or its last NaN where it holds one, as max_pool2d picks them."""
    xp = get_array_module(x)
    index = xp.asarray(_adaptive_windows(x.shape[2:], out_hw))
    planes = x.reshape(x.shape[0] * x.shape[1], x.shape[2] * x.shape[3])
    windows = planes[:, index]  # (N * C, out_h * out_w, kh * kw)
    nan = xp.isnan(windows)
    last_nan = nan.shape[2] - 1 - nan[:, :, ::-1].argmax(axis=2)
    pick = xp.where(nan.any(axis=2), last_nan, windows.argmax(axis=2))  # argmax: the first maximum
    values = xp.take_along_axis(windows, pick[:, :, None], axis=2)
    switches = index[xp.arange(index.shape[0]), pick]
    shape = x.shape[:2] + tuple(out_hw)
    return values.reshape(shape), switches.reshape(shape)


class _AdaptiveMaxPool2d(_MaxPool2d):
    """The bin maxima and their switches; the gradient is added at the switches, as max_pool2d's."""

    def forward(self, x, out_hw=None):
        maxima, self.switches = _adaptive_max_pool(x, out_hw)
        self.x_shape, self.win = x.shape, None
        return maxima, self.switches


@accepts_unbatched
def adaptive_max_pool2d(input, output_size, return_indices=False):
    """input (N, C, H, W) -> bin maxima (N, C, out_h, out_w) for ``output_size`` (out_h, out_w),
    and with ``return_indices`` the switches (int64, same shape), as max_pool2d's."""
    out_hw = _adaptive_output_hw("adaptive_max_pool2d", input, output_size)
    out, switches = _AdaptiveMaxPool2d.apply(input, out_hw=out_hw)
    return (out, switches) if return_indices else out


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
