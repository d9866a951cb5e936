"""Batch normalisation over (N, C) or (N, C, H, W), training and evaluation modes."""
from __future__ import annotations

from minivision.backend import get_array_module
from minivision.tensor import Function, Tensor


class _BatchNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, statistics per channel (axis 1)."""

    def forward(self, x, weight, bias, mean=None, var=None, eps=1e-5, batch_stats=False):
        xp = get_array_module(x)
        self.axes = _channel_axes(x)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        self.batch_stats = batch_stats
        self.inv_std = (1 / xp.sqrt(var + eps)).reshape(shape)
        self.x_hat = (x - mean.reshape(shape)) * self.inv_std
        self.weight = weight.reshape(shape) if weight is not None else None
        out = self.x_hat
        if weight is not None:
            out = out * self.weight
        if bias is not None:
            out = out + bias.reshape(shape)
        return out

    def backward(self, grad):
        scale = self.inv_std if self.weight is None else self.inv_std * self.weight  # dy/dx at fixed statistics
        stats_move = self.batch_stats and self.needs_grad[0]
        sum_g = grad.sum(axis=self.axes) if stats_move or self.needs_grad[2] else None
        sum_gx = (grad * self.x_hat).sum(axis=self.axes) if stats_move or self.needs_grad[1] else None
        g_weight, g_bias = (sum_gx if self.needs_grad[1] else None), (sum_g if self.needs_grad[2] else None)
        if not self.needs_grad[0]:
            return None, g_weight, g_bias
        if not self.batch_stats:  # fixed statistics: an affine map
            return grad * scale, g_weight, g_bias
        # the statistics depend on x too: subtract the mean gradient and its projection on x_hat
        # (the means of g_hat = grad * weight and g_hat * x_hat are weight * the sums above / count)
        count = grad.size // grad.shape[1]
        mean_g, mean_gx = (sum_g / count).reshape(scale.shape), (sum_gx / count).reshape(scale.shape)
        g_x = (grad - mean_g - self.x_hat * mean_gx) * scale
        return g_x, g_weight, g_bias


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
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm in evaluation needs running_mean and running_var")
        return _BatchNorm.apply(input, weight, bias, mean=raw(running_mean), var=raw(running_var), eps=eps)
    count = input.numel() // c
    if count < 2:
        raise ValueError(f"batch_norm in training needs more than 1 value per channel, got input shape {input.shape}")
    data = raw(input)
    mean, var = data.mean(axis=_channel_axes(data)), data.var(axis=_channel_axes(data))
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
