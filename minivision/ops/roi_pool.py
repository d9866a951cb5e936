"""RoI max pooling (Fast R-CNN), equal to the bit to torchvision's CPU kernel.

Each region, scaled by ``spatial_scale`` and rounded to whole cells, is cut into an
out_h x out_w grid of bins; each bin outputs the maximum of its cells per channel and
records where it was (its argmax, ``h * W + w``), as ``max_pool2d``'s switches. The
gradient goes back to the argmax, summed where one cell is the maximum of several bins.
torchvision's rules for rounding, bins and maxima are written out in
``minivision.reference.roi_pool``, which this op runs when the reference switch is on;
otherwise float32 and float64 maps take its fast path (``_roi_pool_fast``: Numba loops on
the CPU, CUDA kernels on the GPU), equal to it bit for bit.
"""

from __future__ import annotations

from minivision.nn.module import Module
from minivision.ops._rois import parse
from minivision.reference import roi_pool as reference
from minivision.tensor import Function

# isort: split
# BEGIN FAST PATH roi
from minivision.dispatch import fast_paths_enabled
from minivision.ops import _roi_pool_fast

# END FAST PATH roi


class _RoIPool(Function):
    """(out, argmax) of every region's bins; only out is differentiable: its gradient goes
    back to the argmax."""

    def forward(self, x, rois=None, output_size=None, spatial_scale=None):
        self.rois, self.spatial_scale, self.x_shape = rois, spatial_scale, x.shape
        # BEGIN FAST PATH roi
        if fast_paths_enabled() and _roi_pool_fast.takes(x):
            out, self.argmax = _roi_pool_fast.roi_pool(x, rois, output_size, spatial_scale)
            return out, self.argmax
        # END FAST PATH roi
        out, self.argmax = reference.roi_pool(x, rois, output_size, spatial_scale)
        return out, self.argmax

    def backward(self, grad):
        # BEGIN FAST PATH roi
        if fast_paths_enabled() and _roi_pool_fast.takes(grad):
            return _roi_pool_fast.roi_pool_backward(
                grad, self.argmax, self.rois, self.spatial_scale, self.x_shape
            )
        # END FAST PATH roi
        return reference.roi_pool_backward(grad, self.argmax, self.rois, self.x_shape)


def roi_pool_with_argmax(input, boxes, output_size, spatial_scale=1.0):
    """``roi_pool``'s output and each bin's argmax: (out (K, C, out_h, out_w), argmax, same
    shape, int64: h * W + w of the bin's maximum in its (n, c) plane, -1 for none). The
    argmax is a Tensor outside the graph."""
    _, rois, _, out_hw, scale = parse("roi_pool", input, boxes, output_size, spatial_scale)
    return _RoIPool.apply(input, rois=rois, output_size=out_hw, spatial_scale=scale)


def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    """Max-pool each region of input (N, C, H, W) into an output_size grid: (K, C, out_h, out_w).

    boxes: (K, 5) rows (batch index, x1, y1, x2, y2) in input coordinates divided by
    ``spatial_scale`` (e.g. 1/16 for a stride-16 map), or a list of (L_i, 4) boxes per
    image. output_size: an int or (out_h, out_w). float32/float64; boxes of another dtype
    are converted to the input's. Differentiable in ``input``.
    """
    return roi_pool_with_argmax(input, boxes, output_size, spatial_scale)[0]


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
