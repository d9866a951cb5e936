"""The fast path of RoI max pooling on the GPU: CUDA twins of ``_roi_pool_fast``'s Numba loops.

They take the bins ``reference.roi_pool.bins`` computes and do what the Numba loops do in
the same order, so outputs, argmax and input gradients equal the CPU's (and the
reference's) to the bit. Forward: one thread per output element. Backward: a deterministic
gather without atomics, one thread per input element, which walks the RoIs of its image in
order and adds the gradients of the bins whose argmax it is, skipping bins that miss it.
"""

# FAST PATH FILE roi
from __future__ import annotations

import numpy as np

from minivision import _cuda
from minivision.backend import get_array_module
from minivision.ops._roi_cuda import _c

_SOURCE = r"""
extern "C" __global__ void roi_pool(const long long count, const T* x, const long long* batch,
                                    const long long* h_bins, const long long* w_bins,
                                    const int channels, const int height, const int width,
                                    const int out_h, const int out_w, const T lowest, T* out,
                                    long long* argmax) {
    FOR_EACH(k, count) {
        const int j = k % out_w, i = k / out_w % out_h;
        const int c = k / ((long long)out_w * out_h) % channels;
        const long long n = k / ((long long)out_w * out_h * channels);
        const T* plane = x + (batch[n] * channels + c) * (long long)height * width;
        const long long h_start = h_bins[(n * out_h + i) * 2];
        const long long h_stop = h_bins[(n * out_h + i) * 2 + 1];
        const long long w_start = w_bins[(n * out_w + j) * 2];
        const long long w_stop = w_bins[(n * out_w + j) * 2 + 1];
        T best = (h_stop <= h_start || w_stop <= w_start) ? (T)0 : lowest;
        long long arg = -1;
        for (long long h = h_start; h < h_stop; ++h) {
            for (long long w = w_start; w < w_stop; ++w) {
                if (plane[h * width + w] > best) {
                    best = plane[h * width + w];
                    arg = h * width + w;
                }
            }
        }
        out[k] = best;
        argmax[k] = arg;
    }
}

extern "C" __global__ void roi_pool_backward(const long long count, const T* grad,
                                             const long long* argmax, const long long* batch,
                                             const long long* h_bins, const long long* w_bins,
                                             const int rois, const int channels, const int height,
                                             const int width, const int out_h, const int out_w,
                                             T* grad_x) {
    FOR_EACH(k, count) {
        const long long at = k % ((long long)height * width);
        const int h = at / width, w = at % width;
        const int c = k / ((long long)height * width) % channels;
        const long long b = k / ((long long)height * width * channels);
        T sum = 0;
        for (int n = 0; n < rois; ++n) {
            if (batch[n] != b) continue;
            for (int i = 0; i < out_h; ++i) {
                const long long row = ((long long)n * out_h + i) * 2;
                if (h < h_bins[row] || h >= h_bins[row + 1]) continue;
                for (int j = 0; j < out_w; ++j) {
                    const long long column = ((long long)n * out_w + j) * 2;
                    if (w < w_bins[column] || w >= w_bins[column + 1]) continue;
                    const long long bin = (((long long)n * channels + c) * out_h + i) * out_w + j;
                    if (argmax[bin] == at) sum += grad[bin];
                }
            }
        }
        grad_x[k] = sum;
    }
}
"""


def roi_pool(x, batch, h_bins, w_bins, lowest, out_hw):
    """x (N, C, H, W), batch (K,), h_bins (K, out_h, 2), w_bins (K, out_w, 2) ->
    (maxima, argmax), both (K, C, out_h, out_w); see ``_roi_pool_fast.roi_pool_rois``."""
    xp = get_array_module(x)
    out = xp.empty((batch.shape[0], x.shape[1]) + tuple(out_hw), dtype=x.dtype)
    argmax = xp.empty(out.shape, dtype=np.int64)
    sizes = _cuda.int32s(*x.shape[1:], *out_hw)
    _cuda.launch(
        _SOURCE,
        "roi_pool",
        x.dtype,
        out.size,
        _c(x),
        _c(batch),
        _c(h_bins),
        _c(w_bins),
        *sizes,
        x.dtype.type(lowest),
        out,
        argmax,
    )
    return out, argmax


def roi_pool_backward(grad, argmax, batch, h_bins, w_bins, x_shape):
    """The input gradient (``x_shape``) of ``roi_pool``: each input element sums, in RoI and
    bin order, the gradients of the bins whose argmax it is."""
    xp = get_array_module(grad)
    grad_x = xp.empty(x_shape, dtype=grad.dtype)
    sizes = _cuda.int32s(batch.shape[0], *x_shape[1:], *grad.shape[2:])
    _cuda.launch(
        _SOURCE,
        "roi_pool_backward",
        grad.dtype,
        grad_x.size,
        _c(grad),
        _c(argmax),
        _c(batch),
        _c(h_bins),
        _c(w_bins),
        *sizes,
        grad_x,
    )
    return grad_x
