"""Differentiable ops, mirroring ``torch.nn.functional`` (import as ``F``).

Grouped by topic, each op's forward beside its backward: ``math`` (arithmetic, matmul),
``reduce`` (sum, mean, max, min), ``shape`` (reshape, permute, index, cat, pad),
``activation``, ``linear``, ``loss``, ``norm``. Importing this package also binds the ops
as Tensor methods and Python operators (see ``tensor_methods``).
"""

from minivision.functional import tensor_methods  # noqa: F401  (binds Tensor methods)
from minivision.functional.activation import (
    dropout,
    leaky_relu,
    log_softmax,
    relu,
    sigmoid,
    softmax,
    softplus,
    tanh,
)
from minivision.functional.conv import conv2d, conv_transpose2d
from minivision.functional.linear import linear
from minivision.functional.loss import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
from minivision.functional.norm import batch_norm
from minivision.functional.pool import (
    adaptive_avg_pool2d,
    adaptive_max_pool2d,
    avg_pool2d,
    max_pool2d,
    max_unpool2d,
)
from minivision.functional.shape import pad
from minivision.functional.upsample import interpolate

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "avg_pool2d",
    "batch_norm",
    "binary_cross_entropy_with_logits",
    "conv2d",
    "conv_transpose2d",
    "cross_entropy",
    "dropout",
    "interpolate",
    "leaky_relu",
    "linear",
    "log_softmax",
    "max_pool2d",
    "max_unpool2d",
    "mse_loss",
    "nll_loss",
    "pad",
    "relu",
    "sigmoid",
    "smooth_l1_loss",
    "softmax",
    "softplus",
    "tanh",
]
