# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 2. Sliding windows, naive and as a convolution
# To find an object anywhere, classify every window of the image. Done naively that is
# one forward pass per window (36 windows cost 36x). But neighbouring windows share most
# of their pixels, and a convolution already slides over the image: rewrite the
# classifier's fully connected layers as convolutions and run it once. Same scores, one pass.

# %%
import os
import time
from pathlib import Path

import numpy as np

import minivision as mv
from minivision.data import Shapes
from minivision.models.sliding_window import (
    PatchClassifier,
    classify_windows_naive,
    to_fully_convolutional,
)

FAST = os.environ.get("MINIVISION_FAST") == "1"
FIGURES = Path(os.environ.get("MINIVISION_FIGURES", "tutorial_figures"))
mv.manual_seed(0)

# %% [markdown]
# ## A patch classifier
# Two unpadded conv3x3 + 2x2 pool stages turn an 18x18 patch into a 32x3x3 feature map;
# two fully connected layers score it. (Unpadded, so that a crop and the same window inside
# the full image see exactly the same pixels.)

# %%
model = PatchClassifier(num_classes=4, window=18)
model.eval()
image, target = Shapes(1, image_size=66 if FAST else 130, min_objects=2, max_objects=3, seed=3)[0]
print(model)

# %% [markdown]
# ## Naive: crop every window, classify the crops
# With stride 4 (the product of the two pools), a 66x66 image has 13 x 13 = 169 windows.

# %%
classify_windows_naive(model, image, window=18, stride=4)  # warm-up: first calls compile kernels
start = time.perf_counter()
naive = classify_windows_naive(model, image, window=18, stride=4)
naive_ms = 1e3 * (time.perf_counter() - start)
print("naive scores:", naive.shape, f"{naive_ms:.1f} ms")

# %% [markdown]
# ## Convolutional: fully connected layers become convolutions
# The first fully connected layer reads the whole 32x3x3 map, so its weight (64, 288) is a
# (64, 32, 3, 3) convolution kernel; the last one becomes a 1x1 convolution. Run once over
# the full image, the network outputs a map: position (r, c) scores window (r, c).
# A convolution is itself every window at once: `im2col` in `minivision/reference/conv.py`
# copies each window into a column, and one matrix product scores all the columns.

# %%
fully_conv = to_fully_convolutional(model)
fully_conv(mv.tensor(image[None]))  # warm-up
start = time.perf_counter()
dense = fully_conv(mv.tensor(image[None]))[0]
dense_ms = 1e3 * (time.perf_counter() - start)
print("convolutional scores:", dense.shape, f"{dense_ms:.1f} ms")
difference = np.abs(dense.numpy() - naive.numpy()).max()
print(f"largest difference {difference:.2e}; speed-up {naive_ms / dense_ms:.1f}x")
assert dense.shape == naive.shape
assert difference < 1e-4

# %% [markdown]
# The scores are equal: the convolution simply shares the work overlapping windows have in
# common. `benchmarks/bench_sliding_window.py` measures the speed-up over image sizes
# (it grows with the image: more windows share more work).

# %%
try:
    from minivision import viz

    FIGURES.mkdir(parents=True, exist_ok=True)
    viz.score_heatmap(
        image,
        dense.numpy()[1],
        title="class-1 score of every window (untrained)",
        path=FIGURES / "02_window_scores.png",
    )
    print("figure:", FIGURES / "02_window_scores.png")
except ImportError:
    print("matplotlib is not installed: no figure")
