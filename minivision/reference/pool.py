"""Max pooling with switches, max unpooling and average pooling over (N, C, H, W) arrays.

A pooling window slides over each (n, c) plane: window (i, j) reads rows
``i * sh - ph + p * dh`` and columns ``j * sw - pw + q * dw`` for ``p < kh``, ``q < kw``
(kernel (kh, kw), stride (sh, sw), padding (ph, pw), dilation (dh, dw)). Positions outside
the input are padding. Every function here loops over the kh * kw positions of a window and
handles all windows of all planes at once with array operations.

The switches are PyTorch's: per (n, c) plane, the flat index ``h * W + w`` into the unpadded
input of each window's maximum. Max unpooling puts values back at the switches; the gradient
of max pooling goes back to them the same way.
"""

from __future__ import annotations

import numpy as np

from minivision.backend import get_array_module


def window_output_size(
    size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool = False
) -> int:
    """How many windows of ``kernel`` (spread by ``dilation``) fit along one padded axis.

    With ``ceil_mode`` a last, partial window counts, but only when it starts inside the
    input or the left padding (PyTorch's rule), never wholly in the right padding.
    May return < 1; callers turn that into their own error message.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    count = -(-span // stride) + 1
    if (count - 1) * stride >= size + padding:
        count -= 1
    return count


def _window_positions(
    size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool
) -> np.ndarray:
    """(out, kernel) int64: the input positions along one axis that each window reads, some
    of them outside [0, size) (padding). ``out`` is PyTorch's number of windows."""
    out = window_output_size(size, kernel, stride, padding, dilation, ceil_mode)
    return np.arange(out)[:, None] * stride - padding + np.arange(kernel)[None, :] * dilation


