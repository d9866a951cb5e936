"""The classification loss: negative log-likelihood of class indices and softmax cross-entropy.

Shapes follow PyTorch: scores or log-probabilities (N, C) or (N, C, d1, d2, ...) with the
classes on axis 1, targets (N,) or (N, d1, d2, ...) of integer class indices in [0, C) or
``ignore_index``. ``weight`` (C,) scales each class's loss; ``reduction`` is "none" (one loss
per sample), "sum", or "mean": the sum divided by the summed weights of the counted samples,
so that ignored samples and class weights do not bias the mean.
"""

from __future__ import annotations

from minivision.backend import get_array_module
from minivision.reference.activation import log_softmax, log_softmax_backward


def sample_weights(target, weight, ignore_index, dtype):
    """target (N, d1, ...) -> (w, index), both (N, d1, ...).

    w[n]: the weight of sample n's class (1 without ``weight``), 0 where the target is
    ``ignore_index``, as ``dtype``. index[n]: the target, with ignored entries replaced by
    class 0 so that it can index the classes (their weight 0 cancels what they pick).
    """
    xp = get_array_module(target, weight)
    counted = target != ignore_index
    index = xp.where(counted, target, 0)
    w = weight[index] if weight is not None else xp.ones(target.shape, dtype)
    return (w * counted).astype(dtype), index


def nll_loss(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    """logp (N, C, d1, ...), target (N, d1, ...) -> loss: (N, d1, ...) for "none", else a scalar.

        loss[n] = -w[n] * logp[n, target[n]]      w[n] = weight[target[n]], 0 if ignored
        "sum": sum_n loss[n]      "mean": sum_n loss[n] / sum_n w[n]

    Lecture: four standard problems (the classifier's loss); segmentation (the same loss at
    every pixel, with an ignore label for pixels on object borders).
    """
    xp = get_array_module(logp, target, weight)
    w, index = sample_weights(target, weight, ignore_index, logp.dtype)
    picked = xp.take_along_axis(logp, xp.expand_dims(index, 1), axis=1).squeeze(1)
    losses = -picked * w
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / w.sum()


def nll_loss_backward(grad, logp, target, weight=None, ignore_index=-100, reduction="mean"):
    """grad (loss's shape), logp (N, C, d1, ...), target (N, d1, ...) -> dL/dlogp (N, C, d1, ...).

    Each sample's loss reads one entry, logp[n, target[n]], so the gradient is 0 everywhere
    else and there

        dL/dlogp[n, target[n]] = -w[n] * grad[n]     ("none"; a scalar grad for "sum")
                                 -w[n] * grad / sum_m w[m]     ("mean")

    An ignored sample has w[n] = 0 and gets no gradient.
    """
    xp = get_array_module(grad, logp, target, weight)
    # BEGIN SOLUTION cross_entropy: write the NLL loss backward (weights, ignore_index, reduction)
    w, index = sample_weights(target, weight, ignore_index, logp.dtype)
    g = -w * grad
    if reduction == "mean":
        g = g / w.sum()
    out = xp.zeros(logp.shape, dtype=g.dtype)
    xp.put_along_axis(out, xp.expand_dims(index, 1), xp.expand_dims(g, 1), axis=1)
    return out
    # END SOLUTION cross_entropy


def cross_entropy(x, target, weight=None, ignore_index=-100, reduction="mean"):
    """x (N, C, d1, ...) raw scores, target (N, d1, ...) -> loss, as ``nll_loss``.

        cross_entropy(x, target) = nll_loss(log_softmax(x, 1), target)
                                 = -x[n, target[n]] + logsumexp_c x[n, c]   (per sample)

    Lecture: four standard problems (training the classifier); localization (the class
    loss beside the box regression loss).
    """
    return nll_loss(log_softmax(x, 1), target, weight, ignore_index, reduction)


def cross_entropy_backward(grad, x, target, weight=None, ignore_index=-100, reduction="mean"):
    """grad (the loss's shape), x (N, C, d1, ...), target (N, d1, ...) -> dL/dx (N, C, d1, ...).

    The chain rule through the two steps: log_softmax_backward(nll_loss_backward(grad)). Per
    sample (weight 1, "none") it comes to grad[n] * (softmax(x)[n] - onehot(target[n])).
    """
    logp = log_softmax(x, 1)
    dlogp = nll_loss_backward(grad, logp, target, weight, ignore_index, reduction)
    return log_softmax_backward(dlogp, logp, 1)
