# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 9. Gradient checking your own layer
# A new layer in minivision is a `Function` with a `forward` and a `backward` on arrays.
# This tutorial writes one (a scaled softplus, `y = log(1 + exp(a x)) / a`), checks it with
# `mv.gradcheck`, then plants a bug and reads the report that points at it.

# %%
import numpy as np

import minivision as mv
from minivision.backend import get_array_module
from minivision.tensor import Function

# %% [markdown]
# ## Forward and backward, side by side
# (The library's own layers are written this way too: `minivision/reference/activation.py`
# holds each activation's forward beside its backward as plain functions of arrays, and
# `minivision/functional/activation.py` wraps them as `Function`s.)
# `forward` receives raw arrays (NumPy here, CuPy on a GPU: use `xp`), keeps what the
# backward needs on `self`, and returns the output. `backward` receives dL/dy and returns
# one gradient per input: dL/dx = dL/dy * dy/dx, and dy/dx = sigmoid(a x).


# %%
class ScaledSoftplus(Function):
    def forward(self, x, a=1.0):
        xp = get_array_module(x)
        self.ax = a * x
        # log(1 + e^t) = max(t, 0) + log(1 + e^-|t|): no overflow for large |t|
        return (xp.maximum(self.ax, 0) + xp.log1p(xp.exp(-xp.abs(self.ax)))) / a

    def backward(self, grad):
        xp = get_array_module(grad)
        return grad / (1 + xp.exp(-self.ax))


def scaled_softplus(x, a=1.0):
    return ScaledSoftplus.apply(x, a=a)


# %% [markdown]
# ## gradcheck: backprop against central differences
# `mv.gradcheck` evaluates L(x) = <g, f(x)> for a random upstream gradient g (never all
# ones: that would hide a backward that forgets to multiply by `grad`), perturbs every
# element by ±eps in float64, and compares (L(x+eps) - L(x-eps)) / 2eps with backprop.

# %%
x = mv.tensor(np.random.default_rng(0).standard_normal((4, 5)), dtype="float64", requires_grad=True)
report = mv.gradcheck(lambda t: scaled_softplus(t, a=2.0), [x])
print(report)
assert max(report.max_rel_error.values()) < 1e-6

# %% [markdown]
# ## A planted bug, and what the report says
# Forget the `a` inside the sigmoid: the derivative is then sigmoid(x) instead of
# sigmoid(a x). gradcheck raises `GradcheckError` naming the input, the worst element,
# the analytic and numeric values and their relative error.


# %%
class BuggySoftplus(ScaledSoftplus):
    def backward(self, grad):
        xp = get_array_module(grad)
        return grad / (1 + xp.exp(-self.ax / 2.0))  # the bug: a divided out again


try:
    mv.gradcheck(lambda t: BuggySoftplus.apply(t, a=2.0), [x])
    raise AssertionError("gradcheck should have caught the bug")
except mv.GradcheckError as error:
    print("caught:", error)
    assert "input 0" in str(error)

# %% [markdown]
# ## Big inputs: one random direction
# Checking every element costs two forward passes per element. `fast=True` checks the
# derivative along one random direction instead: two passes whatever the size.

# %%
big = mv.tensor(
    np.random.default_rng(1).standard_normal((64, 64)), dtype="float64", requires_grad=True
)
print(mv.gradcheck(lambda t: scaled_softplus(t, a=3.0), [big], fast=True))

# %% [markdown]
# `mv.rel_error(a, b)` is the figure course notebooks print when comparing two arrays:
# max |a - b| / max(1e-8, |a| + |b|), elementwise.

# %%
analytic = 1 / (1 + np.exp(-2.0 * x.numpy()))
numeric = (
    scaled_softplus(mv.tensor(x.numpy() + 1e-6), 2.0).numpy()
    - scaled_softplus(mv.tensor(x.numpy() - 1e-6), 2.0).numpy()
) / 2e-6
print("rel_error:", mv.rel_error(analytic, numeric))
assert mv.rel_error(analytic, numeric) < 1e-7
