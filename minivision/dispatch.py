"""Which implementation runs an op: the readable reference or a fast path.

Every op with a fast path (Numba kernels on the CPU, CUDA kernels on the GPU, Winograd,
im2col in chunks on worker threads) also has a reference in ``minivision.reference``:
plain array code written to be read. The fast paths run by default; the reference runs
when the switch is on:

- ``MINIVISION_REFERENCE=1`` in the environment (read once, when minivision is imported);
- ``mv.use_reference(True)``, which sets the switch until it is set again;
- ``with mv.use_reference(True): ...``, which sets it for the block and then restores it.

The switch is process-wide (not per thread): ops hand work to worker threads, and those
follow the thread that called the op. Whether a fast path may take an array is decided
here too: Numba computes float32 and float64 NumPy arrays, the CUDA kernels float32 and
float64 CuPy arrays; other arrays (float16) take the op's array-library code.
"""

from __future__ import annotations

import functools
import os
import sys

import numpy as np

from minivision._numba import NUMBA_AVAILABLE

ENVIRONMENT_VARIABLE = "MINIVISION_REFERENCE"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _read_environment() -> bool:
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(
            f"{ENVIRONMENT_VARIABLE} must be one of {', '.join(map(repr, _TRUE + _FALSE))}, "
            f"got {os.environ[ENVIRONMENT_VARIABLE]!r}"
        )
    return value in _TRUE


_reference = _read_environment()


def reference_enabled() -> bool:
    """True when ops run their reference implementation (``minivision.reference``)."""
    return _reference


def fast_paths_enabled() -> bool:
    """True when ops may take their fast paths (the default)."""
    return not _reference


class use_reference:
    """Route every op through its reference (``True``) or let it take its fast paths (``False``).

    Called plainly it sets the switch; used as a context manager it sets it for the block and
    restores the previous setting afterwards, like ``torch.set_grad_enabled``; as a decorator
    (``@use_reference(True)``) it sets it for each call of the function and nothing else.
    """

    def __init__(self, mode: bool = True):
        global _reference
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"use_reference: mode must be True or False, got {mode!r}")
        self.mode, self.previous = bool(mode), _reference
        _reference = self.mode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _reference
        _reference = self.previous
        return False

    def __call__(self, function):
        global _reference
        _reference = self.previous  # decorating a function changes no setting

        @functools.wraps(function)
        def with_switch(*args, **kwargs):
            with use_reference(self.mode):
                return function(*args, **kwargs)

        return with_switch


def _is_cupy_array(array) -> bool:
    cp = sys.modules.get("cupy")
    return cp is not None and isinstance(array, cp.ndarray)


def numba_kernels_apply(array) -> bool:
    """Whether an op's Numba kernels take ``array``: a NumPy float32 or float64 array, with
    Numba installed. Other arrays (CuPy's, NumPy float16) take the op's ``xp`` path."""
    return (
        NUMBA_AVAILABLE
        and isinstance(array, np.ndarray)
        and array.dtype in (np.float32, np.float64)
    )


def cuda_kernels_apply(array) -> bool:
    """Whether an op's CUDA kernels (``minivision._cuda``) take ``array``: a CuPy float32 or
    float64 array. CuPy float16 takes the op's ``xp`` path, as NumPy float16 does on the CPU."""
    return _is_cupy_array(array) and array.dtype in (np.float32, np.float64)
