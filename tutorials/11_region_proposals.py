# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 11. Region proposals: R-CNN, Fast R-CNN, Faster R-CNN
# A sliding window classifies every window; a region-proposal detector classifies only the
# few hundred to few thousand boxes a proposal method says may hold an object. R-CNN crops
# and runs the CNN on every proposal; Fast R-CNN runs the CNN once and RoI-pools every
# proposal from the shared feature map; Faster R-CNN makes the proposals itself, with a
# Region Proposal Network (RPN) over anchors on that same map. This tutorial times the first
# two, RoI-pools a 4 x 4 map by hand, counts anchors, and looks at a tiny Faster R-CNN's
# proposals and detections.

# %%
import os
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

import minivision as mv
from minivision import ops
from minivision.data import DataLoader, Shapes
from minivision.models.rcnn import RCNN, FastRCNN, grid_proposals
from minivision.models.rpn import propose
from minivision.workflow import train_model

FAST = os.environ.get("MINIVISION_FAST") == "1"
FIGURES = Path(os.environ.get("MINIVISION_FIGURES", "tutorial_figures"))
mv.manual_seed(0)

# %% [markdown]
# ## Crop every proposal, or pool from shared features
# `RCNN` warps each proposal to 16 x 16 and runs the body (conv-BN-ReLU-pool, twice: stride
# 4) on it; `FastRCNN` runs the same body once on the image and RoI-pools each proposal from
# its map. Both end in the same head under the same layer names, so one's `state_dict`
# loads into the other. Proposals: a random subset of `grid_proposals` (2,094 boxes per
# image, about as many as selective search gives).

# %%
images = mv.tensor(np.stack([Shapes(1, 64, 1, 3, seed=1)[0][0]]))
slow = RCNN.tiny(3, 64).eval()
fast = FastRCNN.tiny(3, 64).eval()
fast.load_state_dict(slow.state_dict())
grid = grid_proposals(64, 64)
print(f"{len(grid)} grid proposals")


def seconds(model, proposals, repeats=2):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        with mv.no_grad():
            model(images, [proposals])
        best = min(best, time.perf_counter() - start)
    return best


counts = (16, 64, 256) if FAST else (16, 64, 256, 1024, len(grid))
rng = np.random.default_rng(0)
times = []
print("proposals    R-CNN   Fast R-CNN   ratio")
for count in counts:
    proposals = grid[np.sort(rng.choice(len(grid), count, replace=False))]
    times.append((seconds(slow, proposals), seconds(fast, proposals)))
    print(
        f"{count:9d} {times[-1][0]:7.3f} s {times[-1][1]:8.3f} s {times[-1][0] / times[-1][1]:7.1f}"
    )
# R-CNN's cost grows with the proposals (each is a 16 x 16 image for the body); Fast R-CNN's
# body runs once, and only the RoI pooling and the head grow
assert times[-1][0] > 2 * times[-1][1]

# %% [markdown]
# ## Where the two give the same answer
# They agree exactly only where cropping cannot change what the body sees:
# - each box is 32 x 32 pixels (the warp size, so the warp copies pixels unchanged) with
#   corners on multiples of the stride (so its map cells are whole cells of the image's map);
# - the convolutions are 1 x 1: a 3 x 3 convolution at a crop's edge sees zero padding
#   where, in the whole image, it sees the neighbouring pixels;
# - BN is in eval mode (fixed statistics, not those of the batch of crops);
# - float64: in float32, a matrix product over a crop and over the whole image round
#   differently.
#
# First the tiny models as they are (3 x 3 convolutions), then 1 x 1 twins.

# %%
aligned = np.array([[0, 0, 32, 32], [8, 4, 40, 36], [32, 32, 64, 64], [12, 20, 44, 52]], np.float32)


def logits(model, images):
    with mv.no_grad():
        return model(images, [aligned])[0].numpy()


gap = np.abs(logits(slow, images) - logits(fast, images)).max()
print(f"3x3 convolutions: the class logits differ by up to {gap:.1e}")
assert gap > 1e-6

slow_1x1 = RCNN(3, kernel_size=1, warp=32).train()
with mv.no_grad():  # BN statistics of real images, so that not every feature is 0 after ReLU
    for seed in range(10):
        slow_1x1.body(
            mv.tensor(np.stack([image for image, _ in Shapes(4, 64, 1, 3, seed=100 + seed)]))
        )
fast_1x1 = FastRCNN(**{k: v for k, v in slow_1x1.config.items() if k not in ("warp", "context")})
fast_1x1.load_state_dict(slow_1x1.state_dict())
for model in (slow_1x1, fast_1x1):
    for value in model.state_dict().values():
        value.data = value.data.astype(np.float64)
    model.eval()
images64 = mv.tensor(images.numpy().astype(np.float64))
slow_logits, fast_logits = logits(slow_1x1, images64), logits(fast_1x1, images64)
print(
    f"1x1 convolutions, float64: the class logits differ by up to {np.abs(slow_logits - fast_logits).max():.1e}"
)
np.testing.assert_allclose(slow_logits, fast_logits, rtol=1e-12, atol=1e-15)
assert len(np.unique(slow_logits[:, 0])) == len(
    aligned
)  # four different answers, each the same in both

