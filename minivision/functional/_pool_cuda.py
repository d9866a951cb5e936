"""CUDA kernels for max pooling on the GPU, twins of ``_pool_kernels``: switches in one pass,
the pooling gradient gathered per input pixel, and flat-index scatter/gather for unpooling.

Arrays arrive as C-contiguous planes, (P, H, W) or (P, L) with P = N * C, one thread per
output element. The switches follow ``max_pool_planes`` exactly (same visiting order,
same tie, NaN and -inf rules), so they equal the CPU's. The pooling gradient is
deterministic without atomics: each input pixel sums, in the CPU's order, the gradients
of the windows whose switch points at it.
"""

# FAST PATH FILE pool
from __future__ import annotations

import numpy as np

from minivision import _cuda
from minivision.backend import get_array_module
from minivision.functional._geometry import Windows

_SOURCE = r"""
extern "C" __global__ void max_pool(const long long count, const T* x, const int height, const int width,
                                    const int out_h, const int out_w, const int kh, const int kw, const int sh,
                                    const int sw, const int ph, const int pw, const int dh, const int dw,
                                    T* out, long long* switches) {
    FOR_EACH(k, count) {
        const int i = k / out_w % out_h, j = k % out_w;
        const T* plane = x + k / ((long long)out_h * out_w) * height * width;
        int h_start = i * sh - ph, w_start = j * sw - pw;
        const int h_stop = min(h_start + (kh - 1) * dh + 1, height), w_stop = min(w_start + (kw - 1) * dw + 1, width);
        while (h_start < 0) h_start += dh;
        while (w_start < 0) w_start += dw;
        T best = -(T)__longlong_as_double(0x7ff0000000000000LL);  // -inf: NVRTC has no INFINITY
        long long arg = (long long)h_start * width + w_start;
        for (int h = h_start; h < h_stop; h += dh) {
            for (int w = w_start; w < w_stop; w += dw) {
                const T value = plane[h * width + w];
                if (value > best || isnan(value)) {
                    best = value;
                    arg = (long long)h * width + w;
                }
            }
        }
        out[k] = best;
        switches[k] = arg;
    }
}

extern "C" __global__ void max_pool_backward(const long long count, const T* grad, const long long* switches,
                                             const int height, const int width, const int out_h, const int out_w,
                                             const int kh, const int kw, const int sh, const int sw, const int ph,
                                             const int pw, const int dh, const int dw, T* grad_x) {
    FOR_EACH(k, count) {
        const int h = k / width % height, w = k % width;
        const long long offset = k / ((long long)height * width) * out_h * out_w;
        const int top = h + ph - (kh - 1) * dh, left = w + pw - (kw - 1) * dw;  // first window reaching h, w
        const int i_stop = min((h + ph) / sh + 1, out_h), j_stop = min((w + pw) / sw + 1, out_w);
        const long long at = (long long)h * width + w;
        T sum = 0;
        for (int i = top > 0 ? (top + sh - 1) / sh : 0; i < i_stop; ++i)
            for (int j = left > 0 ? (left + sw - 1) / sw : 0; j < j_stop; ++j)
                if (switches[offset + i * out_w + j] == at) sum += grad[offset + i * out_w + j];
        grad_x[k] = sum;
    }
}

extern "C" __global__ void scatter(const long long count, const T* values, const long long* index,
                                   const long long length, const long long out_length, T* out) {
    FOR_EACH(k, count) out[k / length * out_length + index[k]] = values[k];
}

extern "C" __global__ void gather(const long long count, const T* source, const long long* index,
                                  const long long length, const long long source_length, T* out) {
    FOR_EACH(k, count) out[k] = source[k / length * source_length + index[k]];
}
"""


def _index(index):
    """Flat per-plane positions as the kernels read them: C-contiguous int64."""
    return get_array_module(index).ascontiguousarray(index, dtype=np.int64)


def _plane_size(shape) -> int:
    """Elements per (n, c) plane of an (N, C, ...) shape."""
    return int(np.prod(shape[2:]))


def max_pool_switches(x, win: Windows, out_hw):
    """x (N, C, H, W) -> (maxima, switches), both (N, C, out_h, out_w); switches int64."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    out = xp.empty(x.shape[:2] + tuple(out_hw), dtype=x.dtype)
    switches = xp.empty(out.shape, dtype=np.int64)
    _cuda.launch(
        _SOURCE,
        "max_pool",
        x.dtype,
        out.size,
        x,
        *_cuda.int32s(*x.shape[2:], *out_hw),
        *_cuda.int32s(*win.sizes()),
        out,
        switches,
    )
    return out, switches


def max_pool_backward(grad, switches, win: Windows, x_shape):
    """The max pool's input gradient (``x_shape``): each input pixel sums the gradients of the
    windows whose switch is that pixel (a switch of -1 or outside the plane is none's).
    grad, switches (N, C, out_h, out_w)."""
    xp = get_array_module(grad)
    grad = xp.ascontiguousarray(grad)
    grad_x = xp.empty(x_shape, dtype=grad.dtype)
    _cuda.launch(
        _SOURCE,
        "max_pool_backward",
        grad.dtype,
        grad_x.size,
        grad,
        _index(switches),
        *_cuda.int32s(*x_shape[2:], *grad.shape[2:]),
        *_cuda.int32s(*win.sizes()),
        grad_x,
    )
    return grad_x


def scatter(values, index, shape):
    """A zero array of ``shape`` (N, C, H, W) holding ``values`` (N, C, h, w) at the flat
    per-plane positions ``index`` (int64, same shape as ``values``); which value lands
    where indices repeat is unspecified."""
    xp = get_array_module(values)
    out = xp.zeros(shape, dtype=values.dtype)
    _cuda.launch(
        _SOURCE,
        "scatter",
        values.dtype,
        values.size,
        xp.ascontiguousarray(values),
        _index(index),
        np.int64(_plane_size(values.shape)),
        np.int64(_plane_size(shape)),
        out,
    )
    return out


def gather(source, index):
    """out[n, c, ...] = source[n, c].flat[index[n, c, ...]]: ``index``'s shape, ``source``'s dtype."""
    xp = get_array_module(source)
    out = xp.empty(index.shape, dtype=source.dtype)
    _cuda.launch(
        _SOURCE,
        "gather",
        source.dtype,
        out.size,
        xp.ascontiguousarray(source),
        _index(index),
        np.int64(_plane_size(out.shape)),
        np.int64(_plane_size(source.shape)),
        out,
    )
    return out
