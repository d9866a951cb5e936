"""Losses with PyTorch's signatures and reductions ("none", "mean", "sum")."""

from __future__ import annotations

from minivision.backend import get_array_module
from minivision.functional import math, reduce
from minivision.functional.activation import log_softmax, softplus
from minivision.reference import loss as reference
from minivision.tensor import Function, Tensor, as_tensor_like

REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return reduce.mean(loss)
    if reduction == "sum":
        return reduce.sum(loss)
    return loss


def _check_same_shape(input, target, name):
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(
            f"{name}: target shape {tuple(target.shape)} must equal input shape {tuple(input.shape)}"
        )


class _NLLLoss(Function):
    """Negative log-likelihood of class indices, over (N, C) or (N, C, d1, d2, ...) log-probs."""

    def forward(self, logp, target, weight=None, ignore_index=-100, reduction="mean"):
        self.logp, self.target, self.weight = logp, target, weight
        self.ignore_index, self.reduction = ignore_index, reduction
        return reference.nll_loss(logp, target, weight, ignore_index, reduction)

    def backward(self, grad):
        dlogp = reference.nll_loss_backward(
            grad, self.logp, self.target, self.weight, self.ignore_index, self.reduction
        )
        return dlogp, None, None


def nll_loss(
    input, target, weight=None, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    """Loss ``-input[n, target[n]]`` (times the class weight) from log-probabilities.

    input: (N, C) or (N, C, d1, ...) log-probabilities; target: (N,) or (N, d1, ...) int class
    indices in [0, C) or ``ignore_index``. "mean" divides by the summed weights of the
    non-ignored targets, as PyTorch does.
    """
    _check_reduction(reduction)
    tgt = target.data if isinstance(target, Tensor) else target
    if input.ndim < 2:
        raise ValueError(f"input must be (N, C) or (N, C, d1, ...), got shape {input.shape}")
    n, c = input.shape[:2]
    if getattr(tgt, "dtype", None) is None or tgt.dtype.kind not in "iu":
        raise TypeError(
            f"target must hold integer class indices, got {getattr(tgt, 'dtype', type(tgt).__name__)}"
        )
    expected = (n,) + tuple(input.shape[2:])
    if tuple(tgt.shape) != expected:
        raise ValueError(
            f"target shape {tuple(tgt.shape)} does not match input {input.shape}: expected {expected}"
        )
    bad = (tgt != ignore_index) & ((tgt < 0) | (tgt >= c))
    if bad.any():
        raise ValueError(
            f"target holds class index {int(tgt[bad].ravel()[0])}, expected values in [0, {c}) "
            f"or ignore_index={ignore_index}"
        )
    w = weight.data if isinstance(weight, Tensor) else weight
    if w is not None and tuple(w.shape) != (c,):
        raise ValueError(
            f"weight must have shape ({c},), one entry per class, got {tuple(w.shape)}"
        )
    get_array_module(
        input.data if isinstance(input, Tensor) else input, tgt, w
    )  # one device for all three
    return _NLLLoss.apply(input, tgt, weight=w, ignore_index=ignore_index, reduction=reduction)


def cross_entropy(
    input, target, weight=None, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    """Softmax cross-entropy from raw scores: input (N, C) or (N, C, H, W), target int
    (N,) or (N, H, W). Equal to ``nll_loss(log_softmax(input, 1), target, ...)``."""
    _check_reduction(reduction)
    if input.ndim < 2:
        raise ValueError(f"input must be (N, C) or (N, C, d1, ...), got shape {input.shape}")
    if input.dtype.kind != "f":
        raise TypeError(
            f"cross_entropy: input must hold floating-point scores, got dtype {input.dtype}"
        )
    return nll_loss(log_softmax(input, dim=1), target, weight, ignore_index, reduction)


def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(input - target)^2``."""
    _check_reduction(reduction)
    target = as_tensor_like(target, input)
    _check_same_shape(input, target, "mse_loss")
    diff = math.sub(input, target)
    return _reduce(math.mul(diff, diff), reduction)


def smooth_l1_loss(input, target, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """Huber-style loss: ``0.5 d^2 / beta`` for ``|d| < beta``, else ``|d| - 0.5 beta``."""
    _check_reduction(reduction)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss needs beta >= 0, got {beta}")
    target = as_tensor_like(target, input)
    _check_same_shape(input, target, "smooth_l1_loss")
    d = math.abs(math.sub(input, target))
    if beta == 0:
        return _reduce(d, reduction)
    quadratic = math.mul(math.mul(d, d), 0.5 / beta)
    linear = math.sub(d, 0.5 * beta)
    return _reduce(math.where(d.data < beta, quadratic, linear), reduction)


def binary_cross_entropy_with_logits(
    input, target, weight=None, reduction: str = "mean", pos_weight=None
) -> Tensor:
    """Sigmoid + binary cross-entropy in one stable expression:
    ``(1 - t) x + (1 + (p - 1) t) softplus(-x)`` with p = ``pos_weight`` (1 when None)."""
    _check_reduction(reduction)
    target = as_tensor_like(target, input)
    _check_same_shape(input, target, "binary_cross_entropy_with_logits")
    soft = softplus(math.neg(input))
    if pos_weight is not None:
        pos_weight = as_tensor_like(pos_weight, input)
        soft = math.mul(math.add(1.0, math.mul(math.sub(pos_weight, 1.0), target)), soft)
    loss = math.add(math.mul(math.sub(1.0, target), input), soft)
    if weight is not None:
        loss = math.mul(loss, as_tensor_like(weight, input))
    return _reduce(loss, reduction)
