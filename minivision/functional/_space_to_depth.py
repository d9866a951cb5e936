"""A strided convolution whose kernel is a multiple of its stride, as a stride-1 convolution.

With stride s and kernel k = t * s (per axis, dilation 1), output i reads padded input
positions s * i + q for q < k. Writing q = s * a + r (a < t, r < s) splits the input into
s * s phases, X_r[m] = x_padded[s * m + r], stacked as channels ("space to depth"); then

    out[i] = sum_a sum_r X_r[i + a] * w[s * a + r]

a stride-1 correlation of X with a t x t kernel. A 4x4 stride-2 transposed convolution (FCN's
upsampling) becomes 2x2 windows over 4 phases (no 16-fold column matrix, no col2im), and a
2x2 stride-2 one (U-Net's up-convolution) a plain matrix multiply. ``_conv_fast`` routes its
three kernels (correlation, adjoint, weight gradient) through here when this applies.
On the CPU the rearrangement is one Numba pass each way (a transposing NumPy copy plus an
add took 33 ms of a 134 ms forward+backward of the 4x4/2 transposed benchmark layer).
"""

# FAST PATH FILE conv
from __future__ import annotations

import numpy as np

from minivision import threads
from minivision._numba import njit
from minivision.backend import get_array_module
from minivision.dispatch import numba_kernels_apply
from minivision.functional._geometry import Windows
from minivision.functional.im2col import add_padded, read_padded


def applies(win: Windows) -> bool:
    """A strided, undilated window whose kernel is a whole number of strides on both axes."""
    return (
        win.stride != (1, 1)
        and win.dilation == (1, 1)
        and all(k % s == 0 for k, s in zip(win.kernel, win.stride))
    )


