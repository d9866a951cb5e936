"""Numba kernels for RoI align on the CPU, twins of ``_roi_cuda``.

The geometry (each sample's bilinear taps) is computed in ``roi_align`` with array ops;
these loops do the per-channel work with the arithmetic of torchvision's CPU kernel, in its
order and its dtype, so results are equal to the bit. The forward kernel takes a share of
the RoIs; the backward kernel takes a share of the channels and walks the RoIs in order
inside each, so every input gradient adds up its terms in torchvision's order, and no two
workers write one element. (RoI max pooling's kernels are in ``_roi_pool_fast``.)
"""

from __future__ import annotations

import numpy as np

from minivision._numba import njit


@njit(cache=True, nogil=True)
def roi_align_rois(x, batch, grids, count, y_taps, y_weights, x_taps, x_weights, out):
    """out[k, c, i, j] = the mean over bin (i, j)'s grids[k] = (grid_h, grid_w) samples of
    x[batch[k], c] (x C-contiguous) read bilinearly. A sample's rows are y_taps[k, i, iy] = (low, high) with
    weights y_weights[k, i, iy] = (ly, hy) (columns alike); taps of -1 mark a sample off the
    map, which reads position 0 with weight 0 as torchvision's does. As torchvision does,
    each RoI's four flat positions and four weights (hy * hx, hy * lx, ly * hx, ly * lx) per
    sample are worked out once, then every channel sums in its order and divides by
    count[k] = max(grid_h * grid_w, 1)."""
    rois, channels, out_h, out_w = out.shape
    width = x.shape[3]
    planes = x.reshape(x.shape[0], channels, x.shape[2] * width)  # x is C-contiguous
    samples = y_taps.shape[2] * x_taps.shape[2]
    # unsigned positions and loop counters from 0 spare Numba's negative-index checks
    positions = np.empty((out_h, out_w, samples, 4), dtype=np.uint64)
    weights = np.empty((out_h, out_w, samples, 4), dtype=out.dtype)
    for k in range(rois):
        grid_h, grid_w = grids[k, 0], grids[k, 1]
        for i in range(out_h):
            for j in range(out_w):
                for iy in range(grid_h):
                    y_low, y_high = y_taps[k, i, iy, 0], y_taps[k, i, iy, 1]
                    ly, hy = y_weights[k, i, iy, 0], y_weights[k, i, iy, 1]
                    for ix in range(grid_w):
                        x_low, x_high = x_taps[k, j, ix, 0], x_taps[k, j, ix, 1]
                        lx, hx = x_weights[k, j, ix, 0], x_weights[k, j, ix, 1]
                        at = positions[i, j, iy * grid_w + ix]
                        if y_low < 0 or x_low < 0:
                            at[:] = 0
                        else:
                            at[0], at[1] = y_low * width + x_low, y_low * width + x_high
                            at[2], at[3] = y_high * width + x_low, y_high * width + x_high
                        w = weights[i, j, iy * grid_w + ix]
                        w[0], w[1], w[2], w[3] = hy * hx, hy * lx, ly * hx, ly * lx
        per_bin = grid_h * grid_w
        for c in range(channels):
            plane = planes[batch[k], c]
            for i in range(out_h):
                for j in range(out_w):
                    total = out.dtype.type(0)
                    for s in range(per_bin):
                        at, w = positions[i, j, s], weights[i, j, s]
                        total += (
                            w[0] * plane[at[0]]
                            + w[1] * plane[at[1]]
                            + w[2] * plane[at[2]]
                            + w[3] * plane[at[3]]
                        )
                    out[k, c, i, j] = total / count[k]


@njit(cache=True, nogil=True)
def roi_align_backward_channels(
    grad, batch, grids, count, y_taps, y_weights, x_taps, x_weights, grad_x
):
    """The adjoint of ``roi_align_rois``: each sample adds grad * w / count to its four taps,
    in torchvision's order (k, i, j, iy, ix, then the taps); samples off the map add
    nothing. grad_x starts at zero."""
    rois, channels, out_h, out_w = grad.shape
    for c in range(channels):
        for k in range(rois):
            plane = grad_x[batch[k], c]
            for i in range(out_h):
                for j in range(out_w):
                    g = grad[k, c, i, j]
                    for iy in range(grids[k, 0]):
                        y_low, y_high = y_taps[k, i, iy, 0], y_taps[k, i, iy, 1]
                        ly, hy = y_weights[k, i, iy, 0], y_weights[k, i, iy, 1]
                        if y_low < 0:
                            continue
                        for ix in range(grids[k, 1]):
                            x_low, x_high = x_taps[k, j, ix, 0], x_taps[k, j, ix, 1]
                            lx, hx = x_weights[k, j, ix, 0], x_weights[k, j, ix, 1]
                            if x_low < 0:
                                continue
                            plane[y_low, x_low] += g * (hy * hx) / count[k]
                            plane[y_low, x_high] += g * (hy * lx) / count[k]
                            plane[y_high, x_low] += g * (ly * hx) / count[k]
                            plane[y_high, x_high] += g * (ly * lx) / count[k]
