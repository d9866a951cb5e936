"""Batch normalisation over (N, C) or (N, C, H, W), training and evaluation modes."""
from __future__ import annotations

import numpy as np

from minivision import threads
from minivision.backend import cuda_kernels_apply, get_array_module, numba_kernels_apply
from minivision.functional import _norm_cuda
from minivision.functional import _norm_kernels as kernels
from minivision.tensor import Function, Tensor


class _BatchNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, statistics per channel (axis 1),
    computed as PyTorch's CPU kernel does: y = x * scale + shift per channel."""

    def forward(self, x, weight, bias, mean=None, var=None, eps=1e-5, batch_stats=False):
        xp = get_array_module(x)
        self.x, self.mean, self.batch_stats = x, mean, batch_stats
        self.inv_std = 1 / xp.sqrt(var + eps)
        self.scale = self.inv_std if weight is None else self.inv_std * weight  # dy/dx at fixed statistics
        return _affine(x, self.scale, -mean * self.scale if bias is None else bias - mean * self.scale)

    def backward(self, grad):
        stats_move = self.batch_stats and self.needs_grad[0]
        sums = stats_move or self.needs_grad[1] or self.needs_grad[2]
        sum_g, sum_gx = _gradient_sums(grad, self.x, self.mean, self.inv_std) if sums else (None, None)
        g_weight, g_bias = (sum_gx if self.needs_grad[1] else None), (sum_g if self.needs_grad[2] else None)
        if not self.needs_grad[0]:
            return None, g_weight, g_bias
        if not self.batch_stats:  # fixed statistics: an affine map
            return grad * self.scale.reshape(_channel_shape(grad)), g_weight, g_bias
        # the statistics depend on x too: subtract the mean gradient and its projection on x_hat
        # (the means of g_hat = grad * weight and g_hat * x_hat are weight * the sums above / count)
        count = grad.size // grad.shape[1]
        g_x = _input_gradient(grad, self.x, self.mean, self.inv_std, self.scale, sum_g / count, sum_gx / count)
        return g_x, g_weight, g_bias


# Each step below is one Numba pass for NumPy arrays (``_norm_kernels``, the channels shared
# between the worker threads), one CUDA kernel for CuPy arrays (``_norm_cuda``) and array
# operations for float16 (the ``_xp`` twins). x and grad are (N, C, ...); every other
# argument is a (C,) vector.
def _moments(x):
    """The per-channel mean and biased variance of x, in x's dtype."""
    if cuda_kernels_apply(x):
        return _norm_cuda.moments(x)
    if not numba_kernels_apply(x):
        return _moments_xp(x)
    mean, var = np.empty(x.shape[1]), np.empty(x.shape[1])
    _over_channels(kernels.channel_moments, _ncl(x), mean, var)
    return mean.astype(x.dtype), var.astype(x.dtype)


def _moments_xp(x):
    return x.mean(axis=_channel_axes(x)), x.var(axis=_channel_axes(x))


def _affine(x, scale, shift):
    """x * scale + shift per channel."""
    if cuda_kernels_apply(x):
        return _norm_cuda.affine(x, scale, shift)
    if not numba_kernels_apply(x):
        return _affine_xp(x, scale, shift)
    out = np.empty_like(x)
    _over_channels(kernels.affine, _ncl(x), scale, shift, _ncl(out))
    return out


def _affine_xp(x, scale, shift):
    return x * scale.reshape(_channel_shape(x)) + shift.reshape(_channel_shape(x))


def _gradient_sums(grad, x, mean, inv_std):
    """(sum of grad, sum of grad * x_hat) per channel, x_hat = (x - mean) * inv_std."""
    if cuda_kernels_apply(grad):
        return _norm_cuda.gradient_sums(grad, x, mean, inv_std)
    if not numba_kernels_apply(grad):
        return _gradient_sums_xp(grad, x, mean, inv_std)
    sum_g, sum_gx = np.empty(grad.shape[1]), np.empty(grad.shape[1])
    _over_channels(kernels.gradient_sums, _ncl(grad), _ncl(x), mean, inv_std, sum_g, sum_gx)
    return sum_g.astype(grad.dtype), sum_gx.astype(grad.dtype)


def _gradient_sums_xp(grad, x, mean, inv_std):
    axes, shape = _channel_axes(grad), _channel_shape(grad)
    return grad.sum(axis=axes), (grad * (x - mean.reshape(shape)) * inv_std.reshape(shape)).sum(axis=axes)


def _input_gradient(grad, x, mean, inv_std, scale, mean_g, mean_gx):
    """(grad - mean_g - x_hat * mean_gx) * scale per channel."""
    if cuda_kernels_apply(grad):
        return _norm_cuda.input_gradient(grad, x, mean, inv_std, scale, mean_g, mean_gx)
    if not numba_kernels_apply(grad):
        return _input_gradient_xp(grad, x, mean, inv_std, scale, mean_g, mean_gx)
    out = np.empty_like(grad)
    _over_channels(kernels.input_gradient, _ncl(grad), _ncl(x), mean, inv_std, scale, mean_g, mean_gx, _ncl(out))
    return out


def _input_gradient_xp(grad, x, mean, inv_std, scale, mean_g, mean_gx):
    r = lambda v: v.reshape(_channel_shape(grad))  # noqa: E731
    return (grad - r(mean_g) - (x - r(mean)) * r(inv_std) * r(mean_gx)) * r(scale)


def _ncl(a):
    """(N, C, ...) -> an (N, C, L) view (C-contiguous), L the product of the spatial sizes."""
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], -1)


def _over_channels(kernel, x, *args) -> None:
    """kernel(x, *args, first, stop) for each worker's share [first, stop) of the channels of x (N, C, L)."""
    threads.parallel_map(lambda share: kernel(x, *args, share.start, share.stop), threads.batch_parts(x, axis=1))


def _channel_shape(x) -> tuple:
    """(1, -1, 1, ...): a (C,) vector's shape for broadcasting against x (N, C, ...)."""
    return (1, -1) + (1,) * (x.ndim - 2)


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
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"batch_norm: {name} must have shape ({c},) for {c} channels, got {tuple(t.shape)}")
    raw = lambda t: t.data if isinstance(t, Tensor) else t  # noqa: E731
    get_array_module(*(raw(t) for t in (input, running_mean, running_var, weight, bias)))  # one device for all
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm in evaluation needs running_mean and running_var")
        return _BatchNorm.apply(input, weight, bias, mean=raw(running_mean), var=raw(running_var), eps=eps)
    count = input.numel() // c
    if count < 2:
        raise ValueError(f"batch_norm in training needs more than 1 value per channel, got input shape {input.shape}")
    data = raw(input)
    mean, var = _moments(data)
    out = _BatchNorm.apply(input, weight, bias, mean=mean, var=var, eps=eps, batch_stats=True)
    if running_mean is not None:
        rm, rv = raw(running_mean), raw(running_var)
        rm *= 1 - momentum
        rm += momentum * mean.astype(rm.dtype)
        rv *= 1 - momentum
        rv += momentum * (var * (count / (count - 1))).astype(rv.dtype)
    return out



def _channel_axes(x) -> tuple:
    """Every axis but the channel axis 1: the axes batch statistics reduce over."""
    return (0,) + tuple(range(2, x.ndim))
