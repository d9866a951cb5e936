# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 3. OverFeat: one network, many windows, many scales
# OverFeat (Sermanet et al., 2014) turns a classifier into a localizer: the fully connected
# layers are written as convolutions, so the network slides over a large image at the cost
# of one forward pass; every window outputs class scores and a box; the network runs at
# several scales; and the many boxes are merged into one answer. This tutorial checks each
# piece: fully connected layers as 1x1 convolutions, the map sizes of the paper's
# multi-scale table, offset max pooling, and greedy box merging. Then it trains the tiny
# OverFeat on synthetic shapes and draws its score map.

# %%
import os
from pathlib import Path

import numpy as np

import minivision as mv
from minivision import functional as F
from minivision import ops, optim
from minivision.data import DataLoader, Shapes
from minivision.metrics import localization_accuracy
from minivision.models.overfeat import (
    VARIANTS,
    OverFeat,
    interleave_offsets,
    map_sizes,
    match_score,
    merge_boxes,
    offset_max_pool,
)
from minivision.train import fit

FAST = os.environ.get("MINIVISION_FAST") == "1"
FIGURES = Path(os.environ.get("MINIVISION_FIGURES", "tutorial_figures"))
mv.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## Fully connected layers are convolutions
# The tiny OverFeat has four conv + 2x2 pool stages: a 32x32 window becomes a 128x2x2
# "pool5" feature map. Its first fully connected layer reads all 128 x 2 x 2 = 512 numbers;
# written as a convolution, that is a 2x2 kernel with 128 input channels. The layers after
# it read one vector each: 1x1 convolutions. At the training size (32x32) the output is one
# score per class, a 1x1 map.

# %%
model = OverFeat.tiny(num_classes=3).eval()
print(model.classifier)
with mv.no_grad():
    scores, boxes = model(mv.randn(1, 3, 32, 32))
print("32x32 input -> scores", scores.shape, "boxes", boxes.shape)
assert scores.shape == (1, 3, 1, 1) and boxes.shape == (1, 4 * 3, 1, 1)  # one box per class

# %% [markdown]
# Give it a bigger image and nothing breaks: the convolutions simply slide further. A 64x64
# image gives a 128x4x4 pool5 map, and the 2x2 "fully connected" kernel fits it at 3x3
# positions: a 3x3 map of scores, one per 32x32 window, windows 16 pixels apart (the
# product of the four pools). Let us check that each position really is the fully
# connected layer applied to that window's features, with the kernel reshaped to a
# (256, 512) matrix.

# %%
image = mv.randn(1, 3, 64, 64)
with mv.no_grad():
    pool5 = model.pool5(model.features(image))  # (1, 128, 4, 4)
    score_map = model.classifier(pool5)  # (1, 3, 3, 3)
fc6, fc8 = model.classifier[0], model.classifier[2]
fc6_matrix = fc6.weight.reshape(fc6.weight.shape[0], -1)  # (256, 128 * 2 * 2)
fc8_matrix = fc8.weight.reshape(fc8.weight.shape[0], -1)  # (3, 256)
print("pool5", pool5.shape, "-> score map", score_map.shape)
for r in range(3):
    for c in range(3):
        window = pool5[:, :, r : r + 2, c : c + 2].reshape(
            1, -1
        )  # the features of window (r, c), flattened
        hidden = F.relu(F.linear(window, fc6_matrix, fc6.bias))
        as_fully_connected = F.linear(hidden, fc8_matrix, fc8.bias)
        assert np.allclose(as_fully_connected.numpy()[0], score_map.numpy()[0, :, r, c], atol=1e-5)
print("every position of the map = the fully connected layers on that window")
assert model.stride() == 16

# %% [markdown]
# The map grows with the image: (H / 16 - 1) positions per side.

