"""Batch normalisation of (N, C) or (N, C, H, W) arrays, in training and in evaluation.

Each channel c is normalised by a mean and a variance: those of the batch while training
(over the samples and every position), the running ones in evaluation; then scaled and
shifted by the learned ``weight[c]`` and ``bias[c]``:

    x_hat = (x - mean) / sqrt(var + eps),    y = x_hat * weight + bias.

Training also moves the running statistics towards the batch's. Its backward differentiates
through the batch statistics too, since they depend on every x of the channel.
"""

from __future__ import annotations

from minivision.backend import get_array_module


def _per_channel(vector, x):
    """A (C,) vector shaped to broadcast along axis 1 of x (N, C, ...)."""
    return vector.reshape((1, -1) + (1,) * (x.ndim - 2))


def _channel_axes(x) -> tuple:
    """Every axis of x (N, C, ...) but the channel axis: what batch statistics reduce over."""
    return (0,) + tuple(range(2, x.ndim))


def batch_statistics(x):
    """x (N, C, ...) -> (mean, var), each (C,): each channel's mean and biased variance
    (divided by the count, N * H * W) over the batch and every position.

    Lecture: the segmentation networks' conv-batch-norm-ReLU blocks.
    """
    return x.mean(axis=_channel_axes(x)), x.var(axis=_channel_axes(x))


def batch_norm(x, mean, var, weight=None, bias=None, eps=1e-5):
    """x (N, C, ...), mean, var, weight, bias (C,) -> y (N, C, ...), x's dtype:
    y = (x - mean) / sqrt(var + eps) * weight + bias per channel (weight 1 and bias 0 when
    None). Training passes ``batch_statistics(x)``, evaluation the running statistics.

    Lecture: the segmentation networks' conv-batch-norm-ReLU blocks.
    """
    xp = get_array_module(x)
    y = (x - _per_channel(mean, x)) / _per_channel(xp.sqrt(var + eps), x)
    if weight is not None:
        y = y * _per_channel(weight, x)
    if bias is not None:
        y = y + _per_channel(bias, x)
    return y.astype(x.dtype, copy=False)


def update_running_statistics(running_mean, running_var, mean, var, count: int, momentum: float):
    """Move the running statistics (C,) towards the batch's, in place, as PyTorch does:
    running = (1 - momentum) * running + momentum * batch, the batch variance made unbiased
    (times count / (count - 1), count = N * H * W values per channel).

    Lecture: the segmentation networks' conv-batch-norm-ReLU blocks.
    """
    running_mean *= 1 - momentum
    running_mean += momentum * mean.astype(running_mean.dtype)
    running_var *= 1 - momentum
    running_var += momentum * (var * (count / (count - 1))).astype(running_var.dtype)


def batch_norm_backward(grad, x, mean, var, weight=None, eps=1e-5, batch_stats=False):
    """grad, x (N, C, ...), mean, var, weight (C,) -> (grad_x, grad_weight, grad_bias).

    grad_bias = sum of grad, grad_weight = sum of grad * x_hat (over all but the channel
    axis). With fixed statistics (evaluation) y is affine in x: grad_x = grad * weight /
    sqrt(var + eps). With the batch's (``batch_stats``) the mean and variance move with x
    too, which takes away the mean of g = grad * weight and its projection on x_hat:
    grad_x = (g - mean(g) - x_hat * mean(g * x_hat)) / sqrt(var + eps).

    Lecture: the segmentation networks' conv-batch-norm-ReLU blocks.
    """
    xp = get_array_module(grad)
    axes = _channel_axes(grad)
    inv_std = _per_channel(1 / xp.sqrt(var + eps), grad)
    x_hat = (x - _per_channel(mean, x)) * inv_std
    grad_bias, grad_weight = grad.sum(axis=axes), (grad * x_hat).sum(axis=axes)
    g = grad if weight is None else grad * _per_channel(weight, grad)
    if batch_stats:
        mean_g = g.mean(axis=axes, keepdims=True)
        mean_gx = (g * x_hat).mean(axis=axes, keepdims=True)
        g = g - mean_g - x_hat * mean_gx
    return (g * inv_std).astype(grad.dtype, copy=False), grad_weight, grad_bias
