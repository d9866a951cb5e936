# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 12. SSD: classify locations directly, at several scales at once
# The Single Shot MultiBox Detector fixes a set of *default boxes* (a few sizes and shapes) at
# every position of several feature maps, fine and coarse. A 3 x 3 convolution on each map
# gives, for every default box, a score for each class (background included) and four offsets
# that move the box onto the object. So SSD classifies locations directly, with class and box
# shape, at several scales at once, in one forward pass.
#
# The detectors before it differ in where the boxes come from:
# - YOLO predicts its boxes from one coarse grid (7 x 7 in the paper) at the end of the
#   network: each cell regresses B boxes outright, with no default shapes to start from, and
#   a small object is a fraction of one cell.
# - Faster R-CNN's RPN also scores boxes (anchors) on a feature map, but only as "object or
#   not"; the best few hundred become proposals, and a second stage RoI-pools each one and
#   classifies it.
# SSD is like an RPN that names the class itself, on maps of several strides, and stops there.
#
# This tutorial draws the default boxes, counts the paper's 8,732, matches them to the objects
# of one image, mines the hard negatives, takes the loss apart, trains a tiny SSD on shapes of
# 8 to 48 pixels and looks at its detections.

# %%
import os
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

import minivision as mv
from minivision import ops
from minivision.data import DataLoader, Shapes
from minivision.models import RECIPES
from minivision.models.multibox import BOX_CODER, encode_targets, match, multibox_loss_terms
from minivision.models.ssd import SSD, map_size
from minivision.workflow import train_model

FAST = os.environ.get("MINIVISION_FAST") == "1"
FIGURES = Path(os.environ.get("MINIVISION_FIGURES", "tutorial_figures"))
CLASS_NAMES = ("background", "circle", "rectangle", "triangle")
mv.manual_seed(0)

# %% [markdown]
# ## Default boxes, map by map
# The tiny SSD takes 96 x 96 images and has four source maps, at strides 4, 8, 16 and 32
# (24 x 24, 12 x 12, 6 x 6 and 3 x 3 cells). At every position of a map sit 4 default boxes,
# centred on the cell: a square of the map's size s, a square of side sqrt(s * s') (s' the
# next map's s, 80 after the last), and a box of width / height 2 and its transpose,
# s * sqrt(2) by s / sqrt(2). s grows with the stride: 8, 16, 32 and 56 pixels, so each map
# answers for objects of one range of sizes.

# %%
model = SSD.tiny(num_classes=3, image_size=96)
priors, defaults = model.priors, model.default_boxes  # defaults: (P, 4) xyxy pixels
per_position = priors.num_boxes_per_location()
starts = np.cumsum([0] + [h * w * b for (h, w), b in zip(priors.feature_maps, per_position)])


def indices_at(level, row, col):
    """The indices of one position's default boxes in ``defaults``: (B,). Boxes run map by map,
    then row-major over the positions, then box by box within a position."""
    first = starts[level] + (row * priors.feature_maps[level][1] + col) * per_position[level]
    return np.arange(first, first + per_position[level])


print("map       stride  boxes per position  sizes (w x h)")
for level, ((h, w), (step, _), sizes) in enumerate(
    zip(priors.feature_maps, priors.steps, priors.cell_sizes)
):
    print(
        f"{h:2d} x {w:2d}  {step:6.0f}  {len(sizes):18d}  "
        + ", ".join(f"{bw:.0f}x{bh:.0f}" for bw, bh in sizes)
    )
print(f"{len(defaults)} default boxes")
assert len(defaults) == (24**2 + 12**2 + 6**2 + 3**2) * 4 == 3060
assert [h for h, _ in priors.feature_maps] == [24, 12, 6, 3] and per_position == [4] * 4

# one position per map, each near an object of the map's sizes in the image drawn below
positions = [(0, 7, 20), (1, 9, 9), (2, 3, 2), (3, 1, 1)]  # (map, row, column)
shown = []
for level, row, col in positions:
    boxes = defaults[indices_at(level, row, col)].astype(np.float64)
    step = priors.steps[level][0]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    np.testing.assert_allclose(
        centres, np.tile([(col + 0.5) * step, (row + 0.5) * step], (len(boxes), 1)), atol=1e-4
    )
    np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], priors.cell_sizes[level], atol=1e-4)
    shown.append(boxes)
