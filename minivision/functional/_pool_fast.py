"""Fast paths of max pooling and unpooling, equal to ``minivision.reference.pool``.

On the CPU, Numba kernels (``_pool_kernels``) run over each worker thread's share of the
(n, c) planes, with the lecture's 2x2 windows at stride 2 unrolled; on the GPU, CUDA kernels
(``_pool_cuda``). Both take float32 and float64 arrays (``takes``); other arrays (float16)
run the reference. The switches come from one pass over each window in the reference's
order, so they equal it to the bit; so do the scatters and gathers. The pooling gradient on
the GPU is gathered per input pixel from the windows that reach it, which needs the pool's
windows: adaptive pooling's gradient runs the reference there.
"""

# FAST PATH FILE pool
from __future__ import annotations

import numpy as np

from minivision import threads
from minivision.dispatch import cuda_kernels_apply, numba_kernels_apply
from minivision.functional import _pool_cuda
from minivision.functional import _pool_kernels as kernels
from minivision.functional._geometry import Windows

LECTURE_2X2 = Windows((2, 2), (2, 2), (0, 0), (1, 1))


def takes(array) -> bool:
    """Whether the kernels take ``array``: float32 or float64, NumPy (Numba) or CuPy (CUDA)."""
    return numba_kernels_apply(array) or cuda_kernels_apply(array)


def takes_gradient(grad, win: Windows | None) -> bool:
    """Whether ``max_pool2d_backward`` takes ``grad``: on the CPU as ``takes``, on the GPU
    only with the pool's windows ``win`` (adaptive bins, None, have none)."""
    return numba_kernels_apply(grad) or (win is not None and cuda_kernels_apply(grad))


def _per_plane(kernel, planes) -> None:
    """kernel(share) for each worker's share (a slice) of the planes, on the worker threads."""
    threads.over_batch(planes, lambda share, _: kernel(share))


def _planes(a):
    """(N, C, ...) -> (N * C, prod(...)), C-contiguous; N or C may be 0."""
    return np.ascontiguousarray(a).reshape(a.shape[0] * a.shape[1], int(np.prod(a.shape[2:])))


def max_pool2d(x, win: Windows, out_hw):
    """x (N, C, H, W) -> (maxima, switches), both (N, C, out_h, out_w), as the reference's."""
    if cuda_kernels_apply(x):
        return _pool_cuda.max_pool_switches(x, win, out_hw)
    planes = np.ascontiguousarray(x).reshape((-1,) + x.shape[2:])
    out = np.empty((planes.shape[0],) + tuple(out_hw), dtype=x.dtype)
    switches = np.empty(out.shape, dtype=np.int64)
    sizes = win.sizes()
    if win == LECTURE_2X2:
        _per_plane(lambda p: kernels.max_pool_2x2_planes(planes[p], out[p], switches[p]), planes)
    else:
        _per_plane(
            lambda p: kernels.max_pool_planes(planes[p], *sizes, out[p], switches[p]), planes
        )
    shape = x.shape[:2] + out.shape[1:]
    return out.reshape(shape), switches.reshape(shape)


def max_pool2d_backward(grad, switches, x_shape, win: Windows | None = None):
    """grad, switches (N, C, out_h, out_w) -> the input's gradient (``x_shape``): grad added
    at the switches, a switch of -1 passing nothing (see ``takes_gradient`` for ``win``)."""
    if cuda_kernels_apply(grad):
        return _pool_cuda.max_pool_backward(grad, switches, win, x_shape)
    out = np.zeros((x_shape[0] * x_shape[1], x_shape[2] * x_shape[3]), dtype=grad.dtype)
    values, index = _planes(grad), _planes(switches)
    _per_plane(lambda p: kernels.scatter_add_planes(values[p], index[p], out[p]), out)
    return out.reshape(x_shape)


def max_unpool2d(x, switches, out_shape):
    """x, switches (N, C, h, w) -> ``out_shape`` (N, C, out_h, out_w): zeros, x at the switches."""
    if cuda_kernels_apply(x):
        return _pool_cuda.scatter(x, switches, out_shape)
    out = np.zeros((out_shape[0] * out_shape[1], out_shape[2] * out_shape[3]), dtype=x.dtype)
    values, index = _planes(x), _planes(switches)
    _per_plane(lambda p: kernels.scatter_planes(values[p], index[p], out[p]), out)
    return out.reshape(out_shape)


def max_unpool2d_backward(grad, switches):
    """grad (N, C, out_h, out_w), switches (N, C, h, w) -> grad gathered at the switches."""
    if cuda_kernels_apply(grad):
        return _pool_cuda.gather(grad, switches)
    out = np.empty(
        (switches.shape[0] * switches.shape[1], switches.shape[2] * switches.shape[3]),
        dtype=grad.dtype,
    )
    source, index = _planes(grad), _planes(switches)
    _per_plane(lambda p: kernels.gather_planes(source[p], index[p], out[p]), index)
    return out.reshape(switches.shape)
