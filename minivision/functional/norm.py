"""Batch normalisation over (N, C) or (N, C, H, W), training and evaluation modes.

The math is ``minivision.reference.norm``. With the reference switch off, float32 and
float64 arrays take the fast path: five passes over the activation per training step
(statistics, output, the gradient's two sums, input gradient), Numba kernels for NumPy
arrays (``_norm_kernels``) and CUDA kernels for CuPy's (``_norm_cuda``). They compute the
output as PyTorch's CPU kernel does, y = x * scale + shift per channel with
scale = weight / sqrt(var + eps) and shift = bias - mean * scale.
"""

from __future__ import annotations

from minivision.backend import get_array_module
from minivision.dispatch import cuda_kernels_apply, fast_paths_enabled, numba_kernels_apply
from minivision.functional import _norm_cuda, _norm_kernels
from minivision.reference import norm as reference
from minivision.tensor import Function, Tensor


def _kernels(array):
    """The kernels that take ``array`` (``_norm_cuda`` for CuPy, ``_norm_kernels`` for NumPy,
    float32 or float64, fast paths on), or None: the reference runs."""
    if not fast_paths_enabled():
        return None
    if cuda_kernels_apply(array):
        return _norm_cuda
    return _norm_kernels if numba_kernels_apply(array) else None


class _BatchNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, statistics per channel (axis 1): the
    batch's (``batch_stats``, which the gradient flows through) or fixed ones."""

    def forward(self, x, weight, bias, mean=None, var=None, eps=1e-5, batch_stats=False):
        self.x, self.weight, self.mean, self.var = x, weight, mean, var
        self.eps, self.batch_stats = eps, batch_stats
        kernels = _kernels(x)
        if kernels is None:
            return reference.batch_norm(x, mean, var, weight, bias, eps)
        _, scale = self._scales()
        return kernels.affine(x, scale, -mean * scale if bias is None else bias - mean * scale)

    def backward(self, grad):
        kernels = _kernels(grad)
        if kernels is None:
            grads = reference.batch_norm_backward(
                grad, self.x, self.mean, self.var, self.weight, self.eps, self.batch_stats
            )
            return tuple(g if need else None for g, need in zip(grads, self.needs_grad))
        return self._fast_backward(kernels, grad)

    def _scales(self):
        """(inv_std, scale): 1 / sqrt(var + eps), and times weight: dy/dx at fixed statistics."""
        inv_std = 1 / get_array_module(self.var).sqrt(self.var + self.eps)
        return inv_std, inv_std if self.weight is None else inv_std * self.weight

    def _fast_backward(self, kernels, grad):
        """The reference's backward on the kernels, computing only the sums that are needed."""
        inv_std, scale = self._scales()
        stats_move = self.batch_stats and self.needs_grad[0]
        sums = stats_move or self.needs_grad[1] or self.needs_grad[2]
        sum_g, sum_gx = (
            kernels.gradient_sums(grad, self.x, self.mean, inv_std) if sums else (None, None)
        )
        g_weight = sum_gx if self.needs_grad[1] else None
        g_bias = sum_g if self.needs_grad[2] else None
        if not self.needs_grad[0]:
            return None, g_weight, g_bias
        if not self.batch_stats:  # fixed statistics: an affine map
            return grad * scale.reshape((1, -1) + (1,) * (grad.ndim - 2)), g_weight, g_bias
        count = grad.size // grad.shape[1]
        g_x = kernels.input_gradient(
            grad, self.x, self.mean, inv_std, scale, sum_g / count, sum_gx / count
        )
        return g_x, g_weight, g_bias


def _batch_statistics(x):
    """The per-channel mean and biased variance of x (N, C, ...), in x's dtype."""
    kernels = _kernels(x)
    return reference.batch_statistics(x) if kernels is None else kernels.moments(x)


def batch_norm(
    input,
    running_mean,
    running_var,
    weight=None,
    bias=None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise each channel of ``input`` (N, C, ...) by batch statistics while training
    (updating ``running_mean``/``running_var`` in place with ``momentum``, the variance
    unbiased as in PyTorch) or by the running statistics in evaluation."""
    if input.ndim < 2:
        raise ValueError(f"batch_norm needs input of shape (N, C, ...), got {input.shape}")
    c = input.shape[1]
    for name, t in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(
                f"batch_norm: {name} must have shape ({c},) for {c} channels, got {tuple(t.shape)}"
            )
    raw = lambda t: t.data if isinstance(t, Tensor) else t  # noqa: E731
    get_array_module(
        *(raw(t) for t in (input, running_mean, running_var, weight, bias))
    )  # one device for all
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm in evaluation needs running_mean and running_var")
        return _BatchNorm.apply(
            input, weight, bias, mean=raw(running_mean), var=raw(running_var), eps=eps
        )
    count = input.numel() // c
    if count < 2:
        raise ValueError(
            f"batch_norm in training needs more than 1 value per channel, got input shape {input.shape}"
        )
    mean, var = _batch_statistics(raw(input))
    out = _BatchNorm.apply(input, weight, bias, mean=mean, var=var, eps=eps, batch_stats=True)
    if running_mean is not None:
        reference.update_running_statistics(
            raw(running_mean), raw(running_var), mean, var, count, momentum
        )
    return out
