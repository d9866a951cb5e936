"""SSD's L2 normalisation (Liu et al. 2016, after ParseNet): conv4_3's features have a larger
scale than the later layers', so each position's channel vector is scaled to unit length and
then by a learned per-channel weight, initialised to 20.

``out[n, c, h, w] = weight[c] * x[n, c, h, w] / (sqrt(sum_c x[n, c, h, w] ** 2) + eps)``:
eps is added to the norm, as in the PyTorch port (ssd.pytorch); the Caffe release adds it to
the sum of squares under the root instead. With eps = 1e-10 the two agree except where the norm
is below about 1e-5.

At a position whose channels are all zero (common after a ReLU when there are few channels)
the output is 0 and the exact derivative is ``weight[c] / eps``. Built from ``sqrt`` and
``sum`` by autograd the derivative there is ``0 * inf = NaN`` (the PyTorch port gives NaN), which
a ReLU's zero gradient cannot mask; ``_L2Normalize`` writes the gradient out so it stays finite.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from minivision.backend import get_array_module
from minivision.nn.module import Module, Parameter
from minivision.tensor import Function, Tensor


class _L2Normalize(Function):
    """y = x / (||x|| + eps), the norm over axis 1 of (N, C, H, W) x."""

    def forward(self, x, eps=1e-10):
        xp = get_array_module(x)
        self.norm = xp.sqrt((x * x).sum(axis=1, keepdims=True))
        self.denominator = self.norm + eps
        self.y = x / self.denominator
        return self.y

    def backward(self, grad):
        # dy/dx = I / d - x x^T / (||x|| d^2), d = ||x|| + eps; applied to grad and written with
        # y = x / d: grad / d - y * sum_c(grad * y) / ||x||. Where ||x|| = 0, y = 0 and the second
        # term's limit is 0: divide by 1 there instead of 0.
        xp = get_array_module(grad)
        safe_norm = xp.where(self.norm > 0, self.norm, 1)
        return (
            grad / self.denominator
            - self.y * (grad * self.y).sum(axis=1, keepdims=True) / safe_norm,
        )


def l2_norm(input, weight, eps: float = 1e-10) -> Tensor:
    """SSD's L2Norm: ``weight[c] * input / (||input||_channels + eps)``.

    input: ``(N, C, H, W)``; weight: ``(C,)``. Returns ``(N, C, H, W)``.
    """
    shape = getattr(input, "shape", None)
    if shape is None:
        raise TypeError(f"input must be a Tensor or array (N, C, H, W), got {type(input).__name__}")
    if len(shape) != 4:
        raise ValueError(f"input must have shape (N, C, H, W), got shape {tuple(shape)}")
    weight = weight if isinstance(weight, Tensor) else Tensor(weight)
    if weight.shape != (shape[1],):
        raise ValueError(
            f"weight must have shape ({shape[1]},), one entry per channel of input, "
            f"got shape {weight.shape}"
        )
    return _L2Normalize.apply(input, eps=eps) * weight.reshape(1, -1, 1, 1)


class L2Norm(Module):
    """Normalise each position's channel vector of an ``(N, C, H, W)`` input to unit length,
    then scale channel ``c`` by ``weight[c]``, a Parameter ``(C,)`` initialised to ``scale``."""

    def __init__(self, n_channels: int, scale: float = 20.0, eps: float = 1e-10, dtype=np.float32):
        super().__init__()
        if (
            not isinstance(n_channels, numbers.Integral)
            or isinstance(n_channels, bool)
            or n_channels < 1
        ):
            raise ValueError(f"n_channels must be an int >= 1, got {n_channels!r}")
        for name, value in (("scale", scale), ("eps", eps)):
            if (
                not isinstance(value, numbers.Real)
                or isinstance(value, bool)
                or not math.isfinite(value)
            ):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0 (it keeps an all-zero position finite), got {eps!r}")
        self.n_channels, self.scale, self.eps = int(n_channels), float(scale), float(eps)
        self.weight = Parameter(np.full(self.n_channels, self.scale, dtype=dtype))

    def forward(self, input):
        shape = getattr(input, "shape", None)
        if shape is not None and (len(shape) != 4 or shape[1] != self.n_channels):
            raise ValueError(
                f"L2Norm({self.n_channels}) expects input (N, {self.n_channels}, H, W), "
                f"got shape {tuple(shape)}"
            )
        return l2_norm(input, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.n_channels}, scale={self.scale:g}, eps={self.eps:g}"
