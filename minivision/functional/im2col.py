"""im2col and col2im for a band of output rows, chunked to a workspace budget: the fast
convolution's (``_conv_fast``) way of bounding memory. ``minivision.reference.conv`` holds the
whole-batch im2col and col2im these follow.

The column matrix is kh * kw times larger than the input, so callers walk the batch in
pieces from ``chunks``: several samples per piece when a sample's columns fit the budget,
otherwise bands of output rows of one sample. ``set_workspace_budget`` sets the budget.
On the CPU ``im2col`` copies a strided view of the windows and ``col2im_add`` adds them back
one kernel offset at a time (kh * kw strided adds); on the GPU both are CUDA kernels
(``_im2col_cuda``): one pass each, col2im without atomics. ``read_padded`` reads a band of
the input that may reach into the padding, ``add_padded`` is its adjoint.
"""

# FAST PATH FILE conv
from __future__ import annotations

from minivision.backend import get_array_module
from minivision.dispatch import cuda_kernels_apply
from minivision.functional import _im2col_cuda
from minivision.functional._geometry import Windows

DEFAULT_WORKSPACE_BUDGET = 256 * 2**20  # bytes of column matrix one conv may hold at once
# Pieces are cut smaller than the budget allows: a column matrix of a few MiB is reused
# from the allocator's cache and stays near the CPU's caches, while a fresh 100 MiB buffer
# per call pays for page faults and memory traffic (forward+backward of a 3x3 conv over
# N16 C64 56x56: 47 ms in 4 MiB pieces, 61 ms in 16 MiB, 74 ms in 64 MiB). The budget
# still caps the piece when it is set lower. On the GPU a piece is as large as the budget
# allows: each piece costs a few kernel launches, and a larger product keeps the GPU busier.
PREFERRED_PIECE_BYTES = 4 * 2**20

_workspace_budget = DEFAULT_WORKSPACE_BUDGET


def set_workspace_budget(nbytes: int) -> None:
    """Cap the im2col workspace of one convolution at ``nbytes`` (default 256 MiB)."""
    global _workspace_budget
    if int(nbytes) < 1:
        raise ValueError(f"workspace budget must be a positive number of bytes, got {nbytes!r}")
    _workspace_budget = int(nbytes)


def get_workspace_budget() -> int:
    """The current im2col workspace budget in bytes."""
    return _workspace_budget