# %%
for size in (32, 48, 64, 96, 128):
    with mv.no_grad():
        scores, _ = model(mv.zeros(1, 3, size, size))
    print(f"{size:4d} x {size:<4d} -> score map {scores.shape[2]} x {scores.shape[3]}")
    assert scores.shape[2:] == (size // 16 - 1, size // 16 - 1)

# %% [markdown]
# ## Multiple scales: the paper's Table 5
# OverFeat classifies at six scales. The paper's accurate model (Table 3: 221x221 windows,
# a 3x3 pool after layer 6, a 5x5 "fully connected" window) gives these map sizes.
# `map_sizes` recomputes every column of Table 5 from the layer list alone; we hold it
# against the table. (Post-pool and classifier sizes are per offset: the next section
# explains the offsets; "interleaved" is the final map, 3 times larger per side.)

# %%
TABLE_5 = [  # input, layer 5 pre-pool, post-pool (per offset), classifier map (per offset), interleaved map
    ((245, 245), (17, 17), (5, 5), (1, 1), (3, 3)),
    ((281, 317), (20, 23), (6, 7), (2, 3), (6, 9)),
    ((317, 389), (23, 29), (7, 9), (3, 5), (9, 15)),
    ((389, 461), (29, 35), (9, 11), (5, 7), (15, 21)),
    ((425, 497), (32, 38), (10, 12), (6, 8), (18, 24)),
    ((461, 569), (35, 44), (11, 14), (7, 10), (21, 30)),
]
print("input      pre-pool  post-pool  classifier  interleaved")
for size, *expected in TABLE_5:
    sizes = map_sizes("accurate", *size)
    print(
        f"{size[0]}x{size[1]}   {sizes.pre_pool}  {sizes.post_pool}   {sizes.classifier}      {sizes.interleaved}"
    )
    assert tuple(sizes) == tuple(expected)

# %% [markdown]
# Each pixel of the plain map moves by the product of all strides and pools: 2 x 3 x 2 x 3
# = 36 input pixels for the accurate model (16 for our tiny one). That is coarse: an
# object could fall between two windows. The next trick cuts it by the last pool's size.


# %%
def total_stride(variant):
    stride = 1
    for _, _, conv_stride, _, pool in VARIANTS[variant]["layers"]:
        stride *= conv_stride * (pool or 1)
    return stride


print(
    "accurate:",
    total_stride("accurate"),
    "pixels; with 3x3 offset pooling:",
    total_stride("accurate") // 3,
)
assert total_stride("accurate") == 36 and total_stride("tiny") == 16

# %% [markdown]
# ## Offset max pooling, by hand
# Instead of one 3x3 max pool (stride 3) after the last conv layer, pool 9 times: starting
# at every offset (dy, dx) in {0, 1, 2}^2. Each offset gives a pooled map with the usual
# spacing of 3, so the classifier sees exactly what it was trained on; the 9 result maps
# are then interleaved: output pixel (3i + dy, 3j + dx) comes from offset (dy, dx), row i,
# column j.
#
# A hand example: an 8x8 ramp x[r, c] = 8r + c. Its maximum in any window is the
# bottom-right pixel, so pooling at offset (dy, dx) gives x[3i + dy + 2, 3j + dx + 2], and
# the interleaved map is simply x[2:8, 2:8].

# %%
ramp = mv.tensor(np.arange(64, dtype=np.float32).reshape(1, 1, 8, 8))
offsets = offset_max_pool(ramp, 3)  # (9, 1, 2, 2): the offsets go into the batch
print(
    "offset (0, 0):\n", offsets.numpy()[0, 0], "\noffset (1, 2):\n", offsets.numpy()[1 * 3 + 2, 0]
)
assert offsets.numpy()[0, 0].tolist() == [[18, 21], [42, 45]]  # rows 2, 5 and columns 2, 5
assert offsets.numpy()[5, 0].tolist() == [[28, 31], [52, 55]]  # rows 3, 6 and columns 4, 7
interleaved = interleave_offsets(offsets, 3)
print("interleaved:\n", interleaved.numpy()[0, 0])
assert np.array_equal(interleaved.numpy()[0, 0], ramp.numpy()[0, 0, 2:, 2:])

# %% [markdown]
# For the pooling alone, interleaving the offsets gives a 3x3 max pool with stride 1 (on
# any input, not just ramps). The point is what comes next: each offset's map goes through
# the classifier separately, at the spacing it was trained on, and only its output is
# interleaved. The classifier thus runs at 3 x 3 more positions, with a stride of 36 / 3 =
# 12 pixels instead of 36.

# %%
x = mv.tensor(rng.standard_normal((2, 4, 11, 11)).astype(np.float32))
interleaved = interleave_offsets(offset_max_pool(x, 3), 3)
stride_one = F.max_pool2d(x, 3, stride=1)[:, :, : interleaved.shape[2], : interleaved.shape[3]]
assert np.array_equal(interleaved.numpy(), stride_one.numpy())

# %% [markdown]
# On the tiny model (2x2 pool5, so offsets {0, 1}^2) `model.dense` does this. Its offset
# (0, 0) is the plain forward pass: every other entry of the dense map in each direction
# equals the plain map, and the entries between are the new, half-stride windows.

# %%
with mv.no_grad():
    plain, _ = model(image)
    dense, _ = model.dense(image)
print(
    "plain map",
    plain.shape[2:],
    "stride",
    model.stride(),
    "| dense map",
    dense.shape[2:],
    "stride",
    model.stride() // 2,
)
assert dense.shape[2:] == map_sizes("tiny", 64, 64).interleaved
rows, cols = dense.shape[2] // 2, dense.shape[3] // 2
assert np.allclose(dense.numpy()[:, :, ::2, ::2], plain.numpy()[:, :, :rows, :cols], atol=1e-5)

# %% [markdown]
# ## Greedy box merging (§4.3)
# Every window also regresses a box, so an object seen by many windows gets many
# slightly different boxes. OverFeat does not keep just the best one (as NMS would): it
# merges. Repeatedly take the two closest boxes (by a match score built from the distance
# between their centres and how much they overlap) and replace them by their average, with
# the sum of their scores; stop when no pair is close enough.
#
# A hand example: three windows on one object (A, B, C), two on another (D, E), one stray
# box (F).

# %%
boxes = np.array(
    [
        [10, 10, 30, 30],  # A
        [12, 11, 32, 31],  # B
        [9, 13, 29, 33],  # C
        [40, 38, 60, 62],  # D
        [43, 40, 61, 60],  # E
        [0, 44, 14, 58],
    ],  # F
    dtype=np.float64,
)
scores = np.array([0.9, 0.8, 0.6, 0.7, 0.5, 0.3])
names = "ABCDEF"
print("match scores (0 = same box; merge while <= 0.6):")
print("     " + "     ".join(names))
for i in range(6):
    print(names[i], " ".join(f"{match_score(boxes[i], boxes[j]):5.2f}" for j in range(6)))

# %% [markdown]
# The closest pair is D, E (0.16): they become their average, score 0.7 + 0.5 = 1.2. Next
# A, B (0.26) -> AB, score 1.7; then AB and C are still close (0.37) -> ((A + B) / 2 + C) / 2,
# score 2.3. The three boxes left are more than 3 apart, so merging stops there.

# %%
merged, merged_scores = merge_boxes(boxes, scores, threshold=0.6)
print("merged boxes:\n", merged, "\nscores:", merged_scores)
a, b, c, d, e, f = boxes
assert len(merged) == 3
assert np.allclose(merged[0], ((a + b) / 2 + c) / 2) and np.isclose(
    merged_scores[0], 0.9 + 0.8 + 0.6
)
assert np.allclose(merged[1], (d + e) / 2) and np.isclose(merged_scores[1], 0.7 + 0.5)
assert np.allclose(merged[2], f) and np.isclose(merged_scores[2], 0.3)

# %% [markdown]
# Compare NMS: it keeps A with score 0.9 and throws B and C away. Merging keeps the
# evidence: the answer for the first object is backed by three windows (2.3), which is what
# lets a strong cluster of windows outvote a single confident stray one.

# %%
kept = ops.nms(boxes.astype(np.float32), scores.astype(np.float32), 0.5)
print("NMS keeps", [names[i] for i in kept], "with scores", scores[kept])
assert names[kept[0]] == "A" and np.isclose(scores[kept[0]], 0.9)

# %% [markdown]
# ## Training the tiny OverFeat
# Localization on 64x64 shapes, one object per image. `OverFeat.loss` trains both heads at
# once (the paper trains the classifier first, then the regressor on its frozen features):
# the class score is the spatial maximum of each class's map (the paper's test-time rule),
# trained with cross-entropy, and every window regresses the object's box (offsets and
# size in units of the 32-pixel window). `predict` runs `multiscale` (dense evaluation at each scale) and merges
# the boxes of the top class. (In fast mode the run is too short to learn the classes; the
# full run, a few minutes on 2 cores, is.)

# %%
train_images, epochs = (512, 3) if FAST else (2048, 10)
train = DataLoader(Shapes(train_images, 64, 1, 1, seed=0), batch_size=32, shuffle=True, seed=0)
val = DataLoader(Shapes(128 if FAST else 256, 64, 1, 1, seed=1), batch_size=64)
model = OverFeat.tiny(num_classes=3, image_size=64)
opt = optim.Adam(model.parameters(), lr=2e-3)
history = fit(
    model,
    train,
    opt,
    lambda m, batch: m.loss(*batch),
    epochs,
    scheduler=optim.CosineAnnealingLR(opt, epochs),
    progress=False,
)
print("loss per epoch:", [round(h["loss"], 3) for h in history])
assert history[-1]["loss"] < 0.8 * history[0]["loss"]

# %% [markdown]
# Evaluate with the lecture's rule: right class and IoU > 0.5. Guessing the class would be
# right a third of the time.

# %%
model.eval()
truths, predictions = [], []
for images, targets in val:
    truths += targets
    predictions += model.predict(images)
class_accuracy = np.mean([p["labels"][0] == t["labels"][0] for p, t in zip(predictions, truths)])
accuracy = localization_accuracy(predictions, truths)
print(
    f"{len(truths)} validation images: class accuracy {class_accuracy:.3f}, localization accuracy {accuracy:.3f}"
)
if not FAST:
    assert class_accuracy > 0.7 and accuracy > 0.5

# %% [markdown]
# At test time the paper also rescales the image (six scales) and merges the boxes of all
# of them. `model.multiscale` resizes the images and runs the dense pass at each scale:
# bigger scales give bigger maps, and every map's boxes are in the original image's pixels.
# Here at scales 1 and 1.25 (64x64 and 80x80 inputs), on the first validation images.

# %%
images, targets = next(iter(val))
images, targets = images[:32], targets[:32]
for scale, (probabilities, corners) in zip(
    (1.0, 1.25), model.multiscale(images, scales=(1.0, 1.25))
):
    size = round(64 * scale)
    print(
        f"scale {scale}: {size}x{size} input -> class map {probabilities.shape[2:]}, boxes {corners.shape}"
    )
    assert probabilities.shape[2:] == map_sizes("tiny", size, size).interleaved
two_scales = model.predict(images, scales=(1.0, 1.25))
print(
    f"localization accuracy on these {len(targets)} images: one scale "
    f"{localization_accuracy(predictions[:32], targets):.3f}, "
    f"two scales {localization_accuracy(two_scales, targets):.3f}"
)

# %% [markdown]
# ## The score map over a bigger image
# A 128x128 mosaic of four validation images: the network trained on 64x64 images runs
# on it in one dense pass and gives a 12x12 map per class. Map entry (i, j) is the
# 32x32 window whose top-left corner is at (8i, 8j), so its centre is at (8i + 16, 8j + 16).

# %%
tiles = [val.dataset[k] for k in range(4)]
tile_labels = [int(t[1]["labels"][0]) for t in tiles]
mosaic = np.block([[tiles[0][0], tiles[1][0]], [tiles[2][0], tiles[3][0]]])  # (3, 128, 128)
with mv.no_grad():
    dense_scores, _ = model.dense(mv.tensor(mosaic[None]))
probabilities = F.softmax(dense_scores, dim=1).numpy()[0]  # (3, 12, 12)
print(
    "dense map over the mosaic:",
    probabilities.shape,
    "| tiles:",
    [val.dataset.class_names[label - 1] for label in tile_labels],
)
assert probabilities.shape == (3,) + map_sizes("tiny", 128, 128).interleaved

# %% [markdown]
# Read the map where the objects are: for each tile, average every class's probability
# over the windows centred inside the tile's object box, and take the largest. (Away
# from the objects the map means little: this model has no "background" class, so a
# window that sees no shape still spreads its probability over the three shapes.)

# %%
centres = 8 * np.arange(probabilities.shape[1]) + 16  # window centres, in mosaic pixels
recognised = []
for k, (_, target) in enumerate(tiles):
    x1, y1, x2, y2 = target["boxes"][0] + np.array(
        [64 * (k % 2), 64 * (k // 2)] * 2
    )  # box in the mosaic
    rows, cols = (centres >= y1) & (centres <= y2), (centres >= x1) & (centres <= x2)
    mean = probabilities[:, rows][:, :, cols].mean(axis=(1, 2))
    recognised.append(int(mean.argmax()) + 1)
    print(
        f"tile {k} ({val.dataset.class_names[tile_labels[k] - 1]}): {rows.sum() * cols.sum()} windows centred "
        f"on it, mean probabilities {np.round(mean, 2)} -> {val.dataset.class_names[recognised[-1] - 1]}"
    )
if not FAST:
    assert sum(r == label for r, label in zip(recognised, tile_labels)) >= 3

# %% [markdown]
# The picture shows each class's map over the image, every cell drawn over the centre of
# its window (the map covers centres 16 to 104, so a 12-pixel frame is left uncovered).

# %%
try:
    from matplotlib.figure import Figure

    from minivision import viz

    FIGURES.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(12, 3.4), dpi=72)
    extent = (
        centres[0] - 4 - 0.5,
        centres[-1] + 4 - 0.5,
        centres[-1] + 4 - 0.5,
        centres[0] - 4 - 0.5,
    )
    ax = fig.add_subplot(1, 4, 1)
    ax.imshow(viz.to_hwc_image(mosaic), interpolation="nearest")
    ax.set_title("128x128 mosaic")
    ax.set_axis_off()
    for c, name in enumerate(val.dataset.class_names):
        ax = fig.add_subplot(1, 4, c + 2)
        ax.imshow(viz.to_hwc_image(mosaic), interpolation="nearest")
        shown = ax.imshow(
            probabilities[c],
            cmap="inferno",
            alpha=0.65,
            vmin=0,
            vmax=1,
            extent=extent,
            interpolation="nearest",
        )
        ax.set_xlim(-0.5, 127.5)
        ax.set_ylim(127.5, -0.5)
        ax.set_title(f"P({name})")
        ax.set_axis_off()
    fig.colorbar(shown, ax=fig.axes, fraction=0.015)
    viz.save_figure(fig, FIGURES / "03_overfeat_score_map.png")
    print("figure:", FIGURES / "03_overfeat_score_map.png")
except ImportError:
    print("matplotlib is not installed: no figure")
