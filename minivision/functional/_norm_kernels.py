"""Numba kernels for batch normalisation on the CPU, the fast path of
``minivision.reference.norm``: each a single pass over (N, C, L).

Written with array operations, a training forward and backward of batch norm read or
write the whole activation about a dozen times (centre, scale, shift, the variance's two
passes, the backward's two sums and its formula), 40 ms of a 236 ms tiny U-Net step here.
These kernels do it in five passes: the statistics (two), the normalised output (one),
the gradient's two sums (one) and the input gradient (one), recomputing x_hat from x
rather than storing it. Sums run in float64 whatever the array's dtype.

The wrappers ``moments``, ``affine``, ``gradient_sums`` and ``input_gradient`` take NumPy
float32 or float64 arrays (N, C, ...) and (C,) vectors, as their CUDA twins in ``_norm_cuda``
do CuPy's. They hand the kernels the arrays whole as (N, C, L), L the product of the spatial
sizes (1 for (N, C) input), with the channels [first, stop) each of minivision's worker
threads works on. (Slicing the channels instead would hand Numba arrays of unknown strides,
whose loops it does not vectorise: batch norm ran slower on two threads than on one.)
"""

from __future__ import annotations

import numpy as np

from minivision import threads
from minivision._numba import njit

# Let LLVM reorder the float64 sums so they vectorise (several partial sums at once).
_SUMS = {"reassoc", "contract"}


@njit(cache=True, nogil=True, fastmath=_SUMS)
def _moments_channels(x, mean, var, first, stop):
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
def _affine_channels(x, scale, shift, out, first, stop):
    """out[n, c, k] = x[n, c, k] * scale[c] + shift[c]."""
    samples, length = x.shape[0], x.shape[2]
    for n in range(samples):
        for c in range(first, stop):
            a, b = scale[c], shift[c]
            for k in range(length):
                out[n, c, k] = x[n, c, k] * a + b


@njit(cache=True, nogil=True, fastmath=_SUMS)
def _gradient_sums_channels(grad, x, mean, inv_std, sum_g, sum_gx, first, stop):
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
def _input_gradient_channels(grad, x, mean, inv_std, scale, mean_g, mean_gx, out, first, stop):
    """out = (grad - mean_g - x_hat * mean_gx) * scale per channel: the input gradient of
    batch norm with batch statistics (scale = inv_std * weight)."""
    samples, length = x.shape[0], x.shape[2]
    for n in range(samples):
        for c in range(first, stop):
            m, s, mg = mean[c], inv_std[c], mean_g[c]
            slope, a = mean_gx[c] * s, scale[c]
            for k in range(length):
                out[n, c, k] = (grad[n, c, k] - mg - (x[n, c, k] - m) * slope) * a


def _ncl(a):
    """(N, C, ...) -> an (N, C, L) view (C-contiguous), L the product of the spatial sizes."""
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], -1)


def _over_channels(kernel, x, *args) -> None:
    """kernel(x, *args, first, stop) for each worker's share [first, stop) of the channels of
    x (N, C, L)."""
    shares = threads.batch_parts(x, axis=1)
    threads.parallel_map(lambda share: kernel(x, *args, share.start, share.stop), shares)


def moments(x):
    """The per-channel mean and biased variance of x (N, C, ...), in x's dtype."""
    mean, var = np.empty(x.shape[1]), np.empty(x.shape[1])
    _over_channels(_moments_channels, _ncl(x), mean, var)
    return mean.astype(x.dtype), var.astype(x.dtype)


def affine(x, scale, shift):
    """x * scale + shift per channel."""
    out = np.empty_like(x)
    _over_channels(_affine_channels, _ncl(x), scale, shift, _ncl(out))
    return out


def gradient_sums(grad, x, mean, inv_std):
    """(sum of grad, sum of grad * x_hat) per channel, x_hat = (x - mean) * inv_std, in grad's
    dtype."""
    sum_g, sum_gx = np.empty(grad.shape[1]), np.empty(grad.shape[1])
    _over_channels(_gradient_sums_channels, _ncl(grad), _ncl(x), mean, inv_std, sum_g, sum_gx)
    return sum_g.astype(grad.dtype), sum_gx.astype(grad.dtype)


def input_gradient(grad, x, mean, inv_std, scale, mean_g, mean_gx):
    """(grad - mean_g - x_hat * mean_gx) * scale per channel, x_hat = (x - mean) * inv_std."""
    out = np.empty_like(grad)
    _over_channels(
        _input_gradient_channels,
        _ncl(grad),
        _ncl(x),
        mean,
        inv_std,
        scale,
        mean_g,
        mean_gx,
        _ncl(out),
    )
    return out
