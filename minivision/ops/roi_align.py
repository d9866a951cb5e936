"""RoI align (Mask R-CNN), equal to torchvision's CPU kernel to the rounding of its dtype.

Each region, scaled by ``spatial_scale`` without rounding, is cut into an out_h x out_w
grid of bins; each bin outputs the mean of a grid of samples read bilinearly. The
gradient spreads back through the same bilinear weights.

torchvision's rules, followed exactly (in the input's dtype):
- start = x1 * spatial_scale - offset, offset 0.5 when ``aligned`` (pixel centres) else 0;
  size = end - start, at least 1 unless ``aligned``; bin = size / out;
- samples per bin along an axis: ``sampling_ratio`` if > 0, else ceil(bin) (0 or fewer
  for an empty or reversed region: the bin outputs 0); sample iy of bin i sits at
  start + i * bin + (iy + 0.5) * bin / grid;
- a sample with y < -1 or y > H (x alike) reads 0; otherwise y <= 0 reads row 0 and
  y >= H - 1 reads row H - 1, and rows floor(y), floor(y) + 1 are blended;
- the sum over samples is divided by max(grid_h * grid_w, 1).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from minivision import threads
from minivision.backend import get_array_module
from minivision.dispatch import cuda_kernels_apply
from minivision.nn.module import Module
from minivision.ops import _roi_cuda, _roi_kernels
from minivision.ops._rois import parse
from minivision.tensor import Function


@dataclass
class _Samples:
    """Where every bin of every RoI samples the map. grids (K, 2) int64: samples per bin
    (rows, columns), at least 0; count (K,): the divisor; y_taps (K, out_h, G_h, 2) int64:
    each sample's (low, high) row, -1 for one off the map or past its RoI's grid;
    y_weights (same, input dtype): (ly, hy), the blend, 0 off the map; y_spans (K, out_h, 2):
    the first and last row a bin reads (first > last when none); columns alike."""

    grids: object
    count: object
    y_taps: object
    y_weights: object
    y_spans: object
    x_taps: object
    x_weights: object
    x_spans: object


def _axis_samples(start, size, pooled: int, grid, extent: int, xp):
    """One axis of ``_Samples``: taps, weights and spans, from each RoI's start and size (K,)
    in the input's dtype and its samples per bin ``grid`` (K,) int64."""
    dtype = start.dtype
    bin_size = (size / dtype.type(pooled))[:, None, None]
    per_bin = max(int(grid.max()), 1) if grid.size else 1
    offsets = xp.arange(per_bin, dtype=dtype) + dtype.type(0.5)  # iy + 0.5
    positions = (
        start[:, None, None] + xp.arange(pooled, dtype=dtype)[None, :, None] * bin_size
    ) + offsets * bin_size / xp.maximum(grid, 1).astype(dtype)[:, None, None]
    used = (positions >= -1) & (positions <= extent) & (xp.arange(per_bin) < grid[:, None, None])
    positions = xp.where(positions <= 0, dtype.type(0), positions)
    low = xp.where(used, positions, 0).astype(np.int64)  # truncation (positions >= 0), as (int)y
    top = low >= extent - 1
    low = xp.where(top, extent - 1, low)
    high = xp.where(top, extent - 1, low + 1)
    blend = xp.where(
        top, dtype.type(0), positions - low.astype(dtype)
    )  # at the last row: y = H - 1 exactly
    weights = xp.where(
        used[..., None], xp.stack([blend, dtype.type(1) - blend], axis=-1), dtype.type(0)
    )
    taps = xp.where(used[..., None], xp.stack([low, high], axis=-1), -1)
    first = xp.where(used, low, extent).min(axis=2)
    last = xp.where(used, high, -1).max(axis=2)
    return taps, weights.astype(dtype), xp.stack([first, last], axis=-1)


