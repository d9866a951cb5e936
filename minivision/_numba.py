"""Numba, when it is installed: ``njit`` and ``NUMBA_AVAILABLE``.

Without Numba, ``minivision`` still imports and computes: ``dispatch.numba_kernels_apply``
is False, so ops take their array code, and the few kernels called directly run as plain
Python (``njit`` leaves the function as it is).
"""

from __future__ import annotations

try:
    from numba import njit

    NUMBA_AVAILABLE = True
except ImportError:
    NUMBA_AVAILABLE = False

    def njit(*args, **options):
        """Numba's ``njit`` stand-in: ``@njit`` and ``@njit(cache=True, ...)`` return the function."""
        if len(args) == 1 and callable(args[0]) and not options:
            return args[0]
        return lambda function: function


__all__ = ["NUMBA_AVAILABLE", "njit"]