def chunks(batch: int, out_h: int, row_bytes: int, shares: int = 1, on_gpu: bool = False):
    """Yield ``(samples, rows)`` slices that split the output so each piece's column matrix
    (``row_bytes`` per output row per sample) stays within the preferred piece size (and so
    the budget, or its share when ``shares`` threads hold a piece each) where it can: whole
    samples when one fits, else bands of output rows (at least one row). ``on_gpu``: pieces
    as large as the budget."""
    piece = (
        _workspace_budget // shares
        if on_gpu
        else min(_workspace_budget // shares, PREFERRED_PIECE_BYTES)
    )
    sample_bytes = row_bytes * out_h
    if sample_bytes <= piece:
        step = max(1, piece // max(sample_bytes, 1))
        for start in range(0, batch, step):
            yield slice(start, min(batch, start + step)), slice(0, out_h)
        return
    rows = max(1, piece // row_bytes)
    for n in range(batch):
        for start in range(0, out_h, rows):
            yield slice(n, n + 1), slice(start, min(out_h, start + rows))


def sliding_windows(x, win: Windows, out_hw):
    """A view (N, C, kh, kw, out_h, out_w) of ``x`` (N, C, H, W) whose element
    [n, c, p, q, i, j] is x[n, c, i * sh + p * dh, j * sw + q * dw] (padding already applied)."""
    xp = get_array_module(x)
    (kh, kw), (sh, sw), (dh, dw) = win.kernel, win.stride, win.dilation
    s_n, s_c, s_h, s_w = x.strides
    return xp.lib.stride_tricks.as_strided(
        x,
        shape=x.shape[:2] + (kh, kw) + tuple(out_hw),
        strides=(s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw),
    )


def read_padded(x, rows: tuple, cols: tuple, fill=0.0):
    """x[:, :, rows[0]:rows[1], cols[0]:cols[1]] where the ranges may reach outside the
    input; positions outside read ``fill``. A view when the ranges lie inside."""
    xp = get_array_module(x)
    height, width = x.shape[2:]
    (h0, h1), (w0, w1) = rows, cols
    if h0 >= 0 and w0 >= 0 and h1 <= height and w1 <= width:
        return x[:, :, h0:h1, w0:w1]
    band = xp.full(x.shape[:2] + (h1 - h0, w1 - w0), fill, dtype=x.dtype)
    inside = _overlap(rows, cols, height, width)
    band[(slice(None), slice(None)) + inside[1]] = x[(slice(None), slice(None)) + inside[0]]
    return band


def add_padded(target, band, rows: tuple, cols: tuple) -> None:
    """The adjoint of ``read_padded``: target[:, :, rows, cols] += band, dropping what
    falls outside ``target`` (the padding)."""
    inside = _overlap(rows, cols, *target.shape[2:])
    target[(slice(None), slice(None)) + inside[0]] += band[(slice(None), slice(None)) + inside[1]]


def _overlap(rows, cols, height, width):
    """Slices of the input and of the band where a padded range meets the input."""
    (h0, h1), (w0, w1) = rows, cols
    top, left = min(max(h0, 0), height), min(max(w0, 0), width)
    bottom, right = max(min(h1, height), top), max(min(w1, width), left)  # empty, not negative
    return (slice(top, bottom), slice(left, right)), (
        slice(top - h0, bottom - h0),
        slice(left - w0, right - w0),
    )


def im2col(x, win: Windows, rows: slice, out_w: int):
    """Columns (C * kh * kw, N * len(rows) * out_w) for output ``rows`` of x (N, C, H, W):
    row (c, p, q) holds kernel offset (p, q) of channel c, column (n, i, j) output pixel
    (i, j) of sample n. The batch sits in the columns so one matrix multiply covers it."""
    if cuda_kernels_apply(x):
        return _im2col_cuda.im2col(x, win, rows, out_w)
    xp = get_array_module(x)
    band = read_padded(x, win.input_span(0, rows.start, rows.stop), win.input_span(1, 0, out_w))
    view = sliding_windows(band, win, (rows.stop - rows.start, out_w)).transpose(1, 2, 3, 0, 4, 5)
    c, kh, kw = view.shape[:3]
    return xp.ascontiguousarray(view).reshape(c * kh * kw, -1)


def col2im_add(target, windows, win: Windows, rows: slice) -> None:
    """The adjoint of ``sliding_windows``/``im2col``: add each window's values
    windows (N, C, kh, kw, len(rows), out_w) back onto target (N, C, H, W) in place."""
    if cuda_kernels_apply(target):
        _im2col_cuda.col2im_add(target, windows, win, rows)
        return
    xp = get_array_module(windows)
    (kh, kw), (sh, sw), (dh, dw) = win.kernel, win.stride, win.dilation
    out_h, out_w = windows.shape[4:]
    row_span, col_span = win.input_span(0, rows.start, rows.stop), win.input_span(1, 0, out_w)
    band = xp.zeros(
        target.shape[:2] + (row_span[1] - row_span[0], col_span[1] - col_span[0]),
        dtype=windows.dtype,
    )
    for p in range(kh):  # one strided add per kernel offset
        for q in range(kw):
            rows_hit = slice(p * dh, p * dh + sh * (out_h - 1) + 1, sh)
            cols_hit = slice(q * dw, q * dw + sw * (out_w - 1) + 1, sw)
            band[:, :, rows_hit, cols_hit] += windows[:, :, p, q]
    add_padded(target, band, row_span, col_span)