def samples(rois, scale, out_hw, in_hw, sampling_ratio: int, aligned: bool) -> _Samples:
    """The sampling geometry of rois (K, 5) in the input's dtype, ``scale`` of that dtype."""
    xp = get_array_module(rois)
    dtype = rois.dtype
    offset = dtype.type(0.5 if aligned else 0)
    start = rois[:, 1:3] * scale - offset  # x, y
    size = (rois[:, 3:5] * scale - offset) - start
    if not aligned:
        size = xp.maximum(size, dtype.type(1))  # a malformed RoI is 1x1
    pooled = xp.asarray([out_hw[1], out_hw[0]], dtype=dtype)
    if sampling_ratio > 0:
        grids = xp.full(size.shape, sampling_ratio, dtype=np.int64)
    else:
        grids = xp.ceil(size / pooled).astype(
            np.int64
        )  # C's (int)ceil(size / out): negative when reversed
    count = xp.maximum(grids[:, 0] * grids[:, 1], 1).astype(dtype)
    grids = xp.maximum(grids, 0)
    x_axis = _axis_samples(start[:, 0], size[:, 0], out_hw[1], grids[:, 0], in_hw[1], xp)
    y_axis = _axis_samples(start[:, 1], size[:, 1], out_hw[0], grids[:, 1], in_hw[0], xp)
    return _Samples(xp.ascontiguousarray(grids[:, ::-1]), count, *y_axis, *x_axis)


class _RoIAlign(Function):
    """out = the bilinear bin means of ``geometry`` (``_Samples``); the gradient spreads back
    through the same weights."""

    def forward(self, x, batch=None, geometry=None, out_hw=None):
        self.batch, self.geometry, self.x_shape = batch, geometry, x.shape
        if cuda_kernels_apply(x):
            return _roi_cuda.roi_align(x, batch, geometry, out_hw)
        out = np.empty((batch.shape[0], x.shape[1]) + tuple(out_hw), dtype=x.dtype)
        g, planes = geometry, np.ascontiguousarray(x)  # the kernel reads each plane flat
        threads.over_batch(
            out,
            lambda share, _: _roi_kernels.roi_align_rois(
                planes,
                batch[share],
                g.grids[share],
                g.count[share],
                g.y_taps[share],
                g.y_weights[share],
                g.x_taps[share],
                g.x_weights[share],
                out[share],
            ),
        )
        return out

    def backward(self, grad):
        if cuda_kernels_apply(grad):
            return _roi_cuda.roi_align_backward(grad, self.batch, self.geometry, self.x_shape)
        grad_x = np.zeros(self.x_shape, dtype=grad.dtype)
        g = self.geometry
        # a worker per share of channels: each adds its channels' terms in torchvision's order
        threads.parallel_map(
            lambda share: _roi_kernels.roi_align_backward_channels(
                grad[:, share],
                self.batch,
                g.grids,
                g.count,
                g.y_taps,
                g.y_weights,
                g.x_taps,
                g.x_weights,
                grad_x[:, share],
            ),
            threads.batch_parts(grad_x, axis=1),
        )
        return grad_x


def _check_sampling_ratio(sampling_ratio) -> int:
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, numbers.Integral):
        raise TypeError(
            f"roi_align: sampling_ratio must be an int (<= 0: adaptive), got {sampling_ratio!r}"
        )
    return int(sampling_ratio)


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """Average bilinear samples of each region of input (N, C, H, W) over an output_size grid:
    (K, C, out_h, out_w).

    boxes: (K, 5) rows (batch index, x1, y1, x2, y2), or a list of (L_i, 4) boxes per image,
    in input coordinates divided by ``spatial_scale``. sampling_ratio: samples per bin and
    axis, or <= 0 for ceil(bin size). aligned: shift by half a pixel so that corners fall on
    pixel centres (Detectron2's RoIAlignV2). float32/float64; boxes of another dtype are
    converted to the input's. Differentiable in ``input``.
    """
    ratio = _check_sampling_ratio(sampling_ratio)
    x, rois, batch, out_hw, scale = parse("roi_align", input, boxes, output_size, spatial_scale)
    geometry = samples(rois, scale, out_hw, x.shape[2:], ratio, bool(aligned))
    return _RoIAlign.apply(input, batch=batch, geometry=geometry, out_hw=out_hw)


class RoIAlign(Module):
    """RoI Align as a module, as ``torchvision.ops.RoIAlign``:
    forward(input (N, C, H, W), rois) -> (K, C, *output_size)."""

    def __init__(
        self, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool = False
    ):
        super().__init__()
        self.output_size, self.spatial_scale = output_size, spatial_scale
        self.sampling_ratio, self.aligned = sampling_ratio, aligned

    def forward(self, input, rois):
        return roi_align(
            input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )
