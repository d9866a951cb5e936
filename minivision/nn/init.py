"""Weight initialisers, in place on Tensors, drawing from ``mv.manual_seed``'s generator."""

from __future__ import annotations

import math

from minivision.backend import get_array_module, random_generator
from minivision.tensor import Tensor


def _fans(tensor: Tensor) -> tuple[int, int]:
    """fan_in, fan_out of a (out, in, *kernel) weight, as PyTorch computes them."""
    if tensor.ndim < 2:
        raise ValueError(
            f"fan in/out need a weight of at least 2 dimensions, got shape {tensor.shape}"
        )
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    xp = get_array_module(tensor.data)
    tensor.data = xp.asarray(random_generator().uniform(a, b, tensor.shape).astype(tensor.dtype))
    return tensor


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    xp = get_array_module(tensor.data)
    tensor.data = xp.asarray(
        (mean + std * random_generator().standard_normal(tensor.shape)).astype(tensor.dtype)
    )
    return tensor


def zeros_(tensor: Tensor) -> Tensor:
    tensor.data = get_array_module(tensor.data).zeros_like(tensor.data)
    return tensor


def ones_(tensor: Tensor) -> Tensor:
    tensor.data = get_array_module(tensor.data).ones_like(tensor.data)
    return tensor


def kaiming_uniform_(
    tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    """U(-bound, bound) with bound = gain * sqrt(3 / fan); gain = sqrt(2 / (1 + a^2)) for
    (leaky) ReLU, 1 for "linear"."""
    fan_in, fan_out = _fans(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    gain = math.sqrt(2.0 / (1 + a * a)) if nonlinearity in ("relu", "leaky_relu") else 1.0
    bound = gain * math.sqrt(3.0 / fan)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(
    tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    fan_in, fan_out = _fans(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    gain = math.sqrt(2.0 / (1 + a * a)) if nonlinearity in ("relu", "leaky_relu") else 1.0
    return normal_(tensor, 0.0, gain / math.sqrt(fan))


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    fan_in, fan_out = _fans(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def default_layer_init_(weight: Tensor, bias: Tensor | None) -> None:
    """PyTorch's default for Linear and Conv: kaiming_uniform(a=sqrt(5)) on the weight,
    which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound on the bias."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = _fans(weight)[0]
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound)


def bilinear_kernel(in_channels: int, out_channels: int, size: int, dtype="float32") -> Tensor:
    """FCN's upsampling init for a ConvTranspose2d weight (in, out, size, size): the bilinear
    filter ``upsample_filt(size)`` on the diagonal [c, c] and zeros elsewhere, so each
    channel is upsampled on its own (use stride = factor, size = 2 * factor - factor % 2).
    Like the FCN surgery it needs in_channels == out_channels."""
    if in_channels != out_channels:
        raise ValueError(
            f"bilinear_kernel: in_channels and out_channels must be equal, got {in_channels} and {out_channels}"
        )
    if size < 1:
        raise ValueError(f"bilinear_kernel: size must be a positive int, got {size!r}")
    import numpy as np  # the filter is built on the host; move the Tensor with .to()

    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - np.abs(np.arange(size) - center) / factor
    weight = np.zeros((in_channels, out_channels, size, size), dtype=dtype)
    weight[np.arange(in_channels), np.arange(in_channels)] = np.outer(ramp, ramp)
    return Tensor(weight)
