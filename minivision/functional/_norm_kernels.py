"""Numba kernels for batch normalisation on the CPU: each a single pass over (N, C, L).

Written with array operations, a training forward and backward of batch norm read or
write the whole activation about a dozen times (centre, scale, shift, the variance's two
passes, the backward's two sums and its formula), 40 ms of a 236 ms tiny U-Net step here.
These kernels do it in five passes: the statistics (two), the normalised output (one),
the gradient's two sums (one) and the input gradient (one), recomputing x_hat from x
rather than storing it. Sums run in float64 whatever the array's dtype.

Arrays arrive whole as (N, C, L), L the product of the spatial sizes (1 for (N, C) input),
with the channels [first, stop) to work on: ``norm.py`` gives each of minivision's worker
threads a share. (Slicing the channels instead would hand Numba arrays of unknown strides,
whose loops it does not vectorise: batch norm ran slower on two threads than on one.)
"""
from __future__ import annotations

from numba import njit

# Let LLVM reorder the float64 sums so they vectorise (several partial sums at once).
_SUMS = {"reassoc", "contract"}


@njit(cache=True, nogil=True, fastmath=_SUMS)
def channel_moments(x, mean, var, first, stop):
    """mean[c], var[c]: the mean and biased variance of x[:, c, :] (two passes, float64 sums)."""
    samples, length = x.shape[0], x.shape[2]
    count = samples * length
    for c in range(first, stop):
        total = 0.0
        for n in range(samples):
            for k in range(length):
                total += x[n, c, k]
        m = total / count
        squares = 0.0
        for n in range(samples):
            for k in range(length):
                d = x[n, c, k] - m
                squares += d * d
        mean[c], var[c] = m, squares / count


@njit(cache=True, nogil=True)
def affine(x, scale, shift, out, first, stop):
    """out[n, c, k] = x[n, c, k] * scale[c] + shift[c]."""
    samples, length = x.shape[0], x.shape[2]
    for n in range(samples):
        for c in range(first, stop):
            a, b = scale[c], shift[c]
            for k in range(length):
                out[n, c, k] = x[n, c, k] * a + b


@njit(cache=True, nogil=True, fastmath=_SUMS)
def gradient_sums(grad, x, mean, inv_std, sum_g, sum_gx, first, stop):
    """sum_g[c] = sum of grad[:, c]; sum_gx[c] = sum of grad * x_hat, x_hat = (x - mean) * inv_std."""
    samples, length = x.shape[0], x.shape[2]
    for c in range(first, stop):
        total, weighted = 0.0, 0.0
        m = mean[c]
        for n in range(samples):
            for k in range(length):
                g = grad[n, c, k]
                total += g
                weighted += g * (x[n, c, k] - m)
        sum_g[c], sum_gx[c] = total, weighted * inv_std[c]


@njit(cache=True, nogil=True)
def input_gradient(grad, x, mean, inv_std, scale, mean_g, mean_gx, out, first, stop):
    """out = (grad - mean_g - x_hat * mean_gx) * scale per channel: the input gradient of
    batch norm with batch statistics (scale = inv_std * weight)."""
    samples, length = x.shape[0], x.shape[2]
    for n in range(samples):
        for c in range(first, stop):
            m, s, mg = mean[c], inv_std[c], mean_g[c]
            slope, a = mean_gx[c] * s, scale[c]
            for k in range(length):
                out[n, c, k] = (grad[n, c, k] - mg - (x[n, c, k] - m) * slope) * a
