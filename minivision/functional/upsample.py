"""Resizing (N, C, H, W) maps: nearest and bilinear ``interpolate``, as PyTorch computes them.

Both modes are separable linear maps: out = A_h @ x @ A_w^T with small (out, in) matrices
per axis holding at most two non-zeros a row, and the backward applies the transposed
matrices the same way: no scatter-add needed. On the CPU one Numba pass per plane does
both axes (``_resample_kernels``); on the GPU they are applied as "taps" (gather a few
input rows, weight them, add), a few passes over the output.
"""
from __future__ import annotations

import numbers

import numpy as np

from minivision import threads
from minivision.backend import get_array_module, numba_kernels_apply
from minivision.functional import _resample_kernels as kernels
from minivision.functional._geometry import check_nchw
from minivision.tensor import Function, Tensor

MODES = ("nearest", "bilinear")


def _nearest_matrix(in_size: int, out_size: int, scale) -> np.ndarray:
    """(out, in) 0/1 matrix: out[i] = x[min(floor(i * s), in - 1)], s = 1 / scale_factor or
    in / out, computed in float32 as PyTorch's kernel does (so the same pixels are picked)."""
    if out_size == in_size:
        source = np.arange(out_size)
    elif out_size == 2 * in_size:  # PyTorch's exact shortcut, whatever the scale_factor
        source = np.arange(out_size) // 2
    else:
        step = np.float32(1.0 / scale) if scale else np.float32(in_size) / np.float32(out_size)
        source = np.minimum(np.floor(np.arange(out_size, dtype=np.float32) * step).astype(np.int64), in_size - 1)
    matrix = np.zeros((out_size, in_size))
    matrix[np.arange(out_size), source] = 1.0
    return matrix


def _bilinear_matrix(in_size: int, out_size: int, scale, align_corners: bool) -> np.ndarray:
    """(out, in) matrix of linear interpolation weights (PyTorch's source-index rule)."""
    if out_size == in_size:
        return np.eye(out_size)
    index = np.arange(out_size, dtype=np.float64)
    if align_corners:
        source = index * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        step = 1.0 / scale if scale else in_size / out_size
        source = np.maximum(step * (index + 0.5) - 0.5, 0.0)  # pixel centres, clamped at the edge
    lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    upper = np.where(lower < in_size - 1, lower + 1, lower)
    frac = np.clip(source - lower, 0.0, 1.0)
    matrix = np.zeros((out_size, in_size))
    np.add.at(matrix, (np.arange(out_size), lower), 1.0 - frac)  # a tiny host matrix, not data
    np.add.at(matrix, (np.arange(out_size), upper), frac)
    return matrix


def _apply_along(x, matrix: np.ndarray, axis: int):
    """y with y[..., o, ...] = sum_i matrix[o, i] * x[..., i, ...] along ``axis``, computed from
    the matrix's non-zeros: one gather per tap (taps = most non-zeros in a row)."""
    xp = get_array_module(x)
    if matrix.shape[0] == matrix.shape[1] and np.array_equal(matrix, np.eye(matrix.shape[0])):
        return x
    nonzero = matrix != 0
    taps = max(int(nonzero.sum(axis=1).max(initial=0)), 1)
    columns = np.argsort(~nonzero, axis=1, kind="stable")[:, :taps]  # each row's non-zero columns first
    weights = np.take_along_axis(matrix, columns, axis=1)
    shape = [1] * x.ndim
    shape[axis] = -1
    out = None
    for t in range(taps):
        term = xp.take(x, xp.asarray(columns[:, t]), axis=axis)
        if not np.all(weights[:, t] == 1.0):
            term *= xp.asarray(weights[:, t].astype(x.dtype)).reshape(shape)
        out = term if out is None else out + term
    return out


def _resample(x, rows: np.ndarray, cols: np.ndarray):
    """rows @ x @ cols^T over the last two axes of x (N, C, H, W): one Numba pass over each
    worker's share of the planes for NumPy arrays, the gathers of ``_apply_along`` for CuPy."""
    if not numba_kernels_apply(x):
        return _apply_along(_apply_along(x, cols, 3), rows, 2)
    planes = np.ascontiguousarray(x).reshape((-1,) + x.shape[2:])
    out = np.empty((planes.shape[0], rows.shape[0], cols.shape[0]), dtype=x.dtype)
    taps = _compressed(rows, x.dtype) + _compressed(cols, x.dtype)
    threads.over_batch(planes, lambda p, _: kernels.resample_planes(planes[p], *taps, out[p]))
    return out.reshape(x.shape[:2] + out.shape[1:])


def _compressed(matrix: np.ndarray, dtype) -> tuple:
    """(ptr, index, weight): the non-zeros of an (out, in) host matrix, row by row."""
    row, column = np.nonzero(matrix)
    ptr = np.searchsorted(row, np.arange(matrix.shape[0] + 1))
    return ptr, column, matrix[row, column].astype(dtype)


class _Resample(Function):
    """out = rows @ x @ cols^T over the last two axes; the gradient uses the transposes."""

    def forward(self, x, rows=None, cols=None):
        self.rows, self.cols = rows, cols
        return _resample(x, rows, cols)

    def backward(self, grad):
        return _resample(grad, self.rows.T, self.cols.T)


def _size_pair(value, name: str, kind) -> tuple:
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(isinstance(v, kind) and not isinstance(v, bool) and v > 0 for v in items):
        raise ValueError(f"interpolate: {name} must be a positive number or a pair of them, got {value!r}")
    return items


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False) -> Tensor:
    """Resize input (N, C, H, W) to ``size`` (out_h, out_w), or by ``scale_factor``
    (out = floor(in * scale_factor)), with ``mode`` 'nearest' or 'bilinear'.
    ``align_corners`` (bilinear only, default False) maps corner pixel centres onto each other."""
    check_nchw(input, "interpolate")
    if mode not in MODES:
        raise ValueError(f"interpolate: mode must be one of {MODES}, got {mode!r}")
    if align_corners is not None and mode == "nearest":
        raise ValueError("interpolate: align_corners can only be set with mode='bilinear', got mode='nearest'")
    if antialias:
        raise ValueError("interpolate: antialias=True is not supported")
    if (size is None) == (scale_factor is None):
        raise ValueError(
            f"interpolate: give exactly one of size and scale_factor, got size={size!r}, scale_factor={scale_factor!r}"
        )
    in_hw = tuple(input.shape[2:])
    if size is not None:
        out_hw, scales = _size_pair(size, "size", numbers.Integral), (None, None)
    else:
        scales = tuple(float(s) for s in _size_pair(scale_factor, "scale_factor", numbers.Real))
        out_hw = tuple(int(np.floor(n * s)) for n, s in zip(in_hw, scales))
        if min(out_hw) < 1:
            raise ValueError(f"interpolate: scale_factor {scale_factor!r} shrinks input {in_hw} to nothing ({out_hw})")
        if recompute_scale_factor:
            scales = (None, None)  # the kernel then uses in / out, as PyTorch does
    if mode == "nearest":
        rows, cols = (_nearest_matrix(n, o, s) for n, o, s in zip(in_hw, out_hw, scales))
    else:
        rows, cols = (_bilinear_matrix(n, o, s, bool(align_corners)) for n, o, s in zip(in_hw, out_hw, scales))
    return _Resample.apply(input, rows=rows, cols=cols)
