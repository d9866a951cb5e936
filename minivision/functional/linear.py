"""Fully connected layer: ``input @ weight.T + bias`` with PyTorch's weight layout (out, in)."""

from __future__ import annotations

from minivision.functional import math, shape
from minivision.tensor import Tensor


def linear(input, weight, bias=None) -> Tensor:
    """input (*, in_features), weight (out_features, in_features), bias (out_features,)
    -> (*, out_features)."""
    if weight.ndim != 2:
        raise ValueError(
            f"linear: weight must be (out_features, in_features), got shape {weight.shape}"
        )
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input's last dimension must be in_features={weight.shape[1]}, got input shape {input.shape}"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(
            f"linear: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}"
        )
    out = math.matmul(input, shape.transpose(weight, 0, 1))
    return out if bias is None else math.add(out, bias)
