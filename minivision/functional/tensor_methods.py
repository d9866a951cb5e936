"""Bind the functional ops to ``Tensor`` as methods and Python operators.

Kept apart from ``tensor.py`` because the engine stands above the ops: the ops import
the engine, and this module, imported once by ``minivision.functional``, attaches them.
"""

from __future__ import annotations

from minivision.functional import activation, math, reduce, shape
from minivision.tensor import Tensor


def _reversed(op):
    return lambda self, other: op(other, self)


def _compare(ufunc_name):
    def compare(self, other):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(getattr(self.data, ufunc_name)(other))

    return compare


_OPERATORS = {
    "__add__": math.add,
    "__radd__": _reversed(math.add),
    "__sub__": math.sub,
    "__rsub__": _reversed(math.sub),
    "__mul__": math.mul,
    "__rmul__": _reversed(math.mul),
    "__truediv__": math.div,
    "__rtruediv__": _reversed(math.div),
    "__pow__": math.pow,
    "__rpow__": _reversed(math.pow),
    "__matmul__": math.matmul,
    "__rmatmul__": _reversed(math.matmul),
    "__neg__": math.neg,
    "__abs__": math.abs,
    "__getitem__": shape.getitem,
    "__lt__": _compare("__lt__"),
    "__le__": _compare("__le__"),
    "__gt__": _compare("__gt__"),
    "__ge__": _compare("__ge__"),
    "__eq__": _compare("__eq__"),
    "__ne__": _compare("__ne__"),
}

_METHODS = {
    "add": math.add,
    "sub": math.sub,
    "mul": math.mul,
    "div": math.div,
    "pow": math.pow,
    "neg": math.neg,
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "abs": math.abs,
    "clip": math.clip,
    "clamp": math.clamp,
    "maximum": math.maximum,
    "minimum": math.minimum,
    "matmul": math.matmul,
    "sum": reduce.sum,
    "mean": reduce.mean,
    "max": reduce.max,
    "min": reduce.min,
    "amax": reduce.max,
    "amin": reduce.min,
    "argmax": reduce.argmax,
    "argmin": reduce.argmin,
    "reshape": shape.reshape,
    "view": shape.view,
    "flatten": shape.flatten,
    "squeeze": shape.squeeze,
    "unsqueeze": shape.unsqueeze,
    "permute": shape.permute,
    "transpose": shape.transpose,
    "astype": shape.astype,
    "relu": activation.relu,
    "sigmoid": activation.sigmoid,
    "tanh": activation.tanh,
    "softmax": activation.softmax,
    "log_softmax": activation.log_softmax,
}

for _name, _fn in {**_OPERATORS, **_METHODS}.items():
    setattr(Tensor, _name, _fn)

Tensor.T = property(lambda self: shape.permute(self, *reversed(range(self.ndim))))
Tensor.float = lambda self: shape.astype(self, "float32")
Tensor.double = lambda self: shape.astype(self, "float64")
