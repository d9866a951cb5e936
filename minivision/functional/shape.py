"""Ops that move values without changing them: reshape, permute, index, join, pad, cast, copy
to another device. Each backward routes the gradient back to where the value came from.
"""

from __future__ import annotations

import numpy as np

from minivision.backend import get_array_module
from minivision.tensor import Function, Tensor


class _Reshape(Function):
    def forward(self, x, shape=()):
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.shape)


def reshape(input, *shape) -> Tensor:
    """The same values in a new shape (one dimension may be -1); ``view`` is an alias."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    known = int(np.prod([s for s in shape if s != -1]))
    count = input.numel() if isinstance(input, Tensor) else input.size
    if (
        shape.count(-1) > 1
        or (-1 not in shape and known != count)
        or (-1 in shape and (known == 0 or count % known))
    ):
        raise ValueError(
            f"cannot reshape a tensor of shape {tuple(input.shape)} ({count} elements) into {shape}"
        )
    return _Reshape.apply(input, shape=shape)


view = reshape


def flatten(input, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dimensions ``start_dim..end_dim`` (inclusive) into one."""
    shape = input.shape
    if not shape:
        return reshape(input, 1)
    start, end = start_dim % len(shape), end_dim % len(shape)
    if start > end:
        raise ValueError(
            f"flatten needs start_dim <= end_dim, got {start_dim} and {end_dim} for shape {shape}"
        )
    merged = int(np.prod(shape[start : end + 1]))
    return reshape(input, *shape[:start], merged, *shape[end + 1 :])


def unsqueeze(input, dim: int) -> Tensor:
    """Insert a dimension of size 1 at ``dim``."""
    shape = list(input.shape)
    shape.insert(dim % (len(shape) + 1), 1)
    return reshape(input, *shape)


def squeeze(input, dim=None) -> Tensor:
    """Drop dimensions of size 1 (only ``dim`` when given and of size 1, like PyTorch)."""
    shape = input.shape
    if dim is None:
        return reshape(input, *[s for s in shape if s != 1])
    dim = dim % len(shape)
    return input if shape[dim] != 1 else reshape(input, *shape[:dim], *shape[dim + 1 :])


class _Permute(Function):
    def forward(self, x, dims=()):
        self.inverse = tuple(np.argsort(dims))
        return x.transpose(dims)

    def backward(self, grad):
        return grad.transpose(self.inverse)


def permute(input, *dims) -> Tensor:
    """Reorder dimensions: output dimension i is input dimension ``dims[i]``."""
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    if sorted(d % max(input.ndim, 1) for d in dims) != list(range(input.ndim)):
        raise ValueError(
            f"dims {dims} is not a permutation of the {input.ndim} dimensions of shape {input.shape}"
        )
    return _Permute.apply(input, dims=tuple(d % input.ndim for d in dims))


