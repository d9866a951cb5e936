"""The fast path of RoI max pooling on the CPU: Numba loops on worker threads, and the
dispatch to the CUDA twins (``_roi_pool_cuda``) for CuPy arrays.

Both take the bins ``reference.roi_pool.bins`` computes and find each bin's maximum by
``reference.roi_pool``'s rules (torchvision's), cell by cell in row-major order, so
outputs and argmax equal the reference's to the bit; the gradient adds up its terms in the
reference's order (region, then bin), so it is equal to the bit too. The forward kernel
takes a share of the RoIs; the backward kernel a share of the channels, so that no two
workers write one element.
"""

# FAST PATH FILE roi
from __future__ import annotations

import numpy as np

from minivision import threads
from minivision._numba import njit
from minivision.dispatch import cuda_kernels_apply, numba_kernels_apply
from minivision.ops import _roi_pool_cuda
from minivision.reference.roi_pool import LOWEST, bins


def takes(x) -> bool:
    """Whether x (float32 or float64) has kernels: NumPy with Numba, or CuPy."""
    return numba_kernels_apply(x) or cuda_kernels_apply(x)


def roi_pool(x, rois, output_size, spatial_scale):
    """x (N, C, H, W), rois (K, 5) in x's dtype -> (out, argmax), both (K, C, out_h, out_w):
    ``reference.roi_pool``'s result."""
    h_bins, w_bins = bins(rois, output_size, spatial_scale, x.shape[2:])
    batch = rois[:, 0].astype(np.int64)
    if cuda_kernels_apply(x):
        return _roi_pool_cuda.roi_pool(x, batch, h_bins, w_bins, LOWEST, output_size)
    out = np.empty((batch.shape[0], x.shape[1]) + tuple(output_size), dtype=x.dtype)
    argmax = np.empty(out.shape, dtype=np.int64)
    lowest = x.dtype.type(LOWEST)
    planes = np.ascontiguousarray(x)  # the kernel reads each plane flat
    threads.over_batch(
        out,
        lambda share, _: roi_pool_rois(
            planes, batch[share], h_bins[share], w_bins[share], lowest, out[share], argmax[share]
        ),
    )
    return out, argmax


def roi_pool_backward(grad, argmax, rois, spatial_scale, x_shape):
    """grad, argmax (K, C, out_h, out_w), rois (K, 5) -> the input's gradient (``x_shape``):
    ``reference.roi_pool_backward``'s result."""
    batch = rois[:, 0].astype(np.int64)
    if cuda_kernels_apply(grad):
        h_bins, w_bins = bins(rois, grad.shape[2:], spatial_scale, x_shape[2:])
        return _roi_pool_cuda.roi_pool_backward(grad, argmax, batch, h_bins, w_bins, x_shape)
    n, channels, height, width = x_shape
    grad_planes = np.zeros((n, channels, height * width), dtype=grad.dtype)
    threads.parallel_map(
        lambda share: roi_pool_backward_channels(
            grad[:, share], argmax[:, share], batch, grad_planes[:, share]
        ),
        threads.batch_parts(grad_planes, axis=1),
    )
    return grad_planes.reshape(x_shape)


@njit(cache=True, nogil=True)
def roi_pool_rois(x, batch, h_bins, w_bins, lowest, out, argmax):
    """out[k, c, i, j] = max of x[batch[k], c] (x C-contiguous) over rows h_bins[k, i] =
    [start, stop) and columns w_bins[k, j]; argmax[k, c, i, j] = h * W + w of that maximum.
    torchvision's rule: the running maximum starts at ``lowest`` (-FLT_MAX) and is replaced
    only by a strictly greater value, in row-major order (ties keep the first; NaN never
    wins); a bin with no value in it, or none above -FLT_MAX, keeps 0 or -FLT_MAX and
    argmax -1."""
    rois, channels, out_h, out_w = out.shape
    width = x.shape[3]
    planes = x.reshape(x.shape[0], channels, x.shape[2] * width)  # x is C-contiguous
    for k in range(rois):
        for c in range(channels):
            plane = planes[batch[k], c]
            for i in range(out_h):
                h_start, h_stop = h_bins[k, i, 0], h_bins[k, i, 1]
                for j in range(out_w):
                    w_start, w_stop = w_bins[k, j, 0], w_bins[k, j, 1]
                    best, arg = lowest, -1
                    if h_stop <= h_start or w_stop <= w_start:
                        best = out.dtype.type(0)
                    for h in range(h_start, h_stop):
                        for at in range(h * width + w_start, h * width + w_stop):
                            value = plane[np.uint64(at)]  # unsigned: no negative-index check
                            if value > best:
                                best, arg = value, at
                    out[k, c, i, j] = best
                    argmax[k, c, i, j] = arg


@njit(cache=True, nogil=True)
def roi_pool_backward_channels(grad, argmax, batch, grad_planes):
    """grad_planes[batch[k], c, argmax[k, c, i, j]] += grad[k, c, i, j] for every (k, i, j)
    in order, skipping argmax -1; grad_planes (N, C, H * W), the input's gradient with each
    plane flat, starts at zero."""
    rois, channels, out_h, out_w = grad.shape
    for k in range(rois):
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    at = argmax[k, c, i, j]
                    if at >= 0:
                        grad_planes[batch[k], c, at] += grad[k, c, i, j]
