"""Tensor, Function and the reverse-mode engine.

A ``Tensor`` wraps one NumPy or CuPy array (``.data``) and, when it was produced by a
differentiable op while gradients were enabled, the ``Function`` that produced it
(``._ctx``). ``backward()`` walks that graph once in reverse topological order (found
iteratively, so a chain of 10,000 ops does not hit Python's recursion limit), adds up
the gradient reaching each node, and stores it in ``.grad`` of the leaves.

Ops are written as ``Function`` subclasses whose ``forward`` and ``backward`` work on raw
arrays; ``minivision.functional`` holds them and binds them as Tensor methods/operators.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from minivision.backend import check_device, device_of, get_array_module, to_device, to_numpy

_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether ops record the graph for backward (False inside ``no_grad``)."""
    return getattr(_state, "grad_enabled", True)


class set_grad_enabled(contextlib.ContextDecorator):
    """Context manager (and decorator) that turns graph recording on or off."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)

    def __enter__(self):
        self.previous = is_grad_enabled()
        _state.grad_enabled = self.mode

    def __exit__(self, *exc):
        _state.grad_enabled = self.previous
        return False


class no_grad(set_grad_enabled):
    """``with mv.no_grad():`` runs ops without recording them (inference, optimizer steps)."""

    def __init__(self):
        super().__init__(False)


def _default_dtype_for(data) -> np.dtype:
    """Mirror ``torch.tensor``: Python floats become float32, ints int64, bools bool."""
    probe = np.asarray(data)
    if probe.dtype.kind == "f":
        return np.dtype(np.float32)
    if probe.dtype.kind in "iu":
        return np.dtype(np.int64)
    if probe.dtype.kind == "b":
        return np.dtype(np.bool_)
    raise TypeError(f"data must be numbers or booleans, got an array of dtype {probe.dtype}")


def _is_array(value) -> bool:
    """True for a NumPy or CuPy ndarray (not for lists, scalars or Tensors)."""
    return isinstance(value, np.ndarray) or device_of(value) == "cuda"


class Tensor:
    """An n-dimensional array that can record the ops applied to it for ``backward()``.

    ``Tensor(array)`` keeps a NumPy/CuPy array's dtype and device as they are; other
    data (lists, scalars) is converted like ``mv.tensor`` does (floats to float32).
    """

    __array_priority__ = 1000  # NumPy defers `ndarray + Tensor` to Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, Tensor):
            data = data.data
        if isinstance(data, np.generic):  # 0-d NumPy results come back as scalars
            data = np.asarray(data)
        elif not _is_array(data):
            data = np.asarray(data, dtype=_default_dtype_for(data))
        self.data = data
        self.grad: Tensor | None = None
        self._ctx: Function | None = None
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ----------------------------------------------------------------- attributes
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def device(self) -> str:
        return device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        """True for tensors made by the user rather than by a recorded op."""
        return self._ctx is None

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        dev = ", device='cuda'" if self.device == "cuda" else ""
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{dev}{grad})"

    # ----------------------------------------------------------------- conversion
    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (copied off the GPU when needed)."""
        return to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def detach(self) -> "Tensor":
        """The same values, cut from the graph (shares memory, like PyTorch)."""
        return Tensor(self.data)

    def to(self, device) -> "Tensor":
        """This tensor on ``device`` ("cpu" or "cuda"); the copy stays in the graph."""
        if check_device(device) == self.device:
            return self
        return _ToDevice.apply(self, device=device)

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self) -> "Tensor":
        return self.to("cuda")

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and self.dtype.kind not in "fc":
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.dtype}"
            )
        if not requires_grad and not self.is_leaf:
            raise RuntimeError(
                "requires_grad can only be switched off on a leaf tensor; use detach()"
            )
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after ``backward()``."""
        self._retains_grad = True

    def zero_grad(self) -> None:
        self.grad = None

    __hash__ = object.__hash__  # comparisons are elementwise, identity stays the hash

    # ----------------------------------------------------------------- backward
    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) * grad into ``.grad`` of every leaf that requires it.

        ``grad`` (same shape as self) may be omitted only for a one-element tensor.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the ops that "
                "made it has requires_grad=True (or it was computed under no_grad)"
            )
        xp = get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a one-element tensor, got shape "
                    f"{self.shape}; pass grad= of that shape"
                )
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.dtype)
            if tuple(grad.shape) != self.shape:
                raise ValueError(f"grad has shape {tuple(grad.shape)}, expected {self.shape}")
        _run_backward(self, grad)


def _topological_order(root: Tensor) -> list[Tensor]:
    """Tensors that need a gradient, every node after all the nodes it feeds (iterative DFS)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for parent in node._ctx.parents:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    order.reverse()  # post-order reversed: consumers before producers
    return order


