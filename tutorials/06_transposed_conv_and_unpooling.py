# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 6. Upsampling: transposed convolution and max unpooling with switches
# Segmentation needs per-pixel outputs, but full resolution all the way through is too
# costly, so networks downsample for context and then upsample back. This tutorial
# builds the two upsampling layers of the lecture by hand and checks them against
# minivision's `F.conv_transpose2d` and `F.max_unpool2d`.

# %%
import os
from pathlib import Path

import numpy as np

import minivision as mv
from minivision import functional as F

FIGURES = Path(os.environ.get("MINIVISION_FIGURES", "tutorial_figures"))
rng = np.random.default_rng(0)

# %% [markdown]
# ## Max pooling remembers its switches
# The lecture's example: a 4x4 input pooled 2x2 gives a 2x2 output. With
# `return_indices=True` max pooling also returns *where* each maximum was, as a flat
# index `h * W + w` into the 4x4 input (PyTorch's convention).

# %%
x = mv.tensor(
    [[[[1.0, 0.5, 6.0, 0.2], [0.3, 5.0, 0.1, 0.4], [0.2, 0.1, 0.3, 0.2], [7.0, 0.6, 0.5, 8.0]]]]
)
pooled, switches = F.max_pool2d(x, kernel_size=2, return_indices=True)
print("pooled:\n", pooled.numpy()[0, 0])
print("switches (flat index into the 4x4 input):\n", switches.numpy()[0, 0])
assert pooled.numpy()[0, 0].tolist() == [[5.0, 6.0], [7.0, 8.0]]
assert switches.numpy()[0, 0].tolist() == [[5, 2], [12, 15]]

# %% [markdown]
# ## Max unpooling puts each value back where its maximum was
# Unpool the lecture's 2x2 values `[[1, 2], [3, 4]]` with those switches: every value
# goes back to its remembered position and every other pixel is zero.

# %%
values = mv.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
unpooled = F.max_unpool2d(values, switches, kernel_size=2)
print("unpooled:\n", unpooled.numpy()[0, 0])
assert unpooled.numpy()[0, 0].tolist() == [
    [0, 0, 2, 0],
    [0, 1, 0, 0],
    [0, 0, 0, 0],
    [3, 0, 0, 4],
]  # the lecture's slide

# %% [markdown]
# Both are written out in plain NumPy in `minivision/reference/pool.py`: `max_pool2d` keeps,
# for every window, the largest value and its flat position (the switch); `max_unpool2d`
# writes each value at its switch. `mv.use_reference(True)` runs every op through those
# functions instead of the fast kernels, with the same results.

# %%
with mv.use_reference(True):
    assert (
        F.max_unpool2d(values, switches, kernel_size=2).numpy().tolist()
        == unpooled.numpy().tolist()
    )

# %% [markdown]
# ## Transposed convolution: each input value stamps the filter into the output
# With stride 2 ("fractional stride 1/2") input pixel (i, j) adds `value * kernel` into
# the output at (2i, 2j); where stamps overlap they add up. Written as a loop:


# %%
def stamp_transposed_conv(x, kernel, stride):
    """x (H, W), kernel (k, k) -> ((H - 1) * stride + k, (W - 1) * stride + k)."""
    k = kernel.shape[0]
    out = np.zeros(((x.shape[0] - 1) * stride + k, (x.shape[1] - 1) * stride + k))
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i * stride : i * stride + k, j * stride : j * stride + k] += x[i, j] * kernel
    return out


small = rng.standard_normal((3, 3))
kernel = rng.standard_normal((3, 3))
by_hand = stamp_transposed_conv(small, kernel, stride=2)
library = F.conv_transpose2d(mv.tensor(small[None, None]), mv.tensor(kernel[None, None]), stride=2)
print(
    "output size:", by_hand.shape, "max difference:", np.abs(library.numpy()[0, 0] - by_hand).max()
)
assert np.allclose(library.numpy()[0, 0], by_hand)

# %% [markdown]
# ## Transposed convolution is the adjoint of convolution
# (`minivision/reference/conv.py` builds both from `im2col`, which copies every window into
# a column, and its adjoint `col2im`, which adds the columns back: the transposed
# convolution's forward is the convolution's input gradient.)
# For every x and y: <conv2d(x, w), y> = <x, conv_transpose2d(y, w)>. That is why its
# forward pass is the backward pass of a convolution (and the other way round).

# %%
x = rng.standard_normal((2, 3, 9, 9))
w = rng.standard_normal((4, 3, 3, 3))
y = rng.standard_normal((2, 4, 4, 4))
left = (F.conv2d(mv.tensor(x), mv.tensor(w), stride=2).numpy() * y).sum()
right = (x * F.conv_transpose2d(mv.tensor(y), mv.tensor(w), stride=2).numpy()).sum()
print(f"<conv(x), y> = {left:.6f}   <x, conv_T(y)> = {right:.6f}")
assert np.isclose(left, right)

# %% [markdown]
# ## A bilinear kernel makes the transposed convolution an interpolation
# FCN initialises its upsampling layers with a bilinear kernel, so before training they
# simply interpolate the coarse scores.

# %%
from minivision import nn  # noqa: E402

up = nn.init.bilinear_kernel(1, 1, 4)
ramp = mv.tensor(np.arange(16.0, dtype=np.float32).reshape(1, 1, 4, 4))
smooth = F.conv_transpose2d(ramp, up, stride=2, padding=1)
print("upsampled ramp row:", np.round(smooth.numpy()[0, 0, 3], 2))
assert smooth.shape == (1, 1, 8, 8)
inner_steps = np.diff(smooth.numpy()[0, 0, 3, 1:-1])
assert np.allclose(inner_steps, 0.5)  # a linear ramp stays linear at half the step

# %%
try:
    from minivision import viz

    FIGURES.mkdir(parents=True, exist_ok=True)
    viz.score_heatmap(
        np.zeros((4, 4)),
        unpooled.numpy()[0, 0],
        title="max unpooling",
        path=FIGURES / "06_unpool.png",
    )
    print("figure:", FIGURES / "06_unpool.png")
except ImportError:
    print("matplotlib is not installed: no figure")