def transpose(input, dim0: int, dim1: int) -> Tensor:
    """Swap two dimensions."""
    dims = list(range(input.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(input, *dims)


def _unwrap_index(index):
    """Replace Tensors inside an index by their arrays."""
    if isinstance(index, tuple):
        return tuple(_unwrap_index(i) for i in index)
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list):
        return np.asarray(index)
    return index


def _is_basic(index) -> bool:
    """True when the index has only ints, slices, None and Ellipsis (no repeated positions)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, slice, type(None), type(Ellipsis))) for p in parts)


class _GetItem(Function):
    def forward(self, x, index=None):
        self.shape, self.dtype, self.index = x.shape, x.dtype, index
        return x[index]

    def backward(self, grad):
        xp = get_array_module(grad)
        full = xp.zeros(self.shape, dtype=grad.dtype)
        if _is_basic(self.index):
            full[self.index] = grad
        elif xp is np:
            np.add.at(full, self.index, grad)  # integer arrays may repeat a position
        else:
            import cupyx  # only reachable with CuPy arrays, so CuPy is present

            cupyx.scatter_add(full, self.index, grad)
        return full


def getitem(input, index) -> Tensor:
    """``input[index]`` with slices, integers, integer arrays or boolean masks."""
    index = _unwrap_index(index)
    try:
        return _GetItem.apply(input, index=index)
    except IndexError as exc:
        raise IndexError(
            f"index {index!r} does not fit a tensor of shape {input.shape}: {exc}"
        ) from None


def _check_join(tensors, dim: int, what: str):
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{what} needs a non-empty sequence of tensors")
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    first = tensors[0]
    for i, t in enumerate(tensors):
        if t.dtype != first.dtype:
            raise TypeError(
                f"{what}: tensor {i} has dtype {t.dtype}, expected {first.dtype} like tensor 0"
            )
        if t.ndim != first.ndim:
            raise ValueError(
                f"{what}: tensor {i} has {t.ndim} dimensions (shape {t.shape}), expected {first.ndim}"
            )
    return tensors


class _Cat(Function):
    def forward(self, *arrays, dim=0):
        xp = get_array_module(*arrays)
        self.dim = dim
        self.bounds = np.cumsum([a.shape[dim] for a in arrays])[
            :-1
        ].tolist()  # ints, for either module
        return xp.concatenate(arrays, axis=dim)

    def backward(self, grad):
        xp = get_array_module(grad)
        return tuple(xp.split(grad, self.bounds, axis=self.dim))


def cat(tensors, dim: int = 0) -> Tensor:
    """Join tensors along an existing dimension; the others must match."""
    tensors = _check_join(tensors, dim, "cat")
    ndim = tensors[0].ndim
    if not -ndim <= dim < ndim:
        raise ValueError(f"cat: dim {dim} is out of range for tensors with {ndim} dimensions")
    dim %= ndim
    ref = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.shape[:dim] + t.shape[dim + 1 :] != ref[:dim] + ref[dim + 1 :]:
            raise ValueError(
                f"cat: tensor {i} has shape {t.shape}, expected {ref} except in dimension {dim}"
            )
    return _Cat.apply(*tensors, dim=dim)


def stack(tensors, dim: int = 0) -> Tensor:
    """Join tensors of one shape along a new dimension ``dim``."""
    tensors = _check_join(tensors, dim, "stack")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(
                f"stack: tensor {i} has shape {t.shape}, expected {tensors[0].shape} like tensor 0"
            )
    ndim = tensors[0].ndim + 1
    if not -ndim <= dim < ndim:
        raise ValueError(f"stack: dim {dim} is out of range for a result with {ndim} dimensions")
    return cat([unsqueeze(t, dim % ndim) for t in tensors], dim=dim % ndim)


class _Pad(Function):
    def forward(self, x, widths=(), value=0.0):
        xp = get_array_module(x)
        self.crop = tuple(slice(before, before + n) for (before, _), n in zip(widths, x.shape))
        return xp.pad(x, widths, mode="constant", constant_values=value)

    def backward(self, grad):
        return grad[self.crop]


def pad(input, pad, mode: str = "constant", value: float = 0.0) -> Tensor:
    """Constant padding; ``pad`` lists (before, after) pairs from the last dimension backwards,
    as ``torch.nn.functional.pad``: ``(left, right, top, bottom)`` pads W then H."""
    if mode != "constant":
        raise ValueError(f"pad mode must be 'constant', got {mode!r}")
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(
            f"pad must have an even length of at most 2 * {input.ndim} (input dims), got {len(pad)} values"
        )
    if any(not isinstance(p, (int, np.integer)) or p < 0 for p in pad):
        raise ValueError(f"pad widths must be non-negative integers, got {pad}")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return _Pad.apply(input, widths=tuple(widths), value=value)


class _Cast(Function):
    def forward(self, x, dtype=None):
        self.dtype = x.dtype
        return x.astype(dtype)

    def backward(self, grad):
        return grad.astype(self.dtype)


def astype(input, dtype) -> Tensor:
    """A copy converted to ``dtype``; gradients flow back in the original dtype."""
    dtype = np.dtype(dtype)
    if input.dtype == dtype:
        return input
    return _Cast.apply(input, dtype=dtype)
