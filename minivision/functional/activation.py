"""Activations (relu, leaky_relu, sigmoid, tanh, softplus), softmax/log_softmax and dropout.

relu, sigmoid, softmax and log_softmax compute with ``minivision.reference.activation``;
(leaky) ReLU takes one Numba pass each way on NumPy floats unless the reference switch is on.
"""

from __future__ import annotations

from minivision.backend import get_array_module, random_generator

# isort: split
# BEGIN FAST PATH relu
from minivision.dispatch import fast_paths_enabled, numba_kernels_apply
from minivision.functional import _activation_kernels as fast

# END FAST PATH relu
# isort: split
from minivision.reference import activation as reference
from minivision.tensor import Function, Tensor


class _LeakyReLU(Function):
    """x where x > 0, else slope * x (max(x, 0) without a slope); the gradient at 0 is that of
    the left side."""

    def forward(self, x, negative_slope=None):
        self.x, self.slope = x, negative_slope
        # BEGIN FAST PATH relu
        if fast_paths_enabled() and numba_kernels_apply(x):
            return fast.leaky_relu(x, negative_slope)
        # END FAST PATH relu
        return reference.relu(x, negative_slope)

    def backward(self, grad):
        # BEGIN FAST PATH relu
        if fast_paths_enabled() and numba_kernels_apply(self.x):
            return fast.leaky_relu_backward(grad, self.x, self.slope)
        # END FAST PATH relu
        return reference.relu_backward(grad, self.x, self.slope)


def relu(input, inplace: bool = False) -> Tensor:
    """max(x, 0) (-inf gives 0); the gradient at 0 is 0, as PyTorch. ``inplace`` is accepted
    and ignored."""
    return _LeakyReLU.apply(input, negative_slope=None)


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x for x > 0, ``negative_slope * x`` otherwise."""
    return _LeakyReLU.apply(input, negative_slope=float(negative_slope))


class _Sigmoid(Function):
    def forward(self, x):
        self.y = reference.sigmoid(x)
        return self.y

    def backward(self, grad):
        return reference.sigmoid_backward(grad, self.y)


class _Tanh(Function):
    def forward(self, x):
        self.y = get_array_module(x).tanh(x)
        return self.y

    def backward(self, grad):
        return grad * (1 - self.y * self.y)


class _Softplus(Function):
    def forward(self, x, beta=1.0, threshold=20.0):
        xp = get_array_module(x)
        self.bx = x * beta
        self.linear = self.bx > threshold  # PyTorch returns x itself above the threshold
        soft = (xp.maximum(self.bx, 0) + xp.log1p(xp.exp(-xp.abs(self.bx)))) / x.dtype.type(beta)
        return xp.where(self.linear, x, soft)

    def backward(self, grad):
        xp = get_array_module(grad)
        return grad * xp.where(self.linear, 1, reference.sigmoid(self.bx))  # d softplus = sigmoid


def sigmoid(input) -> Tensor:
    """1 / (1 + exp(-x)), computed without overflow."""
    return _Sigmoid.apply(input)


def tanh(input) -> Tensor:
    return _Tanh.apply(input)


def softplus(input, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, stable for large |x|; linear above ``threshold``."""
    return _Softplus.apply(input, beta=beta, threshold=threshold)


def _check_dim(input, dim, name):
    if dim is None or not isinstance(dim, int) or not -input.ndim <= dim < max(input.ndim, 1):
        raise ValueError(f"{name} needs dim, an int in [-{input.ndim}, {input.ndim}), got {dim!r}")
    return dim


class _Softmax(Function):
    def forward(self, x, dim=-1):
        self.y, self.dim = reference.softmax(x, dim), dim
        return self.y

    def backward(self, grad):
        return reference.softmax_backward(grad, self.y, self.dim)


class _LogSoftmax(Function):
    def forward(self, x, dim=-1):
        self.y, self.dim = reference.log_softmax(x, dim), dim
        return self.y

    def backward(self, grad):
        return reference.log_softmax_backward(grad, self.y, self.dim)


def softmax(input, dim: int) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``, shifted by the maximum so it never overflows."""
    return _Softmax.apply(input, dim=_check_dim(input, dim, "softmax"))


def log_softmax(input, dim: int) -> Tensor:
    """log(softmax(x)) along ``dim``, computed as x - logsumexp(x) for stability."""
    return _LogSoftmax.apply(input, dim=_check_dim(input, dim, "log_softmax"))


class _Dropout(Function):
    def forward(self, x, p=0.5):
        xp = get_array_module(x)
        keep = xp.asarray(
            random_generator().random(x.shape) >= p
        )  # drawn on the host, as on the CPU
        self.scale = keep.astype(x.dtype) / x.dtype.type(1 - p)
        return x * self.scale

    def backward(self, grad):
        return grad * self.scale


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) while training."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0.0
    return _Dropout.apply(input, p=p)