def stride_one(win: Windows) -> Windows:
    """The t x t, stride-1, unpadded window over the phases (padding lives in ``space_to_depth``)."""
    return Windows(tuple(k // s for k, s in zip(win.kernel, win.stride)), (1, 1), (0, 0), (1, 1))


def _phase_grid(win: Windows, out_hw) -> tuple[int, int]:
    """(M_h, M_w): phase positions read by ``out_hw`` outputs, out + t - 1 per axis."""
    return tuple(o + k // s - 1 for o, k, s in zip(out_hw, win.kernel, win.stride))


def phases_shape(in_shape, win: Windows, out_hw) -> tuple:
    """The shape ``space_to_depth`` gives an input of ``in_shape`` (N, C, H, W): (N, C * sh * sw, M_h, M_w)."""
    return (in_shape[0], in_shape[1] * win.stride[0] * win.stride[1]) + _phase_grid(win, out_hw)


def phase_weight_shape(weight_shape, win: Windows) -> tuple:
    """The shape ``phase_weight`` gives a weight of ``weight_shape`` (O, C, kh, kw): (O, C * sh * sw, th, tw)."""
    return (weight_shape[0], weight_shape[1] * win.stride[0] * win.stride[1]) + stride_one(
        win
    ).kernel


def _spans(win: Windows, grid):
    """The padded input rows and columns the phases cover, [-p, s * M - p) per axis."""
    return tuple((-p, s * m - p) for p, s, m in zip(win.padding, win.stride, grid))


def space_to_depth(x, win: Windows, out_hw):
    """x (N, C, H, W) -> X (N, C * sh * sw, M_h, M_w): X[n, (c, rh, rw), i, j] = x[n, c, sh * i + rh - ph,
    sw * j + rw - pw], zero in the padding; channels stay grouped by input channel (so by group)."""
    if not numba_kernels_apply(x):
        return _space_to_depth_xp(x, win, out_hw)
    (sh, sw), grid = win.stride, _phase_grid(win, out_hw)
    out = np.empty((x.shape[0], x.shape[1] * sh * sw) + grid, dtype=x.dtype)
    _shuffle_planes(np.ascontiguousarray(x), out, win, to_phases=True)
    return out


def _space_to_depth_xp(x, win: Windows, out_hw):
    """``space_to_depth`` with array operations (the GPU path)."""
    (sh, sw), grid = win.stride, _phase_grid(win, out_hw)
    n, c = x.shape[:2]
    band = read_padded(x, *_spans(win, grid))  # (N, C, sh * M_h, sw * M_w)
    phases = band.reshape(n, c, grid[0], sh, grid[1], sw).transpose(0, 1, 3, 5, 2, 4)
    return get_array_module(x).ascontiguousarray(phases).reshape(n, c * sh * sw, *grid)


def space_to_depth_adjoint(phases, win: Windows, in_shape):
    """The adjoint of ``space_to_depth``: X (N, C * sh * sw, M_h, M_w) back to (N, C, H, W) = ``in_shape``,
    dropping what lies in the padding (zero where no phase covers the input)."""
    if not numba_kernels_apply(phases):
        return _space_to_depth_adjoint_xp(phases, win, in_shape)
    out = np.zeros(in_shape, dtype=phases.dtype)
    _shuffle_planes(out, np.ascontiguousarray(phases), win, to_phases=False)
    return out


def _space_to_depth_adjoint_xp(phases, win: Windows, in_shape):
    """``space_to_depth_adjoint`` with array operations (the GPU path)."""
    xp = get_array_module(phases)
    (sh, sw), (n, c) = win.stride, in_shape[:2]
    grid = phases.shape[2:]
    out = xp.zeros(in_shape, dtype=phases.dtype)
    band = (
        phases.reshape(n, c, sh, sw, *grid)
        .transpose(0, 1, 4, 2, 5, 3)
        .reshape(n, c, sh * grid[0], sw * grid[1])
    )
    add_padded(out, band, *_spans(win, grid))
    return out


def _shuffle_planes(x, phases, win: Windows, to_phases: bool) -> None:
    """Copy between x (N, C, H, W) and its phases (N, C * sh * sw, M_h, M_w), both C-contiguous
    NumPy arrays, one Numba pass over each worker's share of the N * C planes: into the phases
    (zero in the padding) when ``to_phases``, else back into x (the positions a phase covers;
    each is covered at most once, so nothing needs adding)."""
    (sh, sw), (ph, pw) = win.stride, win.padding
    planes = x.reshape((-1,) + x.shape[2:])
    phase_planes = phases.reshape((planes.shape[0], sh * sw) + phases.shape[2:])
    threads.over_batch(
        planes,
        lambda share, _: _shuffle_kernel(
            planes[share], phase_planes[share], sh, sw, ph, pw, to_phases
        ),
    )


@njit(cache=True, nogil=True)
def _shuffle_kernel(planes, phase_planes, sh, sw, ph, pw, to_phases):
    """planes (P, H, W) <-> phase_planes (P, sh * sw, M_h, M_w) with phase_planes[p, rh * sw + rw, i, j]
    at planes[p, sh * i + rh - ph, sw * j + rw - pw]."""
    count, height, width = planes.shape
    grid_h, grid_w = phase_planes.shape[2], phase_planes.shape[3]
    zero = planes.dtype.type(0)
    for p in range(count):
        for rh in range(sh):
            for i in range(grid_h):
                h = sh * i + rh - ph
                row_inside = 0 <= h < height
                for rw in range(sw):
                    phase = rh * sw + rw
                    for j in range(grid_w):
                        w = sw * j + rw - pw
                        inside = row_inside and 0 <= w < width
                        if to_phases:
                            phase_planes[p, phase, i, j] = planes[p, h, w] if inside else zero
                        elif inside:
                            planes[p, h, w] = phase_planes[p, phase, i, j]


def phase_weight(weight, win: Windows):
    """(O, C, kh, kw) -> (O, C * sh * sw, th, tw): entry [o, (c, rh, rw), a, b] = w[o, c, sh * a + rh, sw * b + rw]."""
    (sh, sw), (th, tw) = win.stride, stride_one(win).kernel
    out_c, in_c = weight.shape[:2]
    w = weight.reshape(out_c, in_c, th, sh, tw, sw).transpose(0, 1, 3, 5, 2, 4)
    return w.reshape(out_c, in_c * sh * sw, th, tw)


def phase_weight_adjoint(phased, win: Windows, weight_shape):
    """The inverse of ``phase_weight``: (O, C * sh * sw, th, tw) -> ``weight_shape`` (O, C, kh, kw)."""
    (sh, sw), (th, tw) = win.stride, stride_one(win).kernel
    out_c, in_c = weight_shape[:2]
    w = phased.reshape(out_c, in_c, sh, sw, th, tw).transpose(0, 1, 4, 2, 5, 3)
    return w.reshape(weight_shape)