def _first_position_inside(positions: np.ndarray, dilation: int) -> np.ndarray:
    """(out,): each window's first position at or past 0 (it may lie past the input's end)."""
    start = positions[:, 0]
    return start + dilation * (-(start // dilation)).clip(0)


def max_pool2d(x, kernel, stride, padding, dilation, ceil_mode):
    """x (N, C, H, W) -> (maxima, switches), both (N, C, out_h, out_w), switches int64.

    maxima[n, c, i, j] is the largest input value in window (i, j); padding never wins.
    switches[n, c, i, j] is its position h * W + w: the first maximum in row-major window
    order, except that a NaN beats every number (and a later NaN an earlier one). A window
    whose input values are all -inf, or that holds padding only, has maximum -inf and
    points at its first position at or past row 0 and column 0 (as PyTorch's loop does).

    Lecture: segmentation, max unpooling with switches (pooling remembers where the max was).
    """
    xp = get_array_module(x)
    height, width = x.shape[2:]
    rows = _window_positions(height, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    cols = _window_positions(width, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    # BEGIN SOLUTION pool: write max_pool2d, each window's maximum and its switch h * W + w
    maxima = xp.full(x.shape[:2] + (len(rows), len(cols)), -np.inf, dtype=x.dtype)
    first = (
        _first_position_inside(rows, dilation[0])[:, None] * width
        + _first_position_inside(cols, dilation[1])[None, :]
    )
    switches = xp.broadcast_to(xp.asarray(first), maxima.shape)
    for p in range(kernel[0]):
        for q in range(kernel[1]):
            r, c = rows[:, p], cols[:, q]  # the window's (p, q) position, for every window
            inside = ((0 <= r) & (r < height))[:, None] & ((0 <= c) & (c < width))[None, :]
            value = x[:, :, r.clip(0, height - 1)][:, :, :, c.clip(0, width - 1)]
            # strictly greater: a tie keeps the first maximum
            better = xp.asarray(inside) & ((value > maxima) | xp.isnan(value))
            maxima = xp.where(better, value, maxima)
            switches = xp.where(better, xp.asarray(r[:, None] * width + c[None, :]), switches)
    # END SOLUTION pool
    return maxima, switches


def max_pool2d_backward(grad, switches, x_shape):
    """grad, switches (N, C, out_h, out_w) -> the input's gradient, of ``x_shape`` (N, C, H, W).

    Only a window's maximum decides its output, so window (i, j) sends grad[n, c, i, j] to
    the input pixel its switch names; where windows overlap and share a switch, their
    gradients add up. A switch of -1 (a window that holds no input pixel) passes nothing.

    Lecture: max unpooling with switches (the gradient of max pooling is an unpooling).
    """
    xp = get_array_module(grad)
    n, c, height, width = x_shape
    planes, windows = n * c, grad.shape[2] * grad.shape[3]
    # BEGIN SOLUTION pool: write max_pool2d_backward, the max-pool gradient added at the switches
    grad_x = xp.zeros((planes, height * width + 1), dtype=grad.dtype)  # the last slot takes the -1s
    plane = xp.arange(planes)[:, None]
    xp.add.at(grad_x, (plane, switches.reshape(planes, windows)), grad.reshape(planes, windows))
    return grad_x[:, :-1].reshape(x_shape)
    # END SOLUTION pool


def max_unpool2d(x, switches, out_hw):
    """x, switches (N, C, h, w) -> (N, C, out_h, out_w): zeros, but for each value of x at the
    flat position h * out_w + w its switch names. Where switches repeat, the last value in
    row-major order lands (NumPy's rule; which one is unspecified in CuPy and PyTorch).

    Lecture: max unpooling with switches.
    """
    xp = get_array_module(x)
    n, c = x.shape[:2]
    planes, values = n * c, x.shape[2] * x.shape[3]
    # BEGIN SOLUTION pool: write max_unpool2d, each value put back at its switch, zeros elsewhere
    out = xp.zeros((planes, out_hw[0] * out_hw[1]), dtype=x.dtype)
    out[xp.arange(planes)[:, None], switches.reshape(planes, values)] = x.reshape(planes, values)
    return out.reshape((n, c) + tuple(out_hw))
    # END SOLUTION pool


def max_unpool2d_backward(grad, switches):
    """grad (N, C, out_h, out_w), switches (N, C, h, w) -> the gradient of unpooling's input
    (N, C, h, w): each value came from one output position, so it gathers that one's gradient.

    Lecture: max unpooling with switches.
    """
    xp = get_array_module(grad)
    planes = grad.shape[0] * grad.shape[1]
    index = switches.reshape(planes, switches.shape[2] * switches.shape[3])
    source = grad.reshape(planes, grad.shape[2] * grad.shape[3])
    gathered = xp.take_along_axis(source, index, axis=1)
    return gathered.reshape(switches.shape)


def avg_pool_divisors(
    in_hw, kernel, stride, padding, out_hw, count_include_pad, divisor_override
) -> np.ndarray:
    """(out_h, out_w) float64: what each window's sum is divided by, PyTorch's rule. The
    window is clipped to the padded input (a window of ceil_mode hangs off it) and, without
    ``count_include_pad``, to the input itself; ``divisor_override`` replaces both."""
    if divisor_override:
        return np.full(tuple(out_hw), float(divisor_override))
    counts = []
    for n, k, s, p, o in zip(in_hw, kernel, stride, padding, out_hw):
        start = np.arange(o) * s - p
        stop = np.minimum(start + k, n + p)
        if not count_include_pad:
            start, stop = np.maximum(start, 0), np.minimum(stop, n)
        counts.append(stop - start)
    return np.outer(*counts).astype(np.float64)


def _padded_shape(x_shape, kernel, stride, padding, out_hw) -> tuple:
    """(N, C, H', W'): the input with ``padding`` zeros before it and enough after it that
    every window, ceil_mode's last ones included, lies inside."""
    sides = zip(x_shape[2:], kernel, stride, padding, out_hw)
    return tuple(x_shape[:2]) + tuple(max(n + 2 * p, (o - 1) * s + k) for n, k, s, p, o in sides)


def _window_view(padded, p: int, q: int, stride, out_hw):
    """(N, C, out_h, out_w) view of position (p, q) of every window of ``padded``."""
    (sh, sw), (out_h, out_w) = stride, out_hw
    return padded[:, :, p : p + (out_h - 1) * sh + 1 : sh, q : q + (out_w - 1) * sw + 1 : sw]


def avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """x (N, C, H, W) -> (N, C, out_h, out_w): each window's sum over the zero-padded input,
    divided by ``avg_pool_divisors`` (the window's size, by default).

    Lecture: segmentation (downsample for context).
    """
    xp = get_array_module(x)
    height, width = x.shape[2:]
    out_hw = tuple(
        window_output_size(n, k, s, p, 1, ceil_mode)
        for n, k, s, p in zip((height, width), kernel, stride, padding)
    )
    padded = xp.zeros(_padded_shape(x.shape, kernel, stride, padding, out_hw), dtype=x.dtype)
    padded[:, :, padding[0] : padding[0] + height, padding[1] : padding[1] + width] = x
    total = xp.zeros(x.shape[:2] + out_hw, dtype=x.dtype)
    for p in range(kernel[0]):
        for q in range(kernel[1]):
            total += _window_view(padded, p, q, stride, out_hw)
    divisors = avg_pool_divisors(
        x.shape[2:], kernel, stride, padding, out_hw, count_include_pad, divisor_override
    )
    return total / xp.asarray(divisors, dtype=x.dtype)


def avg_pool2d_backward(
    grad, x_shape, kernel, stride, padding, count_include_pad, divisor_override
):
    """grad (N, C, out_h, out_w) -> the input's gradient, of ``x_shape`` (N, C, H, W): every
    position of window (i, j) receives the same share grad[n, c, i, j] / divisor; where
    windows overlap, the shares add up. Padding's shares are dropped.

    Lecture: segmentation (downsample for context).
    """
    xp = get_array_module(grad)
    out_hw = tuple(grad.shape[2:])
    divisors = avg_pool_divisors(
        x_shape[2:], kernel, stride, padding, out_hw, count_include_pad, divisor_override
    )
    share = grad / xp.asarray(divisors, dtype=grad.dtype)
    padded = xp.zeros(_padded_shape(x_shape, kernel, stride, padding, out_hw), dtype=grad.dtype)
    for p in range(kernel[0]):
        for q in range(kernel[1]):
            _window_view(padded, p, q, stride, out_hw)[...] += share
    (ph, pw), (height, width) = padding, x_shape[2:]
    return padded[:, :, ph : ph + height, pw : pw + width].copy()
