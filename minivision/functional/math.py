"""Elementwise arithmetic and matrix multiply, each forward beside its backward.

Binary ops broadcast like NumPy; their backward sums the gradient back to each
input's shape (``unbroadcast``). Python scalars take the tensor's dtype.
"""

from __future__ import annotations

import numpy as np

from minivision.backend import get_array_module
from minivision.tensor import Function, Tensor, as_tensor_like, unbroadcast


def _as_tensors(a, b):
    """Both operands as Tensors; a Python scalar takes the other operand's dtype."""
    return (a, as_tensor_like(b, a)) if isinstance(a, Tensor) else (as_tensor_like(a, b), b)


def _pair(a, b, op: str):
    """``_as_tensors``, checking that the shapes broadcast (naming the op and both shapes)."""
    a, b = _as_tensors(a, b)
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{op}: shapes {a.shape} and {b.shape} do not broadcast (trailing dimensions must be "
            f"equal or 1)"
        ) from None
    return a, b


class _Add(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, grad):
        return unbroadcast(grad, self.shapes[0]), unbroadcast(grad, self.shapes[1])


class _Sub(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, grad):
        return unbroadcast(grad, self.shapes[0]), unbroadcast(-grad, self.shapes[1])


class _Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        ga = unbroadcast(grad * self.b, self.a.shape) if self.needs_grad[0] else None
        gb = unbroadcast(grad * self.a, self.b.shape) if self.needs_grad[1] else None
        return ga, gb


class _Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):
        ga = unbroadcast(grad / self.b, self.a.shape) if self.needs_grad[0] else None
        gb = (
            unbroadcast(-grad * self.a / (self.b * self.b), self.b.shape)
            if self.needs_grad[1]
            else None
        )
        return ga, gb


