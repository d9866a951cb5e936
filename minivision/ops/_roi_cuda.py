"""CUDA kernels for RoI align on the GPU, twins of ``_roi_kernels``.

They take the geometry ``roi_align`` computed with array ops and do the same arithmetic as
the Numba loops in the same order (no FMA contraction, see ``_cuda``), so outputs and input
gradients equal the CPU's to the bit. Forward: one thread per output element. Backward: a
deterministic gather without atomics, one thread per input element, which walks the RoIs
of its image in order and adds, in the CPU's order, the terms that land on it; per-bin
spans ([first, last] row or column a bin reads) let it skip the bins that miss it.
(RoI max pooling's twins are in ``_roi_pool_cuda``.)
"""

from __future__ import annotations

from minivision import _cuda
from minivision.backend import get_array_module

_ALIGN_SOURCE = r"""
extern "C" __global__ void roi_align(const long long count, const T* x, const long long* batch,
                                     const long long* grids, const T* sample_count, const long long* y_taps,
                                     const T* y_weights, const long long* x_taps, const T* x_weights,
                                     const int channels, const int height, const int width, const int out_h,
                                     const int out_w, const int samples_h, const int samples_w, T* out) {
    FOR_EACH(k, count) {
        const int j = k % out_w, i = k / out_w % out_h, c = k / ((long long)out_w * out_h) % channels;
        const long long n = k / ((long long)out_w * out_h * channels);
        const T* plane = x + (batch[n] * channels + c) * (long long)height * width;
        T total = 0;
        for (long long iy = 0; iy < grids[n * 2]; ++iy) {
            const long long y = ((n * out_h + i) * samples_h + iy) * 2;
            const long long y_low = y_taps[y], y_high = y_taps[y + 1];
            const T ly = y_weights[y], hy = y_weights[y + 1];
            for (long long ix = 0; ix < grids[n * 2 + 1]; ++ix) {
                const long long s = ((n * out_w + j) * samples_w + ix) * 2;
                const long long x_low = x_taps[s], x_high = x_taps[s + 1];
                const T lx = x_weights[s], hx = x_weights[s + 1];
                T v1 = plane[0], v2 = plane[0], v3 = plane[0], v4 = plane[0];  // off the map: weight 0
                if (y_low >= 0 && x_low >= 0) {
                    v1 = plane[y_low * width + x_low];
                    v2 = plane[y_low * width + x_high];
                    v3 = plane[y_high * width + x_low];
                    v4 = plane[y_high * width + x_high];
                }
                total += hy * hx * v1 + hy * lx * v2 + ly * hx * v3 + ly * lx * v4;
            }
        }
        out[k] = total / sample_count[n];
    }
}

extern "C" __global__ void roi_align_backward(const long long count, const T* grad, const long long* batch,
                                              const long long* grids, const T* sample_count,
                                              const long long* y_taps, const T* y_weights, const long long* y_spans,
                                              const long long* x_taps, const T* x_weights, const long long* x_spans,
                                              const int rois, const int channels, const int height,
                                              const int width, const int out_h, const int out_w,
                                              const int samples_h, const int samples_w, T* grad_x) {
    FOR_EACH(k, count) {
        const int h = k / width % height, w = k % width, c = k / ((long long)height * width) % channels;
        const long long b = k / ((long long)height * width * channels);
        T sum = 0;
        for (long long n = 0; n < rois; ++n) {
            if (batch[n] != b) continue;
            for (int i = 0; i < out_h; ++i) {
                if (h < y_spans[(n * out_h + i) * 2] || h > y_spans[(n * out_h + i) * 2 + 1]) continue;
                for (int j = 0; j < out_w; ++j) {
                    if (w < x_spans[(n * out_w + j) * 2] || w > x_spans[(n * out_w + j) * 2 + 1]) continue;
                    const T g = grad[((n * channels + c) * out_h + i) * out_w + j];
                    for (long long iy = 0; iy < grids[n * 2]; ++iy) {
                        const long long y = ((n * out_h + i) * samples_h + iy) * 2;
                        const long long y_low = y_taps[y], y_high = y_taps[y + 1];
                        if (y_low != h && y_high != h) continue;  // off the map: taps of -1
                        const T ly = y_weights[y], hy = y_weights[y + 1];
                        for (long long ix = 0; ix < grids[n * 2 + 1]; ++ix) {
                            const long long s = ((n * out_w + j) * samples_w + ix) * 2;
                            const long long x_low = x_taps[s], x_high = x_taps[s + 1];
                            if (x_low != w && x_high != w) continue;
                            const T lx = x_weights[s], hx = x_weights[s + 1];
                            if (y_low == h && x_low == w) sum += g * (hy * hx) / sample_count[n];
                            if (y_low == h && x_high == w) sum += g * (hy * lx) / sample_count[n];
                            if (y_high == h && x_low == w) sum += g * (ly * hx) / sample_count[n];
                            if (y_high == h && x_high == w) sum += g * (ly * lx) / sample_count[n];
                        }
                    }
                }
            }
        }
        grad_x[k] = sum;
    }
}
"""


def _c(array):
    """A C-contiguous array, as the kernels read them (they see only the data pointer)."""
    return get_array_module(array).ascontiguousarray(array)


def _samples(geometry):
    """The per-sample arrays of a RoIAlign geometry, in kernel argument order, and (G_h, G_w)."""
    return (
        (_c(geometry.grids), _c(geometry.count), _c(geometry.y_taps), _c(geometry.y_weights)),
        (_c(geometry.x_taps), _c(geometry.x_weights)),
        geometry.y_taps.shape[2],
        geometry.x_taps.shape[2],
    )


def roi_align(x, batch, geometry, out_hw):
    """x (N, C, H, W), batch (K,) -> (K, C, out_h, out_w); see ``_roi_kernels.roi_align_rois``.
    ``geometry`` is ``roi_align._Samples``."""
    xp = get_array_module(x)
    out = xp.empty((batch.shape[0], x.shape[1]) + tuple(out_hw), dtype=x.dtype)
    rows, columns, samples_h, samples_w = _samples(geometry)
    _cuda.launch(
        _ALIGN_SOURCE,
        "roi_align",
        x.dtype,
        out.size,
        _c(x),
        _c(batch),
        *rows,
        *columns,
        *_cuda.int32s(*x.shape[1:], *out_hw, samples_h, samples_w),
        out,
    )
    return out


def roi_align_backward(grad, batch, geometry, x_shape):
    """The input gradient (``x_shape``) of ``roi_align``: each input element sums, in the
    CPU's order, the bilinear shares of the samples that read it."""
    xp = get_array_module(grad)
    grad_x = xp.empty(x_shape, dtype=grad.dtype)
    (grids, count, y_taps, y_weights), (x_taps, x_weights), samples_h, samples_w = _samples(
        geometry
    )
    _cuda.launch(
        _ALIGN_SOURCE,
        "roi_align_backward",
        grad.dtype,
        grad_x.size,
        _c(grad),
        _c(batch),
        grids,
        count,
        y_taps,
        y_weights,
        _c(geometry.y_spans),
        x_taps,
        x_weights,
        _c(geometry.x_spans),
        *_cuda.int32s(batch.shape[0], *x_shape[1:], *grad.shape[2:], samples_h, samples_w),
        grad_x,
    )
    return grad_x
