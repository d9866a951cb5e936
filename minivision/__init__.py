"""minivision: a from-scratch NumPy/CuPy deep-learning framework for computer vision.

``import minivision as mv``; ``mv.Tensor``, ``mv.tensor``, ``mv.no_grad``; ops as
``mv.exp``, ``mv.cat``, ...; layers in ``mv.nn``, ops mirroring torch.nn.functional in
``mv.functional``, optimizers in ``mv.optim``, ``mv.gradcheck`` for checking gradients.
``mv.use_reference(True)`` runs every op through its readable reference (``mv.reference``).
"""

import logging

from minivision import functional, metrics, nn, ops, optim
from minivision.backend import cuda_available, manual_seed
from minivision.creation import arange, full, ones, ones_like, rand, randn, zeros, zeros_like
from minivision.dispatch import reference_enabled, use_reference
from minivision.functional.math import (
    abs,
    add,
    clamp,
    clip,
    div,
    exp,
    log,
    matmul,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    sqrt,
    sub,
    where,
)
from minivision.functional.reduce import argmax, argmin, max, mean, min, sum
from minivision.functional.shape import (
    cat,
    flatten,
    permute,
    reshape,
    squeeze,
    stack,
    transpose,
    unsqueeze,
)
from minivision.gradcheck import GradcheckError, GradcheckReport, gradcheck, rel_error
from minivision.serialization import load, save
from minivision.tensor import Function, Tensor, is_grad_enabled, no_grad, set_grad_enabled, tensor
from minivision.threads import get_num_threads, set_num_threads

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"
