"""Convolution layers: Conv2d and ConvTranspose2d, with PyTorch's weight layouts and default init."""

from __future__ import annotations

import numpy as np

from minivision.functional import conv as F
from minivision.functional._geometry import pair
from minivision.nn import init
from minivision.nn.module import Module, Parameter


class _ConvNd(Module):
    """Shared construction: weight (out, in/groups, kh, kw), or (in, out/groups, kh, kw) when
    transposed; both initialised by kaiming_uniform(a=sqrt(5)), bias by U(+-1/sqrt(fan_in))."""

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride,
        padding,
        dilation,
        groups,
        bias,
        padding_mode,
        dtype,
        transposed: bool,
    ):
        super().__init__()
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{type(self).__name__}: groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
            )
        if padding_mode != "zeros":
            raise ValueError(
                f"{type(self).__name__}: only padding_mode='zeros' is supported, got {padding_mode!r}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = (
            pair(kernel_size, "kernel_size", 1),
            pair(stride, "stride", 1),
        )
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding")
        self.dilation = pair(dilation, "dilation", 1)
        shape = (
            (in_channels, out_channels // groups)
            if transposed
            else (out_channels, in_channels // groups)
        )
        self.weight = Parameter(np.empty(shape + self.kernel_size, dtype=dtype))
        self.bias = Parameter(np.empty((out_channels,), dtype=dtype)) if bias else None
        init.default_layer_init_(self.weight, self.bias)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")


class Conv2d(_ConvNd):
    """(N, in_channels, H, W) -> (N, out_channels, out_h, out_w); see ``F.conv2d``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        dtype=np.float32,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            dtype,
            transposed=False,
        )

    def forward(self, input):
        return F.conv2d(
            input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class ConvTranspose2d(_ConvNd):
    """(N, in_channels, H, W) -> (N, out_channels, out_h, out_w); see ``F.conv_transpose2d``.
    ``forward(input, output_size)`` picks the output_padding that gives ``output_size``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        bias: bool = True,
        dilation=1,
        padding_mode: str = "zeros",
        dtype=np.float32,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            dtype,
            transposed=True,
        )
        self.output_padding = pair(output_padding, "output_padding")

    def _output_padding(self, input, output_size):
        """output_padding for a requested (…, out_h, out_w), checked against the reachable range."""
        if output_size is None:
            return self.output_padding
        wanted = tuple(output_size)[-2:]
        padding = []
        for dim, (n, want) in enumerate(zip(input.shape[2:], wanted)):
            smallest = (
                (n - 1) * self.stride[dim]
                - 2 * self.padding[dim]
                + self.dilation[dim] * (self.kernel_size[dim] - 1)
                + 1
            )
            largest = smallest + max(self.stride[dim], self.dilation[dim]) - 1
            if not smallest <= want <= largest:
                raise ValueError(
                    f"ConvTranspose2d: requested an output size of {tuple(wanted)}, but valid sizes range from "
                    f"{smallest} to {largest} in dimension {dim} (for an input of {tuple(input.shape)})"
                )
            padding.append(want - smallest)
        return tuple(padding)

    def forward(self, input, output_size=None):
        return F.conv_transpose2d(
            input,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self._output_padding(input, output_size),
            self.groups,
            self.dilation,
        )
