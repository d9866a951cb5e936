"""RoI max pooling (Fast R-CNN), equal to the bit to torchvision's CPU kernel.

Each region, scaled by ``spatial_scale`` and rounded to whole cells, is cut into an
out_h x out_w grid of bins; each bin outputs the maximum of its cells per channel and
records where it was (its switch, ``h * W + w``), as ``max_pool2d`` does. The gradient
goes back to the switches, summed where one cell is the maximum of several bins.

torchvision's rules, followed exactly (in the input's dtype):
- corners: ``round(x1 * spatial_scale)`` and so on, halves away from zero;
- size: ``max(x2 - x1 + 1, 1)`` cells (a reversed or empty region is one cell);
- bin i along an axis: ``[floor(i * size / out), ceil((i + 1) * size / out))`` plus the
  rounded start, clipped to ``[0, H]``; an empty bin outputs 0 and has switch -1;
- the maximum starts at -FLT_MAX and takes strictly greater values in row-major order:
  ties keep the first cell, NaN never wins, a bin of values <= -FLT_MAX outputs -FLT_MAX
  with switch -1 (and passes no gradient).
"""
from __future__ import annotations

import numpy as np

from minivision import threads
from minivision.backend import cuda_kernels_apply, get_array_module
from minivision.ops import _roi_cuda, _roi_kernels
from minivision.ops._rois import parse
from minivision.nn.module import Module
from minivision.tensor import Function

LOWEST = -float(np.finfo(np.float32).max)  # torchvision's -FLT_MAX, for float64 too


def _round_half_away(values, xp):
    """std::round: to the nearest integer, halves away from zero (xp.round takes halves to even)."""
    whole = xp.trunc(values)
    return (whole + xp.where(xp.abs(values - whole) >= 0.5, xp.sign(values), 0)).astype(np.int64)


def bins(rois, scale, out_hw, in_hw):
    """Each RoI's bins: (h_bins (K, out_h, 2), w_bins (K, out_w, 2)) int64, [start, stop) rows
    and columns of the input map, for rois (K, 5) and ``scale`` in the input's dtype."""
    xp = get_array_module(rois)
    corners = _round_half_away(rois[:, 1:] * scale, xp)  # x1, y1, x2, y2
    return tuple(_axis_bins(corners[:, axis], corners[:, axis + 2], pooled, extent, rois.dtype, xp)
                 for axis, pooled, extent in ((1, out_hw[0], in_hw[0]), (0, out_hw[1], in_hw[1])))


def _axis_bins(start, stop, pooled: int, extent: int, dtype, xp):
    """[start, stop) cells of each bin along one axis, (K, pooled, 2) int64, from the rounded
    corners start, stop (K,) and the map's extent (H or W), with arithmetic in ``dtype``."""
    # BEGIN SOLUTION roi: write _axis_bins, each bin's [start, stop) cells along one axis (see the module docstring)
    size = xp.maximum(stop - start + 1, 1).astype(dtype)
    bin_size = size / dtype.type(pooled)
    edges = xp.arange(pooled + 1, dtype=dtype)[None, :] * bin_size[:, None]  # T(i) * bin_size
    first, last = xp.floor(edges[:, :-1]), xp.ceil(edges[:, 1:])
    return xp.clip(xp.stack([first, last], axis=-1).astype(np.int64) + start[:, None, None], 0, extent)
    # END SOLUTION roi


class _RoIPool(Function):
    """out[k, c, i, j] = x[batch[k], c].flat[switches[k, c, i, j]] (0 where the switch is -1);
    the switches are recorded on the Function and the gradient adds back to them."""

    def forward(self, x, batch=None, h_bins=None, w_bins=None):
        out_hw = (h_bins.shape[1], w_bins.shape[1])
        if cuda_kernels_apply(x):
            out, switches = _roi_cuda.roi_pool(x, batch, h_bins, w_bins, LOWEST, out_hw)
        else:
            out = np.empty((batch.shape[0], x.shape[1]) + out_hw, dtype=x.dtype)
            switches = np.empty(out.shape, dtype=np.int64)
            lowest, planes = x.dtype.type(LOWEST), np.ascontiguousarray(x)  # the kernel reads each plane flat
            threads.over_batch(out, lambda share, _: _roi_kernels.roi_pool_rois(
                planes, batch[share], h_bins[share], w_bins[share], lowest, out[share], switches[share]))
        self.switches, self.batch, self.h_bins, self.w_bins, self.x_shape = switches, batch, h_bins, w_bins, x.shape
        return out

    def backward(self, grad):
        if cuda_kernels_apply(grad):
            return _roi_cuda.roi_pool_backward(grad, self.switches, self.batch, self.h_bins, self.w_bins, self.x_shape)
        n, channels, height, width = self.x_shape
        grad_planes = np.zeros((n, channels, height * width), dtype=grad.dtype)
        # a worker per share of channels: each adds its channels' terms in torchvision's order
        threads.parallel_map(lambda share: _roi_kernels.roi_pool_backward_channels(
            grad[:, share], self.switches[:, share], self.batch, grad_planes[:, share]),
            threads.batch_parts(grad_planes, axis=1))
        return grad_planes.reshape(self.x_shape)


def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    """Max-pool each region of input (N, C, H, W) into an output_size grid: (K, C, out_h, out_w).

    boxes: (K, 5) rows (batch index, x1, y1, x2, y2) in input coordinates divided by
    ``spatial_scale`` (e.g. 1/16 for a stride-16 map), or a list of (L_i, 4) boxes per
    image. output_size: an int or (out_h, out_w). float32/float64; boxes of another dtype
    are converted to the input's. Differentiable in ``input``.
    """
    x, rois, batch, out_hw, scale = parse("roi_pool", input, boxes, output_size, spatial_scale)
    h_bins, w_bins = bins(rois, scale, out_hw, x.shape[2:])
    return _RoIPool.apply(input, batch=batch, h_bins=h_bins, w_bins=w_bins)


class RoIPool(Module):
    """Fast R-CNN's RoI max pooling as a module, as ``torchvision.ops.RoIPool``:
    forward(input (N, C, H, W), rois) -> (K, C, *output_size)."""

    def __init__(self, output_size, spatial_scale: float):
        super().__init__()
        self.output_size, self.spatial_scale = output_size, spatial_scale

    def forward(self, input, rois):
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"
