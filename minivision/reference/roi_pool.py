"""RoI max pooling (Fast R-CNN), with torchvision's rules, over (N, C, H, W) feature maps.

Each region of interest, a row (batch index, x1, y1, x2, y2) in input coordinates, is
scaled by ``spatial_scale`` and rounded to whole cells, then cut into an out_h x out_w grid
of bins; each bin outputs the maximum of its cells per channel and records where it was
(its argmax, ``h * W + w`` in its (n, c) plane, as max pooling's switches). The gradient
goes back to the argmax, summed where one cell is the maximum of several bins.

torchvision's rules (its CPU kernel's), in the input's dtype:

- corners: ``round(x1 * spatial_scale)`` and so on, halves away from zero;
- size: ``max(x2 - x1 + 1, 1)`` cells (a reversed or empty region is one cell);
- bin i along an axis: ``[floor(i * size / out), ceil((i + 1) * size / out))`` plus the
  rounded start, clipped to ``[0, H]`` (``[0, W]``); an empty bin outputs 0, argmax -1;
- the maximum starts at -FLT_MAX and takes strictly greater values in row-major order:
  ties keep the first cell, NaN never wins, and a bin of values <= -FLT_MAX outputs
  -FLT_MAX with argmax -1 (and passes no gradient).
"""

from __future__ import annotations

import numpy as np

from minivision.backend import get_array_module

LOWEST = -float(np.finfo(np.float32).max)  # torchvision's -FLT_MAX, for float64 too


def round_half_away(values):
    """values (any shape) -> int64: to the nearest integer, halves away from zero (C's
    ``round``; ``xp.round`` takes halves to the even neighbour)."""
    xp = get_array_module(values)
    whole = xp.trunc(values)
    return (whole + xp.where(xp.abs(values - whole) >= 0.5, xp.sign(values), 0)).astype(np.int64)


def bins(rois, output_size, spatial_scale, in_hw):
    """rois (K, 5), output_size (out_h, out_w), in_hw (H, W) -> (h_bins (K, out_h, 2),
    w_bins (K, out_w, 2)), int64: each bin's [start, stop) rows and columns of the map.

    Lecture: region proposals (Fast R-CNN pools each region from the shared features).
    """
    corners = round_half_away(rois[:, 1:] * rois.dtype.type(spatial_scale))  # x1, y1, x2, y2
    return (
        _axis_bins(corners[:, 1], corners[:, 3], output_size[0], in_hw[0], rois.dtype),
        _axis_bins(corners[:, 0], corners[:, 2], output_size[1], in_hw[1], rois.dtype),
    )


def _axis_bins(start, stop, pooled: int, extent: int, dtype):
    """start, stop (K,) int64 rounded corners along one axis -> (K, pooled, 2) int64: each
    bin's [start, stop) cells, clipped to [0, extent]; arithmetic in ``dtype``."""
    xp = get_array_module(start)
    # BEGIN SOLUTION roi: write _axis_bins, each bin's [start, stop) cells along one axis
    size = xp.maximum(stop - start + 1, 1).astype(dtype)
    bin_size = size / dtype.type(pooled)
    edges = xp.arange(pooled + 1, dtype=dtype)[None, :] * bin_size[:, None]  # T(i) * bin_size
    first, last = xp.floor(edges[:, :-1]), xp.ceil(edges[:, 1:])
    cells = xp.stack([first, last], axis=-1).astype(np.int64) + start[:, None, None]
    return xp.clip(cells, 0, extent)
    # END SOLUTION roi


def roi_pool(x, rois, output_size, spatial_scale):
    """x (N, C, H, W), rois (K, 5) in x's dtype, output_size (out_h, out_w) -> (out, argmax),
    both (K, C, out_h, out_w), argmax int64: each bin's maximum and where it was, h * W + w
    (-1 for none).

    Every bin of every region is handled at once: the loops visit row p, column q of all
    bins together, in row-major order, and a cell outside its (smaller) bin takes no part.

    Lecture: region proposals (Fast R-CNN shares the convolutional features and pools each
    region from them).
    """
    xp = get_array_module(x, rois)
    height, width = x.shape[2:]
    h_bins, w_bins = bins(rois, output_size, spatial_scale, (height, width))
    # BEGIN SOLUTION roi: write roi_pool, each bin's maximum and its argmax (the rules above)
    top, bottom = h_bins[:, :, None, 0], h_bins[:, :, None, 1]  # (K, out_h, 1)
    left, right = w_bins[:, None, :, 0], w_bins[:, None, :, 1]  # (K, 1, out_w)
    image = rois[:, 0, None, None].astype(np.int64)  # (K, 1, 1)
    cells = x.transpose(0, 2, 3, 1)  # (N, H, W, C): the C values of a cell side by side
    empty = (bottom <= top) | (right <= left)  # (K, out_h, out_w)
    out = xp.full(empty.shape + (x.shape[1],), LOWEST, dtype=x.dtype)  # (K, out_h, out_w, C)
    out[empty] = 0  # an empty bin outputs 0
    argmax = xp.full(out.shape, -1, dtype=np.int64)
    for p in range(_longest(bottom - top)):
        for q in range(_longest(right - left)):
            row, column = top + p, left + q
            inside = ((row < bottom) & (column < right))[..., None]
            value = cells[image, xp.minimum(row, height - 1), xp.minimum(column, width - 1)]
            better = inside & (value > out)  # strictly greater: ties keep the first, NaN never wins
            out = xp.where(better, value, out)
            argmax = xp.where(better, (row * width + column)[..., None], argmax)
    out, argmax = out.transpose(0, 3, 1, 2), argmax.transpose(0, 3, 1, 2)  # (K, C, out_h, out_w)
    return xp.ascontiguousarray(out), xp.ascontiguousarray(argmax)
    # END SOLUTION roi


def _longest(spans) -> int:
    """The largest of ``spans`` (an int array), 0 when it is empty."""
    return int(spans.max()) if spans.size else 0


def roi_pool_backward(grad, argmax, rois, x_shape):
    """grad, argmax (K, C, out_h, out_w), rois (K, 5) -> the input's gradient, of ``x_shape``
    (N, C, H, W).

    Each bin sends its gradient to the cell it took its maximum from; where bins (of one
    region or of several) share that cell, their gradients add up, region by region and
    bin by bin in row-major order. A bin with argmax -1 passes nothing.

    Lecture: region proposals (RoI pooling is max pooling over each region's bins).
    """
    xp = get_array_module(grad, argmax)
    n, channels, height, width = x_shape
    grad_x = xp.zeros((n, channels, height * width), dtype=grad.dtype)
    # BEGIN SOLUTION roi: write roi_pool_backward, each bin's gradient added at its argmax
    image = xp.broadcast_to(rois[:, 0].astype(np.int64)[:, None, None, None], argmax.shape)
    channel = xp.broadcast_to(xp.arange(channels)[None, :, None, None], argmax.shape)
    found = argmax >= 0
    # add.at adds repeated positions one by one, in the order given (region, channel, bin)
    xp.add.at(grad_x, (image[found], channel[found], argmax[found]), grad[found])
    # END SOLUTION roi
    return grad_x.reshape(x_shape)
