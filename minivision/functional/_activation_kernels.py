"""Numba kernels for (leaky) ReLU on the CPU: one pass each way over a flat array.

NumPy needs two passes for the forward (a mask, then a product or maximum) and two or
three for the backward; these read and write each element once, and ``activation.py``
gives each of minivision's worker threads a share of the elements.
"""
from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def leaky_relu(x, slope, out):
    """out = x where x > 0, else slope * x (NaN stays NaN), for flat arrays."""
    for k in range(x.shape[0]):
        value = x[k]
        out[k] = value if value > 0 else slope * value


@njit(cache=True, nogil=True)
def leaky_relu_backward(grad, x, slope, out):
    """out = grad where x > 0, else slope * grad (so 0 at x == 0 for ReLU), for flat arrays."""
    for k in range(x.shape[0]):
        out[k] = grad[k] if x[k] > 0 else slope * grad[k]
