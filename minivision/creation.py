"""Tensor factories (zeros, ones, rand, randn, arange, ..._like), on "cpu" or "cuda"."""

from __future__ import annotations

import numpy as np

from minivision.backend import random_generator, xp_for_device
from minivision.tensor import Tensor

DEFAULT_DTYPE = np.float32


def _shape(size) -> tuple:
    return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else tuple(size)


def zeros(*size, dtype=DEFAULT_DTYPE, device="cpu", requires_grad=False) -> Tensor:
    return Tensor(
        xp_for_device(device).zeros(_shape(size), dtype=dtype), requires_grad=requires_grad
    )


def ones(*size, dtype=DEFAULT_DTYPE, device="cpu", requires_grad=False) -> Tensor:
    return Tensor(
        xp_for_device(device).ones(_shape(size), dtype=dtype), requires_grad=requires_grad
    )


def full(size, fill_value, dtype=DEFAULT_DTYPE, device="cpu", requires_grad=False) -> Tensor:
    return Tensor(
        xp_for_device(device).full(_shape((size,)), fill_value, dtype=dtype),
        requires_grad=requires_grad,
    )


def zeros_like(input: Tensor, requires_grad=False) -> Tensor:
    return zeros(input.shape, dtype=input.dtype, device=input.device, requires_grad=requires_grad)


def ones_like(input: Tensor, requires_grad=False) -> Tensor:
    return ones(input.shape, dtype=input.dtype, device=input.device, requires_grad=requires_grad)


def rand(*size, dtype=DEFAULT_DTYPE, device="cpu", requires_grad=False) -> Tensor:
    """Uniform on [0, 1), drawn from the generator ``mv.manual_seed`` seeds (the same numbers on every device)."""
    xp = xp_for_device(device)
    return Tensor(
        xp.asarray(random_generator().random(_shape(size)).astype(dtype)),
        requires_grad=requires_grad,
    )


def randn(*size, dtype=DEFAULT_DTYPE, device="cpu", requires_grad=False) -> Tensor:
    """Standard normal, drawn from the generator ``mv.manual_seed`` seeds (the same numbers on every device)."""
    xp = xp_for_device(device)
    return Tensor(
        xp.asarray(random_generator().standard_normal(_shape(size)).astype(dtype)),
        requires_grad=requires_grad,
    )


def arange(start, end=None, step=1, dtype=None, device="cpu") -> Tensor:
    values = np.arange(start, end, step) if end is not None else np.arange(start)
    dtype = dtype or (np.int64 if values.dtype.kind in "iu" else DEFAULT_DTYPE)
    return Tensor(xp_for_device(device).asarray(values, dtype=dtype))