cells = priors.cell_sizes  # per map, (B, 2) widths and heights
np.testing.assert_allclose([c[0] for c in cells], [[s, s] for s in (8, 16, 32, 56)])
np.testing.assert_allclose(
    [c[1] for c in cells], [[s, s] for s in np.sqrt([8 * 16, 16 * 32, 32 * 56, 56 * 80])]
)
np.testing.assert_allclose(
    [c[2] for c in cells], [[s * np.sqrt(2), s / np.sqrt(2)] for s in (8, 16, 32, 56)]
)
np.testing.assert_allclose(
    [c[3] for c in cells], [[s / np.sqrt(2), s * np.sqrt(2)] for s in (8, 16, 32, 56)]
)

# %% [markdown]
# SSD300, the paper's model, has six source maps: conv4_3 (38 x 38), fc7 (19 x 19) and four
# extra layers (10 x 10, 5 x 5, 3 x 3, 1 x 1), with 4 or 6 boxes per position (the maps with
# 6 add aspect ratio 3 and 1/3). The map sizes below come from the network's own layers
# (`map_size` applies each convolution's and pool's output-size rule in turn).

# %%
ssd300 = SSD("ssd300", num_classes=20)
layers, sides = [], []
for stage in ssd300.stages:
    layers += list(stage)
    sides.append(map_size(layers, 300))
counts = [side * side * b for side, b in zip(sides, ssd300.priors.num_boxes_per_location())]
print("map        boxes per position  boxes")
for side, b, count in zip(sides, ssd300.priors.num_boxes_per_location(), counts):
    print(f"{side:2d} x {side:2d}  {b:18d}  {count:5d}")
print(f"total: {sum(counts)}")
assert sides == [38, 19, 10, 5, 3, 1]
assert tuple((s, s) for s in sides) == ssd300.priors.feature_maps
assert sum(counts) == 38**2 * 4 + 19**2 * 6 + 10**2 * 6 + 5**2 * 6 + 3**2 * 4 + 1**2 * 4 == 8732
assert len(ssd300.default_boxes) == 8732
if not FAST:  # one 300 x 300 image through VGG16 and the extra layers: several seconds on a CPU
    with mv.no_grad():
        loc300, conf300 = ssd300.eval()(mv.randn(1, 3, 300, 300))
    print("SSD300 outputs:", tuple(loc300.shape), tuple(conf300.shape))
    assert tuple(loc300.shape) == (1, 8732, 4) and tuple(conf300.shape) == (1, 8732, 21)
del ssd300

# %% [markdown]
# Drawn on one of the validation images (objects of 8 to 48 pixels), one position per map: the
# stride-4 map's boxes fit the small circle (top right), the stride-8 map's the large circle
# (bottom right), the stride-16 map's tall box fits the thin triangle as well as any default
# box does, and the stride-32 map's cover most of the image.

# %%
validation = Shapes(
    8, 96, 1, 3, seed=1, object_sizes=tuple(f * 96 for f in RECIPES["ssd"].object_sizes)
)
image, target = validation[6]


def draw_with_legend(picture, boxes, labels, names, title, path):
    """``viz.draw_boxes`` with one legend entry per label instead of a caption on every box
    (the captions of many overlapping boxes hide each other)."""
    fig = viz.draw_boxes(picture, boxes, labels, title=title)
    ax = fig.axes[0]
    for caption in list(ax.texts):
        caption.remove()
    firsts = [np.flatnonzero(labels == label)[0] for label in np.unique(labels)]
    ax.legend(
        [ax.patches[i] for i in firsts],
        [names[labels[i]] for i in firsts],
        fontsize=8,
        loc="lower left",
    )
    viz.save_figure(fig, path)


try:
    from minivision import viz

    FIGURES.mkdir(parents=True, exist_ok=True)
    draw_with_legend(
        image,
        np.concatenate(shown),
        np.repeat(np.arange(1, len(shown) + 1), per_position),
        ("", "stride 4", "stride 8", "stride 16", "stride 32"),
        "default boxes at one position of each map",
        FIGURES / "12_default_boxes.png",
    )
    print("figure:", FIGURES / "12_default_boxes.png")
except ImportError:
    print("matplotlib is not installed: no figure")

# %% [markdown]
# ## Matching: which default boxes are positive
# Training labels every default box of an image before the loss is computed:
# - a default box whose best IoU with an object is at least 0.5 is a positive for that object;
# - each object's best default box is a positive for it whatever its IoU (forced), so that
#   an object of an unusual shape still has one;
# - every other box is a negative (background).
# This image holds a small circle, a tall thin triangle (no default box is as thin: its best
# IoU is below 0.5, so only its forced box is positive) and a larger circle.

