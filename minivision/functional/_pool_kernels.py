"""Numba kernels for max pooling on the CPU, fast paths of ``minivision.reference.pool``:
switches in one pass, and flat-index scatter/gather.

Arrays arrive as planes: (P, H, W) or (P, L) with P = N * C. Each kernel runs on one
thread without the GIL; ``_pool_fast`` hands each of minivision's worker threads a share of
the planes (``minivision.threads``).
"""

# FAST PATH FILE pool
from __future__ import annotations

import numpy as np

from minivision._numba import njit


@njit(cache=True, nogil=True)
def max_pool_planes(x, kh, kw, sh, sw, ph, pw, dh, dw, out, switches):
    """out[p, i, j] = max of window (i, j) of plane x[p]; switches[p, i, j] = h * W + w of
    that maximum: ``reference.max_pool2d``'s rule, as PyTorch's CPU loop: only in-bounds
    positions are visited, the first maximum in row-major window order wins, NaN beats
    everything, and a window of -inf points at its first in-bounds position (a window of
    padding only, at its first row and column at or past 0, which may lie outside the window
    and the plane)."""
    planes, height, width = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for plane in range(planes):
        for i in range(out_h):
            h_start = i * sh - ph
            h_stop = min(h_start + (kh - 1) * dh + 1, height)
            while h_start < 0:
                h_start += dh
            for j in range(out_w):
                w_start = j * sw - pw
                w_stop = min(w_start + (kw - 1) * dw + 1, width)
                while w_start < 0:
                    w_start += dw
                best = -np.inf
                arg = h_start * width + w_start
                for h in range(h_start, h_stop, dh):
                    for w in range(w_start, w_stop, dw):
                        value = x[plane, h, w]
                        if value > best or np.isnan(value):
                            best = value
                            arg = h * width + w
                out[plane, i, j] = best
                switches[plane, i, j] = arg


@njit(inline="always")
def _keep_max(best, arg, value, index):
    """The running (maximum, switch) after seeing ``value`` at ``index``: the max_pool_planes rule."""
    if value > best or np.isnan(value):
        return value, index
    return best, arg


@njit(cache=True, nogil=True)
def max_pool_2x2_planes(x, out, switches):
    """max_pool_planes for the lecture's 2x2 windows at stride 2 without padding, unrolled (10x
    faster here than the general loop); with ceil_mode the last window of an odd size reads
    only its in-bounds positions."""
    planes, height, width = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for plane in range(planes):
        for i in range(out_h):
            h = 2 * i
            down = h + 1 < height
            for j in range(out_w):
                w = 2 * j
                right = w + 1 < width
                at = h * width + w
                best, arg = x[plane, h, w], at
                if right:
                    best, arg = _keep_max(best, arg, x[plane, h, w + 1], at + 1)
                if down:
                    best, arg = _keep_max(best, arg, x[plane, h + 1, w], at + width)
                    if right:
                        best, arg = _keep_max(best, arg, x[plane, h + 1, w + 1], at + width + 1)
                out[plane, i, j] = best
                switches[plane, i, j] = arg


@njit(cache=True, nogil=True)
def scatter_add_planes(values, index, out):
    """out[p, index[p, k]] += values[p, k] in the order of k (several k may share an index);
    an index outside the plane (-1: ``max_pool2d``'s mark for a window that holds no input
    pixel) is skipped."""
    length = out.shape[1]
    for plane in range(values.shape[0]):
        for k in range(values.shape[1]):
            at = index[plane, k]
            if 0 <= at < length:
                out[plane, at] += values[plane, k]


@njit(cache=True, nogil=True)
def scatter_planes(values, index, out):
    """out[p, index[p, k]] = values[p, k] (the last k wins where indices repeat)."""
    for plane in range(values.shape[0]):
        for k in range(values.shape[1]):
            out[plane, index[plane, k]] = values[plane, k]


@njit(cache=True, nogil=True)
def gather_planes(source, index, out):
    """out[p, k] = source[p, index[p, k]]."""
    for plane in range(index.shape[0]):
        for k in range(index.shape[1]):
            out[plane, k] = source[plane, index[plane, k]]
