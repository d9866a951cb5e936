"""A Numba kernel for separable resampling on the CPU: out = A_h @ x @ A_w^T per plane.

Each axis's (out, in) matrix arrives in compressed-row form (``ptr``, ``index``, ``weight``:
row o's non-zeros are entries ptr[o] to ptr[o + 1]), so the same kernel computes nearest
and bilinear interpolation (one or two taps a row) and their gradients (the transposed
matrices, a few taps a row). Per plane, the columns are resampled into a small buffer
(a gather along each row), then the rows (whole rows weighted and added, which
vectorises). ``resample`` gives each of minivision's worker threads a share of the planes.
"""

from __future__ import annotations

import numpy as np

from minivision import threads
from minivision._numba import njit


def resample(x, rows: np.ndarray, cols: np.ndarray):
    """rows @ x @ cols^T over the last two axes of x (N, C, H, W), a NumPy float32 or float64
    array, for (out, in) host matrices ``rows`` and ``cols``: one pass over each plane."""
    planes = np.ascontiguousarray(x).reshape((-1,) + x.shape[2:])
    out = np.empty((planes.shape[0], rows.shape[0], cols.shape[0]), dtype=x.dtype)
    taps = _compressed(rows, x.dtype) + _compressed(cols, x.dtype)
    threads.over_batch(planes, lambda p, _: resample_planes(planes[p], *taps, out[p]))
    return out.reshape(x.shape[:2] + out.shape[1:])


def _compressed(matrix: np.ndarray, dtype) -> tuple:
    """(ptr, index, weight): the non-zeros of an (out, in) host matrix, row by row."""
    row, column = np.nonzero(matrix)
    ptr = np.searchsorted(row, np.arange(matrix.shape[0] + 1))
    return ptr, column, matrix[row, column].astype(dtype)


@njit(cache=True, nogil=True)
def resample_planes(x, row_ptr, row_index, row_weight, col_ptr, col_index, col_weight, out):
    """out[p] = A_h @ x[p] @ A_w^T for planes x (P, H, W) into out (P, out_h, out_w)."""
    planes, height = x.shape[0], x.shape[1]
    out_h, out_w = out.shape[1], out.shape[2]
    columns = np.empty((height, out_w), dtype=out.dtype)  # x[p] @ A_w^T
    for p in range(planes):
        for h in range(height):
            for j in range(out_w):
                total = out.dtype.type(0)
                for t in range(col_ptr[j], col_ptr[j + 1]):
                    total += col_weight[t] * x[p, h, col_index[t]]
                columns[h, j] = total
        for i in range(out_h):
            out[p, i, :] = 0
            for t in range(row_ptr[i], row_ptr[i + 1]):
                weight, source = row_weight[t], row_index[t]
                for j in range(out_w):
                    out[p, i, j] += weight * columns[source, j]