# %%
gt, gt_labels = target["boxes"], target["labels"]
labels, matched = match(defaults, gt, gt_labels)  # (P,): class (0 background), object index (-1)
iou = ops.box_iou(gt, defaults)  # (G, P)
positive = np.flatnonzero(labels > 0)
negatives = np.flatnonzero(labels == 0)
best = iou.argmax(axis=1)  # each object's best default box
positive_iou = iou[matched[positive], positive]
forced = positive[positive_iou < 0.5]
print("object      size     positives  per map (strides 4, 8, 16, 32)  best IoU")
for g, (box, label) in enumerate(zip(gt, gt_labels)):
    mine = np.flatnonzero(matched == g)
    per_map = np.bincount(
        np.searchsorted(starts, mine, side="right") - 1, minlength=len(starts) - 1
    )
    print(
        f"{CLASS_NAMES[label]:10s} {box[2] - box[0]:3.0f}x{box[3] - box[1]:<3.0f}  {len(mine):9d}  "
        f"{str(per_map.tolist()):31s}  {iou[g].max():.2f}"
    )
print(
    f"{len(positive)} positives ({len(forced)} forced, IoU below 0.5), {len(negatives)} negatives"
)
assert set(forced) <= set(best)  # a positive under IoU 0.5 is some object's best box
assert (labels[best] == gt_labels).all() and (matched[best] == np.arange(len(gt))).all()
assert (
    labels[iou.max(axis=0) >= 0.5] > 0
).all()  # every box at IoU >= 0.5 with an object is positive
assert (iou.max(axis=0)[negatives] < 0.5).all()
assert len(forced) == 1 and labels[forced[0]] == 3  # the thin triangle
# the small circle is matched on the finest map only, the large one on coarser maps only
small, large = np.argmin(gt[:, 2] - gt[:, 0]), np.argmax(gt[:, 2] - gt[:, 0])
assert (np.flatnonzero(matched == small) < starts[1]).all() and (
    np.flatnonzero(matched == large) >= starts[1]
).all()
# the positions drawn above: the small circle's positives at stride 4, the large circle's at
# stride 8, and the triangle's forced box is the tall one (the fourth) at stride 16
assert (matched[indices_at(0, 7, 20)] == small).any() and (
    matched[indices_at(1, 9, 9)] == large
).any()
assert forced[0] == indices_at(2, 3, 2)[3]

# %% [markdown]
# ## Hard negatives
# A few positives against thousands of negatives: a loss over all of them would be almost
# all background, and the easiest background at that. SSD keeps, per image, only the
# negatives with the largest classification loss, at most 3 for every positive (hard
# negative mining). Which ones those are depends on the model; here the untrained one, in
# train mode as in the first step of training. The cross-entropy of each box against its
# label, by hand. Untrained, the network's outputs still vary most where the image does (edges,
# contrast), and here the boxes it gets most wrong all lie partly over an object (by IoU below
# 0.5, or they would be positives).

# %%
x = mv.tensor(image[None])
with mv.no_grad():
    loc, conf = model(x)  # (1, P, 4) offsets, (1, P, 1 + 3) logits: the background and 3 classes
logits = conf.numpy()[0].astype(np.float64)
log_probs = logits - logits.max(axis=1, keepdims=True)
log_probs -= np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
cross_entropy = -log_probs[np.arange(len(labels)), labels]  # (P,)
by_loss = negatives[np.argsort(-cross_entropy[negatives], kind="stable")]
mined = by_loss[: min(3 * len(positive), len(negatives))]
print(
    f"{len(mined)} hard negatives mined of {len(negatives)} (3 per positive), the ones the untrained model "
    f"gets most wrong: cross-entropy {cross_entropy[mined].min():.2f} to {cross_entropy[mined].max():.2f}, "
    f"against {cross_entropy[by_loss[len(mined) :]].mean():.2f} on average for the rest"
)
per_map = np.bincount(np.searchsorted(starts, mined, side="right") - 1, minlength=len(starts) - 1)
print("mined per map (strides 4, 8, 16, 32):", per_map.tolist())
assert len(mined) <= 3 * len(positive) and (labels[mined] == 0).all()
assert cross_entropy[mined].min() >= cross_entropy[by_loss[len(mined) :]].max()
touching = iou[:, mined].max(axis=0)
print(
    f"mined negatives overlapping an object: {(touching > 0).sum()} of {len(mined)}, IoU up to {touching.max():.2f}"
)
assert (touching > 0).all()

