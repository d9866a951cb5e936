# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Quickstart: a tiny network, a few training steps, a gradient check
# minivision is a from-scratch autograd engine over NumPy arrays. This script builds a
# two-layer classifier, trains it on two Gaussian blobs, and checks one op's gradient
# numerically. It runs in a few seconds on a laptop CPU.

# %%
import numpy as np

import minivision as mv
from minivision import functional as F
from minivision import nn, optim

mv.manual_seed(0)
rng = np.random.default_rng(0)
x = np.concatenate([rng.normal(-1, 0.5, (64, 2)), rng.normal(1, 0.5, (64, 2))]).astype(np.float32)
y = np.repeat([0, 1], 64)

# %% [markdown]
# A model is a `Module`; `Sequential` chains layers, as in PyTorch.

# %%
model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for step in range(50):
    loss = F.cross_entropy(model(mv.tensor(x)), mv.tensor(y))
    opt.zero_grad()
    loss.backward()
    opt.step()
accuracy = (model(mv.tensor(x)).argmax(dim=1).numpy() == y).mean()
print(f"loss after 50 steps: {loss.item():.4f}, training accuracy: {accuracy:.2%}")
assert accuracy > 0.9, "two well-separated blobs should be learned in 50 steps"

# %% [markdown]
# `mv.gradcheck` compares backprop with central differences in float64, pushing a random
# upstream gradient through both; it raises `GradcheckError` naming the worst element.

# %%
w = mv.tensor(rng.standard_normal((3, 4)), dtype="float64", requires_grad=True)
report = mv.gradcheck(lambda t: F.log_softmax(t, dim=1), [w])
print(report)