def _run_backward(root: Tensor, grad) -> None:
    grads = {id(root): grad}
    for node in _topological_order(root):
        node_grad = grads.pop(id(node), None)
        if node_grad is None:
            continue
        if node.is_leaf or node._retains_grad:
            node.grad = (
                Tensor(node_grad) if node.grad is None else Tensor(node.grad.data + node_grad)
            )
        if node.is_leaf:
            continue
        ctx = node._ctx
        all_grads = ctx.backward(node_grad)
        if not isinstance(all_grads, tuple):
            all_grads = (all_grads,)
        for parent, position in zip(ctx.parents, ctx.positions):
            parent_grad = all_grads[position]
            if parent_grad is None:
                continue
            key = id(parent)
            grads[key] = parent_grad if key not in grads else grads[key] + parent_grad


class Function:
    """One differentiable op: ``forward`` on arrays, ``backward`` from the output's gradient.

    Subclasses implement ``forward(self, *args, **kwargs)`` (the positional args arrive as
    raw arrays when Tensors were passed) and ``backward(self, grad) -> grads``, one gradient
    per positional argument (None where there is none). ``forward`` returns one array, or a
    tuple whose first array is the differentiable output and whose others (max pooling's
    switches, an argmax) come back as Tensors outside the graph: ``backward`` receives the
    first output's gradient only. Anything backward needs is stored on ``self`` during
    forward; ``self.needs_grad[i]`` says whether the i-th argument wants a gradient, so
    backward can skip work.
    """

    parents: tuple = ()  # the Tensor arguments that need a gradient
    positions: tuple = ()  # their places in the argument list
    needs_grad: tuple = ()

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run ``forward`` on the arguments' arrays and record it for backward: a Tensor, or a
        tuple of Tensors when ``forward`` returns several arrays (only the first differentiable)."""
        fn = cls()
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        get_array_module(*raw)  # one device per op: a clear error instead of a CuPy TypeError
        fn.needs_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        result = fn.forward(*raw, **kwargs)
        outputs = result if isinstance(result, tuple) else (result,)
        out = Tensor(outputs[0])
        if is_grad_enabled() and any(fn.needs_grad):
            fn.parents = tuple(a for a, need in zip(args, fn.needs_grad) if need)
            fn.positions = tuple(i for i, need in enumerate(fn.needs_grad) if need)
            out.requires_grad = True
            out._ctx = fn
        if isinstance(result, tuple):
            return (out,) + tuple(Tensor(extra) for extra in outputs[1:])
        return out


class _ToDevice(Function):
    """A copy to another device; the gradient is copied back."""

    def forward(self, x, device="cpu"):
        self.source = device_of(x)
        return to_device(x, device)

    def backward(self, grad):
        return to_device(grad, self.source)


def tensor(data, dtype=None, device="cpu", requires_grad: bool = False) -> Tensor:
    """Build a Tensor from Python data or an array, like ``torch.tensor``.

    Floats default to float32, integers to int64; ``device`` is "cpu" or "cuda".
    """
    if isinstance(data, Tensor):
        data = data.data
    dtype = (
        np.dtype(dtype)
        if dtype is not None
        else (data.dtype if _is_array(data) else _default_dtype_for(data))
    )
    if _is_array(data):  # NumPy or CuPy: straight to the device (no round trip through the host)
        moved = to_device(data, device)
        # a copy, as torch.tensor makes: in-place updates (an optimizer's step) never reach the caller's array
        array = moved.astype(dtype, copy=moved is data)
    else:
        array = to_device(np.asarray(data, dtype=dtype), device)
    return Tensor(array, requires_grad=requires_grad)


def to_host(value) -> np.ndarray:
    """A NumPy array of a Tensor, a NumPy or CuPy array, or anything ``np.asarray`` takes."""
    return to_numpy(value.data if isinstance(value, Tensor) else value)


def unbroadcast(grad, shape: tuple):
    """Sum ``grad`` down to ``shape``: the backward of NumPy broadcasting."""
    if tuple(grad.shape) == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def as_tensor_like(value, like: Tensor) -> Tensor:
    """Wrap a Python scalar or array as a Tensor on ``like``'s device with a fitting dtype.

    Python scalars take ``like``'s dtype so ``float32_tensor * 2.0`` stays float32.
    """
    if isinstance(value, Tensor):
        return value
    xp = get_array_module(like.data)
    if isinstance(value, (bool, int, float)) and like.dtype.kind == "f":
        return Tensor(xp.asarray(value, dtype=like.dtype))
    if _is_array(value):
        get_array_module(like.data, value)  # raises a clear error on mixed devices
        return Tensor(value)
    return Tensor(xp.asarray(value))