# %%
try:
    from minivision import viz

    FIGURES.mkdir(parents=True, exist_ok=True)
    draw_with_legend(
        image,
        defaults[positive],
        labels[positive],
        CLASS_NAMES,
        f"the {len(positive)} positive default boxes",
        FIGURES / "12_positives.png",
    )
    viz.draw_boxes(
        image,
        defaults[mined],
        title=f"the {len(mined)} hard negatives of the untrained model",
        path=FIGURES / "12_hard_negatives.png",
    )
    print("figures:", FIGURES / "12_positives.png", FIGURES / "12_hard_negatives.png")
except ImportError:
    print("matplotlib is not installed: no figures")

# %% [markdown]
# ## The MultiBox loss, term by term
# - Localisation: the smooth L1 loss (beta 1) of the four predicted offsets against the
#   encoded object, summed over the positives only. The encoding is Faster R-CNN's (centre
#   offsets in units of the default box's size, log size ratios), divided by SSD's
#   "variances" 0.1 and 0.2.
# - Confidence: the softmax cross-entropy summed over the positives and the mined negatives.
#
# Both are divided by the number of positives; `model.loss` is their sum.

# %%
loc_targets = encode_targets(defaults, gt, matched)  # (P, 4), zeros at the negatives
np.testing.assert_allclose(
    BOX_CODER.decode(loc_targets[positive], defaults[positive]), gt[matched[positive]], atol=1e-3
)  # decoding the targets gives back the objects
loc_term, conf_term = multibox_loss_terms(loc, conf, labels[None], loc_targets[None])
total = model.loss(x, [target])
print(
    f"localisation {loc_term.item():.4f} + confidence {conf_term.item():.4f} = {total.item():.4f}"
)
assert np.isclose(loc_term.item() + conf_term.item(), total.item(), rtol=1e-6)

difference = np.abs(loc.numpy()[0, positive].astype(np.float64) - loc_targets[positive])
smooth_l1 = np.where(difference < 1, 0.5 * difference**2, difference - 0.5).sum()
np.testing.assert_allclose(loc_term.item(), smooth_l1 / len(positive), rtol=1e-5)
np.testing.assert_allclose(
    conf_term.item(),
    cross_entropy[np.concatenate([positive, mined])].sum() / len(positive),
    rtol=1e-5,
)

# %% [markdown]
# ## Training the tiny SSD on shapes
# `train_model("ssd", ...)` trains it with the recipe: 96 x 96 images with up to three
# objects of 8 to 48 pixels, Adam with cosine decay, and the validation mAP@0.5 after every
# epoch. Objects that different in size are what the several source maps are for.

# %%
train_images, epochs = (32, 1) if FAST else (None, None)  # None: the recipe's
with TemporaryDirectory() as out_dir:
    model, history, val = train_model(
        "ssd", "shapes", out_dir, epochs=epochs, train_images=train_images, progress=False
    )
print("per epoch:", [{k: round(v, 3) for k, v in h.items() if k != "lr"} for h in history])
if not FAST:
    assert history[-1]["loss"] < history[0]["loss"]

# %% [markdown]
# ## Detections
# At test time every (default box, class) pair whose softmax score is above 0.01 is a
# candidate; its box is the default box moved by the predicted offsets, clipped to the image.
# NMS at IoU 0.45 runs per class, and the best 200 are kept. Below: the detections that score
# at least 0.3.

# %%
model.eval()
val_images, val_targets = next(iter(DataLoader(val.dataset, batch_size=4)))
detections = model.predict(val_images)
for found in detections:
    assert (
        (np.diff(found["scores"]) <= 0).all()
        and (found["scores"] > 0.01).all()
        and len(found["scores"]) <= 200
    )
    for label in np.unique(found["labels"]):
        same = found["boxes"][found["labels"] == label]
        overlaps = ops.box_iou(same, same)
        np.fill_diagonal(overlaps, 0)
        assert (
            overlaps.max(initial=0) <= 0.45
        )  # NMS left no two boxes of one class overlapping more
print(f"mAP@0.5 on {len(val.dataset)} validation images: {history[-1]['map50']:.3f}")
if not FAST:  # the recipe's 6 epochs reach about 0.95
    assert history[-1]["map50"] > 0.85

# %%
try:
    from minivision import viz

    FIGURES.mkdir(parents=True, exist_ok=True)
    for k, found in enumerate(detections):
        confident = found["scores"] >= 0.3
        viz.draw_boxes(
            val_images.numpy()[k],
            found["boxes"][confident],
            found["labels"][confident],
            found["scores"][confident],
            CLASS_NAMES,
            title="tiny SSD",
            path=FIGURES / f"12_detections_{k}.png",
        )
    print("figures:", *sorted(p.name for p in FIGURES.glob("12_detections_*.png")))
except ImportError:
    print("matplotlib is not installed: no figures")
