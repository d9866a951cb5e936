"""Reductions over axes: sum, mean, max, min (and argmax/argmin, which have no gradient).

``dim``/``keepdim`` are PyTorch's names; NumPy's ``axis``/``keepdims`` are accepted too,
as ``torch.sum`` accepts them. ``dim`` may be an int, a tuple of ints or None (all).
"""

from __future__ import annotations

import builtins  # this module defines sum/max/min; the built-ins are reached through here

from minivision.backend import get_array_module
from minivision.tensor import Function, Tensor


def _axes(dim, ndim: int) -> tuple:
    """Normalise ``dim`` to a sorted tuple of non-negative axes, checking the range."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    size = builtins.max(ndim, 1)  # a 0-d tensor accepts dim 0 and -1, as in PyTorch
    out = []
    for d in dims:
        if not isinstance(d, int) or not -size <= d < size:
            raise ValueError(f"dim {dim!r} is out of range for a tensor with {ndim} dimensions")
        out.append(d % size)
    if len(set(out)) != len(out):
        raise ValueError(f"dim {dim!r} names the same dimension twice")
    return tuple(sorted(out))


def _dim_args(dim, keepdim, axis, keepdims):
    if axis is not None:
        if dim is not None:
            raise TypeError("give dim or its alias axis, not both")
        dim = axis
    return dim, bool(keepdim or keepdims)


def _expand(grad, axes, keepdim):
    """Re-insert reduced axes so ``grad`` broadcasts against the input."""
    if keepdim or not axes:
        return grad
    return get_array_module(grad).expand_dims(grad, axes)


class _Sum(Function):
    def forward(self, x, axes=(), keepdim=False):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        return x.sum(axis=axes, keepdims=keepdim)

    def backward(self, grad):
        xp = get_array_module(grad)
        return xp.broadcast_to(_expand(grad, self.axes, self.keepdim), self.shape).copy()


class _Mean(_Sum):
    def forward(self, x, axes=(), keepdim=False):
        self.count = 1
        for a in axes:
            self.count *= x.shape[a]
        return super().forward(x, axes, keepdim) / x.dtype.type(self.count)

    def backward(self, grad):
        return super().backward(grad) / grad.dtype.type(self.count)


class _Extreme(Function):
    """max/min over axes; ties share the gradient evenly (PyTorch's amax/amin rule)."""

    def forward(self, x, axes=(), keepdim=False, take_max=True):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        out = x.max(axis=axes, keepdims=True) if take_max else x.min(axis=axes, keepdims=True)
        self.winners = x == out
        return out if keepdim else out.squeeze(axis=axes)

    def backward(self, grad):
        grad = _expand(grad, self.axes, self.keepdim)
        winners = self.winners.astype(grad.dtype)
        return winners * (grad / winners.sum(axis=self.axes, keepdims=True))


def _reduce(fn, input, dim, keepdim, axis, keepdims, **extra) -> Tensor:
    dim, keepdim = _dim_args(dim, keepdim, axis, keepdims)
    axes = _axes(dim, input.ndim)
    if input.ndim and any(input.shape[a] == 0 for a in axes) and fn is _Extreme:
        raise ValueError(f"max/min over an empty dimension: input shape {input.shape}, dim {dim!r}")
    return fn.apply(input, axes=axes, keepdim=keepdim, **extra)


def sum(input, dim=None, keepdim=False, *, axis=None, keepdims=False) -> Tensor:
    """Sum over ``dim`` (all elements when None)."""
    return _reduce(_Sum, input, dim, keepdim, axis, keepdims)


def mean(input, dim=None, keepdim=False, *, axis=None, keepdims=False) -> Tensor:
    """Mean over ``dim`` (all elements when None); floating-point tensors only."""
    if input.dtype.kind != "f":
        raise TypeError(f"mean needs a floating-point tensor, got dtype {input.dtype}")
    return _reduce(_Mean, input, dim, keepdim, axis, keepdims)


def max(input, dim=None, keepdim=False, *, axis=None, keepdims=False) -> Tensor:
    """Largest value over ``dim`` (values only, like ``torch.amax``)."""
    return _reduce(_Extreme, input, dim, keepdim, axis, keepdims, take_max=True)


def min(input, dim=None, keepdim=False, *, axis=None, keepdims=False) -> Tensor:
    """Smallest value over ``dim`` (values only, like ``torch.amin``)."""
    return _reduce(_Extreme, input, dim, keepdim, axis, keepdims, take_max=False)


def argmax(input, dim=None, keepdim=False) -> Tensor:
    """Index of the first largest value (flat index when ``dim`` is None); int64, no gradient."""
    data = input.data if isinstance(input, Tensor) else input
    out = data.argmax(axis=dim, keepdims=keepdim) if dim is not None else data.argmax()
    return Tensor(out.astype("int64"))


def argmin(input, dim=None, keepdim=False) -> Tensor:
    """Index of the first smallest value (flat index when ``dim`` is None); int64, no gradient."""
    data = input.data if isinstance(input, Tensor) else input
    out = data.argmin(axis=dim, keepdims=keepdim) if dim is not None else data.argmin()
    return Tensor(out.astype("int64"))
