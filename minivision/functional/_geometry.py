"""Argument parsing and output sizes shared by the windowed ops (conv, pool, unpool).

Every size argument is an int or a pair ``(height, width)``; ``pair`` turns it into a
pair and names the argument when it is neither. ``window_output_size``, PyTorch's rule for
how many windows fit (``ceil_mode`` included), is the reference's (``reference/pool.py``).
"""

from __future__ import annotations

import functools
import inspect
import numbers
from typing import NamedTuple

from minivision.functional.shape import reshape
from minivision.reference.pool import window_output_size
from minivision.tensor import Tensor


def pair(value, name: str, minimum: int = 0) -> tuple[int, int]:
    """``value`` (an int or two ints) as ``(h, w)``; each must be >= ``minimum``."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items
    ):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(items) < minimum:
        raise ValueError(f"{name} must be >= {minimum} in both dimensions, got {value!r}")
    return int(items[0]), int(items[1])


def raw(value):
    """The array inside a Tensor (other values pass through)."""
    return value.data if isinstance(value, Tensor) else value


def check_nchw(input, op: str, name: str = "input") -> None:
    """Raise unless ``input`` is a floating-point (N, C, H, W) tensor or array."""
    if not hasattr(input, "shape") or len(input.shape) != 4:
        shape = tuple(input.shape) if hasattr(input, "shape") else type(input).__name__
        raise ValueError(f"{op}: {name} must have shape (N, C, H, W), got {shape}")
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be floating point, got dtype {input.dtype}")


def accepts_unbatched(op):
    """Let ``op`` take one unbatched (C, H, W) image where it expects (N, C, H, W), as PyTorch's
    conv and pool ops do: ``input`` (and ``indices``, for unpooling) gain a batch axis of 1,
    which every output loses again."""
    signature = inspect.signature(op)

    @functools.wraps(op)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        if len(getattr(bound.arguments["input"], "shape", ())) != 3:
            return op(*args, **kwargs)
        for name in ("input", "indices"):
            value = bound.arguments.get(name)
            if value is not None and len(getattr(value, "shape", ())) == 3:
                bound.arguments[name] = reshape(value, 1, *value.shape)
        result = op(*bound.args, **bound.kwargs)
        unbatch = lambda t: reshape(t, *t.shape[1:])  # noqa: E731
        return tuple(unbatch(t) for t in result) if isinstance(result, tuple) else unbatch(result)

    return wrapper


def output_hw(
    op: str, input_shape, kernel, stride, padding, dilation, ceil_mode=False
) -> tuple[int, int]:
    """(out_h, out_w) for windows over the input's last two axes; ValueError when none fits."""
    height, width = input_shape[-2:]
    out = tuple(
        window_output_size(n, k, s, p, d, ceil_mode)
        for n, k, s, p, d in zip((height, width), kernel, stride, padding, dilation)
    )
    if min(out) < 1:
        padded = (height + 2 * padding[0], width + 2 * padding[1])
        effective = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        raise ValueError(
            f"{op}: kernel size {effective[0]}x{effective[1]} (kernel_size {kernel} with dilation {dilation}) "
            f"is larger than the padded input {padded[0]}x{padded[1]} (input {height}x{width}, padding {padding}); "
            f"the output would be {out[0]}x{out[1]}"
        )
    return out


class Windows(NamedTuple):
    """Where the windows of a conv/pool sit: each field a pair (h, w)."""

    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple

    def input_span(self, axis: int, first: int, stop: int) -> tuple[int, int]:
        """Input coordinates [start, stop) read by output positions ``first..stop-1`` on ``axis``
        (0 for rows, 1 for columns); may reach outside the input into the padding."""
        k, s, p, d = self.kernel[axis], self.stride[axis], self.padding[axis], self.dilation[axis]
        return first * s - p, (stop - 1) * s + d * (k - 1) + 1 - p

    def sizes(self) -> tuple:
        """(kh, kw, sh, sw, ph, pw, dh, dw): the eight numbers a pooling or im2col kernel takes."""
        return (*self.kernel, *self.stride, *self.padding, *self.dilation)