class _Pow(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    def backward(self, grad):
        xp = get_array_module(grad)
        ga = gb = None
        if self.needs_grad[0]:
            ga = unbroadcast(grad * self.b * self.a ** (self.b - 1), self.a.shape)
        if self.needs_grad[1]:
            # d(a^b)/db = a^b log a; at a == 0 PyTorch takes 0 (the limit for b > 0)
            log_a = xp.log(xp.where(self.a == 0, 1, self.a))
            gb = unbroadcast(grad * self.out * log_a, self.b.shape)
        return ga, gb


def add(input, other) -> Tensor:
    """``input + other`` with broadcasting."""
    return _Add.apply(*_pair(input, other, "add"))


def sub(input, other) -> Tensor:
    """``input - other`` with broadcasting."""
    return _Sub.apply(*_pair(input, other, "sub"))


def mul(input, other) -> Tensor:
    """``input * other`` with broadcasting."""
    return _Mul.apply(*_pair(input, other, "mul"))


def div(input, other) -> Tensor:
    """``input / other`` with broadcasting (true division)."""
    return _Div.apply(*_pair(input, other, "div"))


def pow(input, exponent) -> Tensor:
    """``input ** exponent``; the exponent may be a scalar or a Tensor."""
    return _Pow.apply(*_pair(input, exponent, "pow"))


class _Unary(Function):
    """An elementwise op given by its value and its derivative in terms of (x, y)."""

    def forward(self, x):
        self.x = x
        self.y = self.value(get_array_module(x), x)
        return self.y

    def backward(self, grad):
        return grad * self.derivative(get_array_module(grad), self.x, self.y)


class _Neg(_Unary):
    value = staticmethod(lambda xp, x: -x)
    derivative = staticmethod(lambda xp, x, y: -1)


class _Exp(_Unary):
    value = staticmethod(lambda xp, x: xp.exp(x))
    derivative = staticmethod(lambda xp, x, y: y)


class _Log(_Unary):
    value = staticmethod(lambda xp, x: xp.log(x))
    derivative = staticmethod(lambda xp, x, y: 1 / x)


class _Sqrt(_Unary):
    value = staticmethod(lambda xp, x: xp.sqrt(x))
    derivative = staticmethod(lambda xp, x, y: 0.5 / y)


class _Abs(_Unary):
    value = staticmethod(lambda xp, x: xp.abs(x))
    derivative = staticmethod(lambda xp, x, y: xp.sign(x))  # 0 at 0, as PyTorch


def neg(input) -> Tensor:
    return _Neg.apply(input)


def exp(input) -> Tensor:
    return _Exp.apply(input)


def log(input) -> Tensor:
    """Natural logarithm."""
    return _Log.apply(input)


def sqrt(input) -> Tensor:
    return _Sqrt.apply(input)


def abs(input) -> Tensor:
    return _Abs.apply(input)


class _Clip(Function):
    def forward(self, x, min=None, max=None):
        xp = get_array_module(x)
        self.inside = xp.ones(x.shape, dtype=bool)
        if min is not None:
            self.inside &= x >= min
        if max is not None:
            self.inside &= x <= max
        return xp.clip(x, min, max)

    def backward(self, grad):
        # PyTorch passes the gradient where min <= x <= max, bounds included
        return grad * self.inside


def clip(input, min=None, max=None) -> Tensor:
    """Limit values to [min, max] (either bound may be None); alias ``clamp``."""
    if min is None and max is None:
        raise ValueError("clip needs at least one of min or max, got neither")
    return _Clip.apply(input, min=min, max=max)


clamp = clip


class _Where(Function):
    def forward(self, condition, a, b):
        xp = get_array_module(a, b)
        self.condition = condition
        self.shapes = a.shape, b.shape
        return xp.where(condition, a, b)

    def backward(self, grad):
        zero = grad.dtype.type(0)
        ga = unbroadcast(get_array_module(grad).where(self.condition, grad, zero), self.shapes[0])
        gb = unbroadcast(get_array_module(grad).where(self.condition, zero, grad), self.shapes[1])
        return None, ga, gb


def where(condition, input, other) -> Tensor:
    """Elements of ``input`` where ``condition`` is true, else of ``other``."""
    cond = condition.data if isinstance(condition, Tensor) else condition
    if getattr(cond, "dtype", None) is None or cond.dtype.kind != "b":
        raise TypeError(
            f"condition must be a boolean tensor, got {getattr(cond, 'dtype', type(cond).__name__)}"
        )
    input, other = _pair(input, other, "where")
    return _Where.apply(cond, input, other)


class _MaxMin(Function):
    """Elementwise maximum/minimum; on ties the gradient is split evenly, as PyTorch does."""

    def forward(self, a, b, take_max=True):
        xp = get_array_module(a, b)
        self.shapes = a.shape, b.shape
        out = xp.maximum(a, b) if take_max else xp.minimum(a, b)
        self.share_a = (a == out).astype(out.dtype) - out.dtype.type(0.5) * (
            a == b
        )  # in the inputs' dtype
        return out

    def backward(self, grad):
        return (
            unbroadcast(grad * self.share_a, self.shapes[0]),
            unbroadcast(grad * (1 - self.share_a), self.shapes[1]),
        )


def maximum(input, other) -> Tensor:
    return _MaxMin.apply(*_pair(input, other, "maximum"), take_max=True)


def minimum(input, other) -> Tensor:
    return _MaxMin.apply(*_pair(input, other, "minimum"), take_max=False)


class _MatMul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, grad):
        xp = get_array_module(grad)
        a, b = self.a, self.b
        # Promote 1-d operands to matrices so one formula covers every case, then undo it.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = grad
        if b.ndim == 1:
            g2 = g2[..., None]
        if a.ndim == 1:
            g2 = g2[..., None, :]
        ga = gb = None
        if self.needs_grad[0]:
            ga = unbroadcast(g2 @ xp.swapaxes(b2, -1, -2), a2.shape)
            ga = ga.reshape(a.shape)
        if self.needs_grad[1]:
            gb = unbroadcast(xp.swapaxes(a2, -1, -2) @ g2, b2.shape)
            gb = gb.reshape(b.shape)
        return ga, gb


def matmul(input, other) -> Tensor:
    """Matrix product with NumPy's rules: 1-d vectors, batched leading dimensions broadcast."""
    input, other = _as_tensors(input, other)
    if input.ndim == 0 or other.ndim == 0:
        raise ValueError(
            f"matmul needs tensors of at least 1 dimension, got shapes {input.shape} and {other.shape}"
        )
    k_in = input.shape[-1]
    k_other = other.shape[0] if other.ndim == 1 else other.shape[-2]
    if k_in != k_other:
        raise ValueError(
            f"matmul shape mismatch: input {input.shape} and other {other.shape} "
            f"(input's last dimension {k_in} must equal other's "
            f"{'only' if other.ndim == 1 else 'second-to-last'} dimension {k_other})"
        )
    if input.dtype != other.dtype:
        raise TypeError(f"matmul needs one dtype, got input {input.dtype} and other {other.dtype}")
    return _MatMul.apply(input, other)
