"""Resizing (N, C, H, W) maps: nearest and bilinear ``interpolate``, as PyTorch computes them.

The math is ``minivision.reference.upsample``: each axis resampled from a few input rows (or
columns) around a source position, and the backward sending gradients back with the same
weights. The fast path (NumPy float32 and float64, with the reference switch off) writes the
same weights as a small (out, in) matrix per axis, out = A_h @ x @ A_w^T, and applies it in
one Numba pass per plane (``_resample_kernels``); its backward applies the transposes.
"""

from __future__ import annotations

import numbers

import numpy as np

from minivision.dispatch import fast_paths_enabled, numba_kernels_apply
from minivision.functional import _resample_kernels as kernels
from minivision.functional._geometry import check_nchw
from minivision.reference import upsample as reference
from minivision.tensor import Function, Tensor

MODES = ("nearest", "bilinear")


def _matrix(source, in_size: int) -> np.ndarray:
    """(out, in) matrix of an axis's weights: row o holds 1 - frac[o] at lower[o] and frac[o]
    at upper[o], for ``source`` = (lower, upper, frac) as ``reference.bilinear_source`` gives."""
    lower, upper, frac = source
    rows = np.arange(len(lower))
    matrix = np.zeros((len(lower), in_size))
    np.add.at(matrix, (rows, lower), 1.0 - frac)  # a tiny host matrix, not data
    np.add.at(matrix, (rows, upper), frac)
    return matrix


class _Interpolate(Function):
    """Nearest or bilinear resizing to ``size`` (out_h, out_w); the reference's, or its
    weights as matrices on the Numba kernel."""

    def forward(self, x, mode="nearest", size=None, scales=(None, None), align_corners=False):
        self.in_hw, self.size, self.mode = tuple(x.shape[2:]), tuple(size), mode
        self.scales, self.align_corners = scales, align_corners
        if fast_paths_enabled() and numba_kernels_apply(x):
            return kernels.resample(x, *self._matrices())
        if mode == "nearest":
            return reference.upsample_nearest2d(x, size, scales)
        return reference.upsample_bilinear2d(x, size, align_corners, scales)

    def backward(self, grad):
        if fast_paths_enabled() and numba_kernels_apply(grad):
            rows, cols = self._matrices()
            return kernels.resample(grad, rows.T, cols.T)
        if self.mode == "nearest":
            return reference.upsample_nearest2d_backward(grad, self.in_hw, self.scales)
        return reference.upsample_bilinear2d_backward(
            grad, self.in_hw, self.align_corners, self.scales
        )

    def _matrices(self) -> tuple:
        """(A_h, A_w): the reference's weights along each axis as (out, in) matrices."""
        matrices = []
        for n, o, s in zip(self.in_hw, self.size, self.scales):
            if self.mode == "nearest":
                source = reference.nearest_source(n, o, s)
                matrices.append(_matrix((source, source, np.zeros(o)), n))
            else:
                matrices.append(_matrix(reference.bilinear_source(n, o, s, self.align_corners), n))
        return tuple(matrices)


def _size_pair(value, name: str, kind) -> tuple:
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(
        isinstance(v, kind) and not isinstance(v, bool) and v > 0 for v in items
    ):
        raise ValueError(
            f"interpolate: {name} must be a positive number or a pair of them, got {value!r}"
        )
    return items


def interpolate(
    input,
    size=None,
    scale_factor=None,
    mode: str = "nearest",
    align_corners=None,
    recompute_scale_factor=None,
    antialias: bool = False,
) -> Tensor:
    """Resize input (N, C, H, W) to ``size`` (out_h, out_w), or by ``scale_factor``
    (out = floor(in * scale_factor)), with ``mode`` 'nearest' or 'bilinear'.
    ``align_corners`` (bilinear only, default False) maps corner pixel centres onto each other."""
    check_nchw(input, "interpolate")
    if mode not in MODES:
        raise ValueError(f"interpolate: mode must be one of {MODES}, got {mode!r}")
    if align_corners is not None and mode == "nearest":
        raise ValueError(
            "interpolate: align_corners can only be set with mode='bilinear', got mode='nearest'"
        )
    if antialias:
        raise ValueError("interpolate: antialias=True is not supported")
    if (size is None) == (scale_factor is None):
        raise ValueError(
            f"interpolate: give exactly one of size and scale_factor, got size={size!r}, scale_factor={scale_factor!r}"
        )
    in_hw = tuple(input.shape[2:])
    if size is not None:
        out_hw, scales = _size_pair(size, "size", numbers.Integral), (None, None)
    else:
        scales = tuple(float(s) for s in _size_pair(scale_factor, "scale_factor", numbers.Real))
        out_hw = tuple(int(np.floor(n * s)) for n, s in zip(in_hw, scales))
        if min(out_hw) < 1:
            raise ValueError(
                f"interpolate: scale_factor {scale_factor!r} shrinks input {in_hw} to nothing ({out_hw})"
            )
        if recompute_scale_factor:
            scales = (None, None)  # the kernel then uses in / out, as PyTorch does
    return _Interpolate.apply(
        input,
        mode=mode,
        size=tuple(int(n) for n in out_hw),
        scales=scales,
        align_corners=bool(align_corners),
    )
