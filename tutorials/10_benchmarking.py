# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 10. Benchmarking against PyTorch, and where the time goes
# `benchmarks/` times minivision against PyTorch in one process on the same inputs and
# prints ratios: minivision time / PyTorch time, below 1 when minivision is faster. This
# tutorial times a few cases the same way, small enough to run anywhere, and looks inside
# a convolution to see where its time goes. Times depend on the machine: the *ratios* are
# what to compare, and only when measured together.

# %%
import importlib.util
import time

import numpy as np

import minivision as mv
from minivision import functional as F
from minivision import ops

rng = np.random.default_rng(0)
HAS_TORCH = importlib.util.find_spec("torch") is not None


def median_ms(fn, repeats=5):
    """Median wall time of ``fn()`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


# %% [markdown]
# ## A convolution is im2col plus one matrix multiply
# im2col copies every 3x3 window into a column, so the convolution becomes
# (out_channels, C*3*3) @ (C*3*3, N*H*W). Timing the matrix multiply alone shows how much
# of the convolution is arithmetic and how much is copying windows around.

# %%
x = rng.standard_normal((8, 32, 32, 32)).astype(np.float32)
w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
F.conv.set_winograd_enabled(False)
im2col_ms = median_ms(lambda: F.conv2d(mv.tensor(x), mv.tensor(w), padding=1))
by_im2col = F.conv2d(mv.tensor(x), mv.tensor(w), padding=1).numpy()
F.conv.set_winograd_enabled(True)
columns = rng.standard_normal((32 * 9, 8 * 32 * 32)).astype(np.float32)
matmul_ms = median_ms(lambda: w.reshape(32, -1) @ columns)
flops = 2 * 32 * 32 * 9 * 8 * 32 * 32
print(
    f"conv2d forward by im2col {im2col_ms:.2f} ms; its matrix multiply alone {matmul_ms:.2f} ms "
    f"({flops / matmul_ms / 1e6:.0f} GFLOP/s)"
)

# %% [markdown]
# ## Fewer multiplies: Winograd's F(2x2, 3x3)
# A 2x2 block of outputs of a 3x3 convolution needs 4 * 9 = 36 multiplies per channel pair.
# Winograd's minimal filtering gets the same four numbers from a 4x4 input tile with 16,
# by adding and subtracting inputs (and kernel taps) first: Y = A^T [(G w G^T) * (B^T d B)] A.
# Over a batch the 16 elementwise products become 16 matrix multiplies, 2.25x less
# arithmetic than im2col's. minivision uses it for 3x3 stride-1 convolutions of NumPy
# arrays; the answer is the same to float32 rounding.

# %%
conv_ms = median_ms(lambda: F.conv2d(mv.tensor(x), mv.tensor(w), padding=1))
by_winograd = F.conv2d(mv.tensor(x), mv.tensor(w), padding=1).numpy()
assert np.allclose(by_winograd, by_im2col, rtol=1e-4, atol=1e-4)
print(f"conv2d forward by Winograd {conv_ms:.2f} ms (im2col {im2col_ms:.2f} ms)")

# %% [markdown]
# ## The same layer in PyTorch
# Same inputs, same process, one after the other.

# %%
if HAS_TORCH:
    import torch

    reference = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding=1)
    torch_ms = median_ms(
        lambda: torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding=1)
    )
    ours = F.conv2d(mv.tensor(x), mv.tensor(w), padding=1).numpy()
    assert np.allclose(ours, reference.numpy(), rtol=1e-4, atol=1e-4)
    print(f"PyTorch {torch_ms:.2f} ms, ratio minivision / PyTorch = {conv_ms / torch_ms:.2f}")
else:
    print("PyTorch is not installed: only minivision's times")

# %% [markdown]
# ## NMS: an algorithm, not just arithmetic
# A plain NMS compares every kept box with every remaining one. minivision's CPU kernel
# sorts boxes by x1 once and compares each kept box only with boxes close enough along x
# to overlap it, so its cost follows the number of neighbours.

# %%
centres = rng.uniform(0, 1000, (2000, 2)).astype(np.float32)
sizes = rng.uniform(10, 60, (2000, 2)).astype(np.float32)
boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
scores = rng.random(2000).astype(np.float32)


def plain_nms(boxes, scores, threshold):
    order = np.argsort(-scores, kind="stable")
    kept = []
    alive = np.ones(len(boxes), bool)
    for i in order:
        if alive[i]:
            kept.append(i)
            alive &= ops.box_iou(boxes[i][None], boxes)[0] <= threshold
    return np.array(kept)


plain_ms = median_ms(lambda: plain_nms(boxes, scores, 0.5), repeats=3)
fast_ms = median_ms(lambda: ops.nms(boxes, scores, 0.5))
assert ops.nms(boxes, scores, 0.5).tolist() == plain_nms(boxes, scores, 0.5).tolist()
print(
    f"NMS over 2,000 boxes: plain loop {plain_ms:.1f} ms, minivision {fast_ms:.2f} ms "
    f"({plain_ms / fast_ms:.0f}x faster, same kept boxes)"
)

# %% [markdown]
# To run the full tables: `python benchmarks/bench_layers.py`, `python benchmarks/bench_boxes.py`.
# NumPy's matrix multiply runs on OpenBLAS; if the environment pins an old OpenBLAS core
# type (`OPENBLAS_CORETYPE`), unset it for the benchmark command to let it pick the
# fastest kernel for the processor.
