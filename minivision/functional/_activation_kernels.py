"""The fast path of (leaky) ReLU on the CPU: Numba kernels, one pass each way over a flat array.

NumPy needs two passes for the forward (a mask, then a select) and two or three for the
backward; these kernels read and write each element once, and each of minivision's worker
threads takes a share of the elements. They compute what ``minivision.reference.activation``'s
``relu`` and ``relu_backward`` compute, with the same operations, so the results are equal
bit for bit.
"""

# FAST PATH FILE relu
from __future__ import annotations

import numpy as np

from minivision import threads
from minivision._numba import njit


@njit(cache=True, nogil=True)
def leaky_relu_kernel(x, slope, out):
    """out = x where x > 0, else slope * x (NaN stays NaN), for flat arrays."""
    for k in range(x.shape[0]):
        value = x[k]
        out[k] = value if value > 0 else slope * value


@njit(cache=True, nogil=True)
def relu_kernel(x, out):
    """out = 0 where x < 0, else x (-inf gives 0, NaN stays NaN), for flat arrays."""
    for k in range(x.shape[0]):
        value = x[k]
        out[k] = 0 if value < 0 else value


@njit(cache=True, nogil=True)
def leaky_relu_backward_kernel(grad, x, slope, out):
    """out = grad where x > 0, else slope * grad (so 0 at x == 0 for ReLU), for flat arrays."""
    for k in range(x.shape[0]):
        out[k] = grad[k] if x[k] > 0 else slope * grad[k]


def leaky_relu(x, negative_slope):
    """x (any shape, NumPy float32/float64) -> same shape: reference ``relu`` (the plain ReLU
    for a ``negative_slope`` of None), one Numba pass."""
    x = np.ascontiguousarray(x)
    if negative_slope is None:
        return _elementwise(relu_kernel, x)
    return _elementwise(leaky_relu_kernel, x, x.dtype.type(negative_slope))


def leaky_relu_backward(grad, x, negative_slope):
    """grad, x (same shape, NumPy float32/float64) -> dL/dx, as reference ``relu_backward``,
    in x's dtype."""
    x = np.ascontiguousarray(x)
    grad = np.ascontiguousarray(grad, dtype=x.dtype)
    slope = x.dtype.type(0.0 if negative_slope is None else negative_slope)
    return _elementwise(leaky_relu_backward_kernel, grad, x, slope)


def _elementwise(kernel, first, *rest):
    """kernel(first, *rest, out) over flat views, each worker thread taking a share of the
    elements; ``first`` (and each array in ``rest``) C-contiguous, ``out`` like ``first``."""
    out = np.empty_like(first)
    flat = [a.reshape(-1) if isinstance(a, np.ndarray) else a for a in (first, *rest, out)]

    def run(share, _):
        kernel(*(a[share] if isinstance(a, np.ndarray) else a for a in flat))

    threads.over_batch(flat[0], run)
    return out