# %% [markdown]
# ## RoI pooling by hand
# A 16 x 16 image, a stride-4 body: a 4 x 4 feature map. The proposal (4, 2, 13, 11) in image
# pixels is scaled by 1/4 to (1, 0.5, 3.25, 2.75) and rounded to whole cells (halves away
# from zero): columns 1..3 and rows 1..3, both ends included, so 3 x 3 cells. For a 2 x 2
# output each bin is 3 / 2 = 1.5 cells: bin i spans cells [floor(1.5 i), ceil(1.5 (i + 1)))
# from the first, i.e. cells 1-2 and 2-3. The bins overlap (3 cells do not split into 2
# whole halves) and cell (2, 2) lies in all four. This is torchvision's rule.

# %%
feature_map = np.array([[0, 1, 2, 3], [4, 5, 6, 9], [1, 3, 8, 2], [0, 7, 4, 1]], dtype=np.float32)
box, scale, out = np.array([4.0, 2.0, 13.0, 11.0]), 0.25, 2


def round_half_away(value):
    return int(np.sign(value) * np.floor(np.abs(value) + 0.5))


def axis_bins(start, stop, out, extent):
    """[first, last) cells of each of ``out`` bins between the rounded corners start..stop."""
    size = max(stop - start + 1, 1)
    return [
        (
            min(max(start + int(np.floor(i * size / out)), 0), extent),
            min(max(start + int(np.ceil((i + 1) * size / out)), 0), extent),
        )
        for i in range(out)
    ]


x1, y1, x2, y2 = (round_half_away(v * scale) for v in box)
rows, cols = axis_bins(y1, y2, out, 4), axis_bins(x1, x2, out, 4)
print("row bins:", rows, " column bins:", cols)
assert rows == cols == [(1, 3), (2, 4)]
by_hand = np.array([[feature_map[r0:r1, c0:c1].max() for c0, c1 in cols] for r0, r1 in rows])
print("pooled by hand:\n", by_hand)
pooled = ops.roi_pool(feature_map[None, None], [box[None]], out, spatial_scale=scale).numpy()[0, 0]
assert np.array_equal(pooled, by_hand)
# `roi_pool` in minivision/reference/roi_pool.py is the library's plain NumPy version of these steps
with mv.use_reference(True):
    assert np.array_equal(
        ops.roi_pool(feature_map[None, None], [box[None]], out, spatial_scale=scale).numpy()[0, 0],
        by_hand,
    )

# %% [markdown]
# The gradient goes back only to the switches (the cell where each bin's maximum was), as
# in max pooling. Cell (2, 2) holds 8, the maximum of three bins, so it gets the sum of
# their upstream gradients: with upstream gradient [[1, 2], [3, 4]], 1 + 3 + 4 = 8; cell
# (1, 3) holds 9 and gets bin (0, 1)'s 2; every other cell gets 0.

# %%
upstream = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
x = mv.tensor(feature_map[None, None], requires_grad=True)
(
    ops.roi_pool(x, [box[None]], out, spatial_scale=scale) * mv.tensor(upstream[None, None])
).sum().backward()
print("gradient of the map:\n", x.grad.numpy()[0, 0])
switches_by_hand = np.zeros_like(feature_map)
for i, (r0, r1) in enumerate(rows):
    for j, (c0, c1) in enumerate(cols):
        cell = np.unravel_index(np.argmax(feature_map[r0:r1, c0:c1]), (r1 - r0, c1 - c0))
        switches_by_hand[r0 + cell[0], c0 + cell[1]] += upstream[i, j]
assert np.array_equal(x.grad.numpy()[0, 0], switches_by_hand)
assert switches_by_hand[2, 2] == 8 and switches_by_hand[1, 3] == 2

# %% [markdown]
# ## Anchors
# The RPN predicts, at every position of the feature map, an objectness score and a box
# offset for each of k anchors: the paper's k = 9 are 3 sizes (128, 256, 512 pixels: the side
# of a square of the same area) x 3 aspect ratios (height / width 0.5, 1, 2).

# %%
generator = ops.AnchorGenerator()
cell = generator.cell_anchors[0]  # (9, 4) centred on 0
widths, heights = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
for w, h in zip(widths, heights):
    print(f"{w:6.1f} x {h:6.1f}  (area {np.sqrt(w * h):.0f}^2, height / width {h / w:.1f})")
np.testing.assert_allclose(np.sqrt(widths * heights), np.tile([128, 256, 512], 3))
np.testing.assert_allclose(heights / widths, np.repeat([0.5, 1.0, 2.0], 3))

# %% [markdown]
# VGG16's conv5_3 has stride 16: four 2 x 2 pools, each rounding down (torchvision's VGG;
# Caffe's round up, giving 38 x 63), take a 600 x 1000 image to a 37 x 62 map
# (600 -> 300 -> 150 -> 75 -> 37). One set of 9 anchors per position:

