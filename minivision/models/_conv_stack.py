"""The plain convolutional stacks the detectors' backbones are written as (YOLO's Darknet-like
networks, VGG16 and the tiny bodies): a list of layers read in order.

Each item is ``"M"`` (2x2 max pooling), an int ``n`` (a 3x3 convolution to ``n`` channels,
stride 1) or a ``(kernel, filters, stride)`` triple; each convolution keeps the size
(padding ``kernel // 2``) and is followed by batch norm (when asked) and the activation.
"""

from __future__ import annotations

from minivision import nn


def conv_stack(
    spec, in_channels: int, batch_norm: bool, activation
) -> tuple[nn.Sequential, int, int]:
    """(layers, output channels, total downsampling factor) of ``spec``; ``activation()``
    makes each convolution's activation module."""
    layers, channels, stride = [], in_channels, 1
    for item in spec:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            stride *= 2
            continue
        kernel, filters, step = (3, item, 1) if isinstance(item, int) else item
        layers.append(
            nn.Conv2d(
                channels, filters, kernel, stride=step, padding=kernel // 2, bias=not batch_norm
            )
        )
        if batch_norm:
            layers.append(nn.BatchNorm2d(filters))
        layers.append(activation())
        channels, stride = filters, stride * step
    return nn.Sequential(*layers), channels, stride
