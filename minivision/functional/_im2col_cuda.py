"""CUDA kernels for im2col and col2im on the GPU, twins of ``im2col.im2col`` and
``im2col.col2im_add``.

``im2col`` writes one column-matrix element per thread, reading zero outside the input,
so padding costs no extra pass. ``col2im`` is its adjoint written as a gather: one thread
per input pixel adds up the column entries that read it, in the CPU's order (kernel row,
then kernel column), so it needs no atomics, is deterministic, and gives the CPU's sums.
Column layout: row (c, p, q), column (n, i, j), as on the CPU.
"""

# FAST PATH FILE conv
from __future__ import annotations

import numpy as np

from minivision import _cuda
from minivision.backend import get_array_module
from minivision.functional._geometry import Windows

_SOURCE = r"""
extern "C" __global__ void im2col(const long long count, const T* x, const int channels, const int height,
                                  const int width, const int row0, const int rows, const int out_w, const int kh,
                                  const int kw, const int sh, const int sw, const int ph, const int pw, const int dh,
                                  const int dw, const long long columns, T* out) {
    FOR_EACH(k, count) {
        const long long column = k % columns, row = k / columns;
        const int j = column % out_w, i = column / out_w % rows, q = row % kw, p = row / kw % kh;
        const long long plane = column / ((long long)out_w * rows) * channels + row / ((long long)kw * kh);
        const int h = (row0 + i) * sh - ph + p * dh, w = j * sw - pw + q * dw;
        out[k] = (h >= 0 && h < height && w >= 0 && w < width) ? x[(plane * height + h) * width + w] : (T)0;
    }
}

extern "C" __global__ void col2im(const long long count, const T* cols, const int channels, const int height,
                                  const int width, const int band_top, const int band_h, const int row0,
                                  const int rows, const int out_w, const int kh, const int kw, const int sh,
                                  const int sw, const int ph, const int pw, const int dh, const int dw,
                                  const long long columns, T* target) {
    FOR_EACH(k, count) {
        const int w = k % width, h = band_top + k / width % band_h;
        const long long plane = k / ((long long)width * band_h);  // n * channels + c
        const int c = plane % channels;
        const long long sample_column = plane / channels * rows * out_w;
        T sum = 0;
        for (int p = 0; p < kh; ++p) {
            const int t = h + ph - p * dh - row0 * sh;
            if (t < 0 || t % sh != 0 || t / sh >= rows) continue;
            for (int q = 0; q < kw; ++q) {
                const int u = w + pw - q * dw;
                if (u < 0 || u % sw != 0 || u / sw >= out_w) continue;
                sum += cols[((long long)(c * kh + p) * kw + q) * columns + sample_column + (t / sh) * out_w + u / sw];
            }
        }
        target[(plane * height + h) * width + w] += sum;
    }
}
"""


def im2col(x, win: Windows, rows: slice, out_w: int):
    """Columns (C * kh * kw, N * len(rows) * out_w) of x (N, C, H, W) for output ``rows``."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    n, c, height, width = x.shape
    columns = n * (rows.stop - rows.start) * out_w
    out = xp.empty((c * win.kernel[0] * win.kernel[1], columns), dtype=x.dtype)
    _cuda.launch(
        _SOURCE,
        "im2col",
        x.dtype,
        out.size,
        x,
        *_cuda.int32s(c, height, width, rows.start, rows.stop - rows.start, out_w, *win.sizes()),
        np.int64(columns),
        out,
    )
    return out


def col2im_add(target, windows, win: Windows, rows: slice) -> None:
    """target (N, C, H, W) += the adjoint of im2col applied to windows (N, C, kh, kw, len(rows), out_w)."""
    xp = get_array_module(target, windows)
    if not target.flags.c_contiguous:
        whole = xp.zeros(target.shape, dtype=target.dtype)
        col2im_add(whole, windows, win, rows)
        target += whole
        return
    # a view of the columns, as a rule; the kernel reads them in the target's dtype
    cols = xp.ascontiguousarray(windows.transpose(1, 2, 3, 0, 4, 5), dtype=target.dtype)
    n, c, height, width = target.shape
    out_w = windows.shape[5]
    top, bottom = win.input_span(0, rows.start, rows.stop)
    top, bottom = max(top, 0), min(bottom, height)  # the input rows these output rows read
    _cuda.launch(
        _SOURCE,
        "col2im",
        target.dtype,
        n * c * max(bottom - top, 0) * width,
        cols,
        *_cuda.int32s(
            c,
            height,
            width,
            top,
            max(bottom - top, 0),
            rows.start,
            rows.stop - rows.start,
            out_w,
            *win.sizes(),
        ),
        np.int64(n * (rows.stop - rows.start) * out_w),
        target,
    )
