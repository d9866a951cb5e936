"""Layers as Modules, mirroring ``torch.nn``."""

from minivision.nn import init
from minivision.nn.container import Sequential
from minivision.nn.conv import Conv2d, ConvTranspose2d
from minivision.nn.l2norm import L2Norm
from minivision.nn.layers import (
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from minivision.nn.module import Module, Parameter
from minivision.nn.norm import BatchNorm1d, BatchNorm2d
from minivision.nn.pool import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool2d,
    MaxPool2d,
    MaxUnpool2d,
)
from minivision.nn.upsample import Upsample

__all__ = [
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool2d",
    "Conv2d",
    "ConvTranspose2d",
    "MaxPool2d",
    "MaxUnpool2d",
    "Upsample",
    "BatchNorm1d",
    "BatchNorm2d",
    "Dropout",
    "Flatten",
    "Identity",
    "L2Norm",
    "LeakyReLU",
    "Linear",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "init",
]
