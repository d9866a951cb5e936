"""Layers as Modules, mirroring ``torch.nn``."""
from minivision.nn import init
from minivision.nn.container import Sequential
from minivision.nn.layers import Dropout, Flatten, Identity, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from minivision.nn.module import Module, Parameter
from minivision.nn.norm import BatchNorm1d, BatchNorm2d

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "Dropout", "Flatten", "Identity", "LeakyReLU", "Linear", "Module",
    "Parameter", "ReLU", "Sequential", "Sigmoid", "Softmax", "Tanh", "init",
]