# %%
map_h, map_w = 600, 1000
for _ in range(4):
    map_h, map_w = map_h // 2, map_w // 2
anchors = generator((600, 1000), [(map_h, map_w)])
inside = ((anchors[:, :2] >= 0) & (anchors[:, 2:] <= [1000, 600])).all(axis=1)
print(f"{map_h} x {map_w} map: {len(anchors)} anchors, {inside.sum()} of them inside the image")
assert (map_h, map_w) == (37, 62) and len(anchors) == 37 * 62 * 9 == 20646
# the paper ignores anchors crossing the image border in training (about 6,000 of its
# roughly 20,000 remain); torchvision, and minivision's rpn_loss, keep them

# %%
try:
    from minivision import viz

    FIGURES.mkdir(parents=True, exist_ok=True)
    centre = np.array([500.0, 300.0] * 2)
    canvas = np.full((3, 600, 1000), 0.9, dtype=np.float32)
    viz.draw_boxes(
        canvas,
        cell + centre,
        np.repeat([1, 2, 3], 3),
        class_names=("", "h/w 0.5", "h/w 1", "h/w 2"),
        title="the 9 anchors at one position of a 600 x 1000 image",
        path=FIGURES / "11_anchors.png",
    )
    print("figure:", FIGURES / "11_anchors.png")
except ImportError:
    print("matplotlib is not installed: no figure")

# %% [markdown]
# ## A tiny Faster R-CNN on shapes
# `FasterRCNN.tiny`: a stride-4 backbone on 64 x 64 images, nine anchors of 12, 20 and 28
# pixels, and a Fast R-CNN head with 4 x 4 RoI pooling, trained jointly (the RPN's loss plus
# the head's, proposals taken as fixed inputs of the head).

# %%
train_images, epochs = (32, 1) if FAST else (6144, 1)
with TemporaryDirectory() as out_dir:
    model, history, val = train_model(
        "faster_rcnn", "shapes", out_dir, epochs=epochs, train_images=train_images, progress=False
    )
print("per epoch:", [{k: round(v, 3) for k, v in h.items() if k != "lr"} for h in history])
model.eval()

# %% [markdown]
# ## The RPN's proposals, before and after NMS
# Proposals are the anchors moved by the predicted offsets and clipped to the image. The
# test-time setting keeps the 100 best by objectness, then NMS at IoU 0.7 and at most 50.
# Neighbouring anchors that see the same object all score high, so before NMS many boxes
# sit on each object.

# %%
val_images, val_targets = next(iter(DataLoader(val.dataset, batch_size=4)))
with mv.no_grad():
    features = model.backbone(val_images)
    objectness, deltas = model.rpn.head(features)
anchors = model.rpn.anchor_generator((64, 64), [features]).data
(pre_n, post_n), image = model.rpn.top_n[False], 0
before, _ = propose(
    anchors, objectness.data[image], deltas.data[image], (64, 64), pre_n, pre_n, nms_thresh=1.0
)
after, after_scores = propose(
    anchors,
    objectness.data[image],
    deltas.data[image],
    (64, 64),
    pre_n,
    post_n,
    nms_thresh=model.rpn.nms_thresh,
)
print(f"{len(anchors)} anchors -> {len(before)} proposals before NMS -> {len(after)} after")
overlaps = ops.box_iou(after, after)
np.fill_diagonal(overlaps, 0)
assert len(after) < len(before) and overlaps.max() <= 0.7
truth = val_targets[image]["boxes"]
recall = (ops.box_iou(truth, after).max(axis=1) >= 0.5).mean()
print(f"objects with a proposal at IoU >= 0.5 after NMS: {recall:.0%}")
if not FAST:
    assert recall == 1.0

# %% [markdown]
# ## Detections
# The head scores every proposal for each class and refines its box per class; boxes above
# a score threshold go through NMS per class.

# %%
detections = model.predict(val_images)
print(f"mAP@0.5 on {len(val.dataset)} validation images: {history[-1]['map50']:.3f}")
if not FAST:
    assert history[-1]["map50"] > 0.5

# %%
try:
    from minivision import viz

    FIGURES.mkdir(parents=True, exist_ok=True)
    picture = val_images.numpy()[image]
    viz.draw_boxes(
        picture,
        before,
        title=f"RPN: {len(before)} proposals before NMS",
        path=FIGURES / "11_proposals_before_nms.png",
    )
    viz.draw_boxes(
        picture,
        after[:10],
        scores=after_scores[:10],
        title="RPN: the 10 best after NMS",
        path=FIGURES / "11_proposals_after_nms.png",
    )
    names = ("bg",) + val.dataset.class_names
    for k, found in enumerate(detections):
        confident = found["scores"] > 0.5
        viz.draw_boxes(
            val_images.numpy()[k],
            found["boxes"][confident],
            found["labels"][confident],
            found["scores"][confident],
            names,
            title="tiny Faster R-CNN",
            path=FIGURES / f"11_detections_{k}.png",
        )
    print("figures:", *sorted(p.name for p in FIGURES.glob("11_*.png")))
except ImportError:
    print("matplotlib is not installed: no figures")
