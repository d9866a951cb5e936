"""CUDA kernels for batch normalisation on the GPU, twins of ``_norm_kernels``: the same five
passes (statistics, output, the gradient's sums, input gradient), where array code takes
about twenty kernel launches per layer and step.

x and grad are C-contiguous (N, C, L), L the product of the spatial sizes; every other
array is a (C,) vector. The per-channel sums run one thread block per channel in float64,
as on the CPU (in another order, so they agree to rounding, not to the bit); the
element-wise passes run one thread per element with the CPU's arithmetic.
"""

from __future__ import annotations

import numpy as np

from minivision import _cuda
from minivision.backend import get_array_module

SUM_THREADS = 256  # per block, a power of two for the tree sum, at most the kernels' partial[256]

_SUMS_SOURCE = r"""  // one block per channel
__device__ double block_sum(double* partial, const double value) {
    // the sum of value over the block's threads (blockDim.x a power of two), on every thread
    partial[threadIdx.x] = value;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    const double total = partial[0];
    __syncthreads();  // partial is written again by the next sum
    return total;
}

__device__ inline void step_on(long long& n, long long& l, const long long length) {
    // a thread's next element of its channel, blockDim.x further: sample n, position l
    // (stepped on, dividing only where a sample ends, rather than divided out of a flat index)
    l += blockDim.x;
    if (l >= length) {
        n += l / length;
        l %= length;
    }
}

// The loop over a thread's elements of channel c, ``at`` their offsets in x (N, C, L)
#define FOR_CHANNEL(at) \
    for (long long n = threadIdx.x / length, l = threadIdx.x % length, at = (n * channels + c) * length + l; \
         n < samples; step_on(n, l, length), at = (n * channels + c) * length + l)

extern "C" __global__ void channel_moments(const T* x, const int samples, const int channels,
                                           const long long length, double* mean, double* var) {
    __shared__ double partial[256];
    const int c = blockIdx.x;
    const long long count = (long long)samples * length;
    double total = 0;
    FOR_CHANNEL(at) total += x[at];
    const double m = block_sum(partial, total) / count;
    double squares = 0;
    FOR_CHANNEL(at) {
        const double d = x[at] - m;
        squares += d * d;
    }
    const double v = block_sum(partial, squares) / count;
    if (threadIdx.x == 0) {
        mean[c] = m;
        var[c] = v;
    }
}

extern "C" __global__ void gradient_sums(const T* grad, const T* x, const T* mean, const T* inv_std,
                                         const int samples, const int channels, const long long length,
                                         double* sum_g, double* sum_gx) {
    __shared__ double partial[256];
    const int c = blockIdx.x;
    const T m = mean[c];
    double total = 0, weighted = 0;
    FOR_CHANNEL(at) {
        total += grad[at];
        weighted += grad[at] * (x[at] - m);
    }
    total = block_sum(partial, total);
    weighted = block_sum(partial, weighted);
    if (threadIdx.x == 0) {
        sum_g[c] = total;
        sum_gx[c] = weighted * inv_std[c];
    }
}
"""

_SOURCE = r"""  // one thread per element
extern "C" __global__ void affine(const long long count, const T* x, const T* scale, const T* shift,
                                  const int channels, const long long length, T* out) {
    FOR_EACH(k, count) {
        const int c = k / length % channels;
        out[k] = x[k] * scale[c] + shift[c];
    }
}

extern "C" __global__ void input_gradient(const long long count, const T* grad, const T* x, const T* mean,
                                          const T* inv_std, const T* scale, const T* mean_g, const T* mean_gx,
                                          const int channels, const long long length, T* out) {
    FOR_EACH(k, count) {
        const int c = k / length % channels;
        const T slope = mean_gx[c] * inv_std[c];
        out[k] = (grad[k] - mean_g[c] - (x[k] - mean[c]) * slope) * scale[c];
    }
}
"""


def _layout(a):
    """(a C-contiguous, N as int32, C as int32, L as int64) for an (N, C, ...) array."""
    xp = get_array_module(a)
    return (
        xp.ascontiguousarray(a),
        np.int32(a.shape[0]),
        np.int32(a.shape[1]),
        np.int64(np.prod(a.shape[2:])),
    )


def _vectors(dtype, *vectors):
    xp = get_array_module(*vectors)
    return tuple(xp.ascontiguousarray(v, dtype=dtype) for v in vectors)


def moments(x):
    """The per-channel mean and biased variance of x (N, C, ...), in x's dtype."""
    xp = get_array_module(x)
    x, samples, channels, length = _layout(x)
    mean, var = xp.zeros(int(channels)), xp.zeros(int(channels))
    if channels and samples * length:  # a launch needs at least one block
        _cuda.kernel(_SUMS_SOURCE, "channel_moments", x.dtype)(
            (int(channels),), (SUM_THREADS,), (x, samples, channels, length, mean, var)
        )
    return mean.astype(x.dtype), var.astype(x.dtype)


def gradient_sums(grad, x, mean, inv_std):
    """(sum of grad, sum of grad * x_hat) per channel, in grad's dtype."""
    xp = get_array_module(grad, x)
    grad, samples, channels, length = _layout(grad)
    sum_g, sum_gx = xp.zeros(int(channels)), xp.zeros(int(channels))
    if channels:  # a launch needs at least one block
        _cuda.kernel(_SUMS_SOURCE, "gradient_sums", grad.dtype)(
            (int(channels),),
            (SUM_THREADS,),
            (
                grad,
                xp.ascontiguousarray(x, dtype=grad.dtype),
                *_vectors(grad.dtype, mean, inv_std),
                samples,
                channels,
                length,
                sum_g,
                sum_gx,
            ),
        )
    return sum_g.astype(grad.dtype), sum_gx.astype(grad.dtype)


def affine(x, scale, shift):
    """x * scale + shift per channel."""
    xp = get_array_module(x)
    x, _, channels, length = _layout(x)
    out = xp.empty_like(x)
    _cuda.launch(
        _SOURCE,
        "affine",
        x.dtype,
        x.size,
        x,
        *_vectors(x.dtype, scale, shift),
        channels,
        length,
        out,
    )
    return out


def input_gradient(grad, x, mean, inv_std, scale, mean_g, mean_gx):
    """(grad - mean_g - x_hat * mean_gx) * scale per channel, x_hat = (x - mean) * inv_std."""
    xp = get_array_module(grad, x)
    grad, _, channels, length = _layout(grad)
    out = xp.empty_like(grad)
    _cuda.launch(
        _SOURCE,
        "input_gradient",
        grad.dtype,
        grad.size,
        grad,
        xp.ascontiguousarray(x, dtype=grad.dtype),
        *_vectors(grad.dtype, mean, inv_std, scale, mean_g, mean_gx),
        channels,
        length,
        out,
    )
    return out
