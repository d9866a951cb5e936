"""Nearest and bilinear upsampling of (N, C, H, W) arrays, as PyTorch's ``interpolate`` does it.

Both resize one axis at a time: output row i reads the input rows around a source position,
computed from i once per axis. Nearest copies row ``source[i]``; bilinear mixes rows
``lower[i]`` and ``upper[i]`` with weights ``1 - frac[i]`` and ``frac[i]``. Then the same
is done to the columns. The backward sends each output's gradient back to the rows it read,
with the same weights, adding where several outputs read one input row.

``scale`` (one per axis) is the ``scale_factor`` the caller gave, or None: PyTorch steps
through the input by ``1 / scale`` when it is given and by ``in_size / out_size`` otherwise.
"""

from __future__ import annotations

import numpy as np

from minivision.backend import get_array_module


def nearest_source(in_size: int, out_size: int, scale=None) -> np.ndarray:
    """(out_size,) int64: the input position output i copies, ``min(floor(i * step), in - 1)``
    with step = 1 / scale or in / out, in float32 as PyTorch's kernel computes it (so the
    same pixels are picked). Doubling is exact: output i copies input i // 2."""
    if out_size == in_size:
        return np.arange(out_size)
    if out_size == 2 * in_size:  # PyTorch's shortcut, whatever the scale_factor
        return np.arange(out_size) // 2
    step = np.float32(1.0 / scale) if scale else np.float32(in_size) / np.float32(out_size)
    position = np.floor(np.arange(out_size, dtype=np.float32) * step).astype(np.int64)
    return np.minimum(position, in_size - 1)


def bilinear_source(in_size: int, out_size: int, scale=None, align_corners: bool = False):
    """(lower, upper, frac), each (out_size,): output i is ``(1 - frac) * x[lower] + frac *
    x[upper]``, at source position ``i * (in - 1) / (out - 1)`` with ``align_corners`` (the
    corner pixels' centres map onto each other) or else ``(i + 0.5) * step - 0.5`` (pixel
    centres, step = 1 / scale or in / out), clamped at 0; output i of a same-size one at i."""
    if out_size == in_size:
        index = np.arange(out_size)
        return index, index, np.zeros(out_size)
    index = np.arange(out_size, dtype=np.float64)
    if align_corners:
        source = index * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        step = 1.0 / scale if scale else in_size / out_size
        source = np.maximum(step * (index + 0.5) - 0.5, 0.0)
    lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    upper = np.where(lower < in_size - 1, lower + 1, lower)
    return lower, upper, np.clip(source - lower, 0.0, 1.0)


def _along(vector, axis: int, like):
    """A host vector as an array on ``like``'s device and in its dtype, shaped to broadcast
    along ``axis`` of a 4-d array."""
    shape = [1, 1, 1, 1]
    shape[axis] = -1
    return get_array_module(like).asarray(vector, dtype=like.dtype).reshape(shape)


def _take(x, index, axis: int):
    """x's rows (axis 2) or columns (axis 3) ``index``, in that order."""
    xp = get_array_module(x)
    return xp.take(x, xp.asarray(index), axis=axis)


def _add_back(grad, index, size: int, axis: int):
    """The adjoint of ``_take``: an array with ``size`` rows (or columns) to which row k of
    ``grad`` is added at row index[k]."""
    xp = get_array_module(grad)
    moved = xp.moveaxis(grad, axis, 0)
    out = xp.zeros((size,) + moved.shape[1:], dtype=grad.dtype)
    xp.add.at(out, xp.asarray(index), moved)
    return xp.moveaxis(out, 0, axis)


def upsample_nearest2d(x, size, scales=(None, None)):
    """x (N, C, H, W) -> (N, C, out_h, out_w) for ``size`` (out_h, out_w): each output pixel
    copies the input pixel at its ``nearest_source`` row and column.

    Lecture: segmentation (upsample back to full resolution).
    """
    rows, cols = (nearest_source(n, o, s) for n, o, s in zip(x.shape[2:], size, scales))
    return _take(_take(x, cols, 3), rows, 2)


def upsample_nearest2d_backward(grad, in_hw, scales=(None, None)):
    """grad (N, C, out_h, out_w) -> the input's gradient (N, C, H, W): each input pixel sums
    the gradients of the output pixels that copied it.

    Lecture: segmentation (upsample back to full resolution).
    """
    rows, cols = (nearest_source(n, o, s) for n, o, s in zip(in_hw, grad.shape[2:], scales))
    return _add_back(_add_back(grad, rows, in_hw[0], 2), cols, in_hw[1], 3)


def _lerp(x, source, axis: int):
    """Linear interpolation along ``axis`` from ``bilinear_source``'s (lower, upper, frac)."""
    lower, upper, frac = source
    return _take(x, lower, axis) * _along(1.0 - frac, axis, x) + _take(x, upper, axis) * _along(
        frac, axis, x
    )


def _lerp_backward(grad, source, size: int, axis: int):
    """The adjoint of ``_lerp``: each output's gradient goes back to its lower and upper
    input rows (or columns) with their weights, adding up where rows are shared."""
    lower, upper, frac = source
    return _add_back(grad * _along(1.0 - frac, axis, grad), lower, size, axis) + _add_back(
        grad * _along(frac, axis, grad), upper, size, axis
    )


def upsample_bilinear2d(x, size, align_corners=False, scales=(None, None)):
    """x (N, C, H, W) -> (N, C, out_h, out_w) for ``size`` (out_h, out_w): linear
    interpolation between the two nearest columns (``bilinear_source``), then between the
    two nearest rows of that, so each output pixel mixes four input pixels.

    Lecture: segmentation (upsample back to full resolution).
    """
    rows, cols = (
        bilinear_source(n, o, s, align_corners) for n, o, s in zip(x.shape[2:], size, scales)
    )
    return _lerp(_lerp(x, cols, 3), rows, 2)


def upsample_bilinear2d_backward(grad, in_hw, align_corners=False, scales=(None, None)):
    """grad (N, C, out_h, out_w) -> the input's gradient (N, C, H, W): the forward's weights
    applied backwards, rows then columns.

    Lecture: segmentation (upsample back to full resolution).
    """
    rows, cols = (
        bilinear_source(n, o, s, align_corners) for n, o, s in zip(in_hw, grad.shape[2:], scales)
    )
    return _lerp_backward(_lerp_backward(grad, rows, in_hw[0], 2), cols, in_hw[1], 3)
