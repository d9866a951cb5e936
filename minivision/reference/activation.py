"""The nonlinearities: (leaky) ReLU, sigmoid, softmax and log-softmax, forward and backward.

Each forward works on an array of any shape (softmax and log-softmax along one axis ``dim``)
and returns an array of the same shape; each ``*_backward`` takes the upstream gradient
``grad`` (the shape of the output) and returns the gradient with respect to the input.
Sigmoid, softmax and log-softmax differentiate from their saved output ``y``: the forward
already computed everything the derivative needs.
"""

from __future__ import annotations

from minivision.backend import get_array_module


def relu(x, negative_slope=None):
    """x (any shape) -> same shape: the (leaky) rectified linear unit.

        relu(x) = x                   where x > 0
                  negative_slope * x  elsewhere

    Without ``negative_slope``, the plain ReLU max(x, 0) as ``torch.relu`` computes it: 0 where
    x < 0, -inf included, x elsewhere (a slope of 0 gives NaN at -inf, as ``torch``'s
    ``leaky_relu`` does). NaN stays NaN.
    Lecture: the nonlinearity between the layers of every network in the outline (OverFeat,
    YOLO, FCN, U-Net).
    """
    xp = get_array_module(x)
    if negative_slope is None:
        return xp.where(x < 0, 0, x)
    return xp.where(x > 0, x, negative_slope * x)


def relu_backward(grad, x, negative_slope=None):
    """grad, x (same shape) -> dL/dx (same shape): the slope of relu at x times grad.

        dL/dx = grad                   where x > 0
                negative_slope * grad  elsewhere

    At x == 0 the ReLU has no derivative; the gradient there is that of the left side
    (0 for the plain ReLU, whose ``negative_slope`` is None), as in PyTorch.
    """
    xp = get_array_module(grad, x)
    negative_slope = 0.0 if negative_slope is None else negative_slope
    # BEGIN SOLUTION relu: write the (leaky) ReLU backward
    return xp.where(x > 0, grad, negative_slope * grad)
    # END SOLUTION relu


def sigmoid(x):
    """x (any shape) -> y (same shape): y = 1 / (1 + exp(-x)), each value in [0, 1].

    exp is only taken of -|x| <= 0, so it never overflows: for x >= 0 the formula as written,
    for x < 0 the same value as exp(x) / (1 + exp(x)). Lecture: region proposals (the RPN's
    objectness score is a sigmoid of one logit per anchor).
    """
    xp = get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(grad, y):
    """grad, y = sigmoid(x) (same shape) -> dL/dx (same shape).

    d sigmoid(x) / dx = sigmoid(x) (1 - sigmoid(x)) = y (1 - y)
    """
    # BEGIN SOLUTION sigmoid: write the sigmoid backward from the saved output y
    return grad * y * (1 - y)
    # END SOLUTION sigmoid


def softmax(x, dim):
    """x (any shape) -> y (same shape): y_i = exp(x_i) / sum_j exp(x_j) along axis ``dim``.

    The values along ``dim`` are positive and sum to 1: a probability for each class.
    Subtracting the largest score first changes nothing (the factor exp(-max) cancels) and
    keeps every exp at most 1, so it never overflows. Lecture: four standard problems
    (classification: a probability for each class); segmentation (one at every pixel).
    """
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def softmax_backward(grad, y, dim):
    """grad, y = softmax(x, dim) (same shape) -> dL/dx (same shape).

    The Jacobian along ``dim`` is dy_i/dx_j = y_i (delta_ij - y_j), so the Jacobian-vector
    product is computed without forming the matrix:

        dL/dx_j = sum_i grad_i y_i (delta_ij - y_j) = y_j (grad_j - sum_i grad_i y_i)
    """
    # BEGIN SOLUTION softmax: write the softmax backward, a Jacobian-vector product along dim
    return y * (grad - (grad * y).sum(axis=dim, keepdims=True))
    # END SOLUTION softmax


def log_softmax(x, dim):
    """x (any shape) -> y (same shape): y = log(softmax(x, dim)) = x - logsumexp(x) along ``dim``.

        logsumexp(x) = m + log(sum_j exp(x_j - m)),  m = max_j x_j

    Written this way no exp overflows and no log sees 0 (the largest term is exp(0) = 1).
    Lecture: four standard problems (the classifier's log-probabilities, which the
    cross-entropy loss reads).
    """
    xp = get_array_module(x)
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))


def log_softmax_backward(grad, y, dim):
    """grad, y = log_softmax(x, dim) (same shape) -> dL/dx (same shape).

    dy_i/dx_j = delta_ij - softmax(x)_j, and softmax(x) = exp(y), so

        dL/dx_j = grad_j - exp(y_j) sum_i grad_i
    """
    xp = get_array_module(grad, y)
    # BEGIN SOLUTION cross_entropy: write the log_softmax backward along dim
    return grad - xp.exp(y) * grad.sum(axis=dim, keepdims=True)
    # END SOLUTION cross_entropy
