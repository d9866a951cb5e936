# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 1. Localization as regression, evaluated by IoU
# Localization: one object per image; say what it is and where. The data pairs each image
# with (class, box); the network has a classifier head and a box-regression head trained
# with a regression loss. Intersection over union (IoU) evaluates the box: a common
# protocol counts a prediction correct if IoU > 0.5 **and** the class is right.
# IoU is an evaluation standard, not the loss.

# %%
import os
from pathlib import Path

import numpy as np

import minivision as mv
from minivision import ops, optim
from minivision.data import DataLoader, Shapes
from minivision.metrics import localization_accuracy
from minivision.models import Localizer
from minivision.train import fit

FAST = os.environ.get("MINIVISION_FAST") == "1"
FIGURES = Path(os.environ.get("MINIVISION_FIGURES", "tutorial_figures"))
mv.manual_seed(0)

# %% [markdown]
# ## IoU by hand
# Boxes are (x1, y1, x2, y2) in continuous pixel coordinates. Two 10x10 boxes offset by
# 5 pixels in x overlap in a 5x10 strip: intersection 50, union 100 + 100 - 50 = 150.

# %%
a = np.array([[0.0, 0.0, 10.0, 10.0]])
b = np.array([[5.0, 0.0, 15.0, 10.0]])
iou = ops.box_iou(a, b)[0, 0]
print(f"IoU = {iou:.4f}")
assert np.isclose(iou, 50 / 150)

# %% [markdown]
# The plain NumPy version to read is `box_iou` in `minivision/reference/boxes.py`:
# intersection over union for every pair at once, by broadcasting. `ops.box_iou` runs a
# Numba kernel that computes the same numbers; the tests hold the two equal.

# %%
from minivision.reference import boxes as reference_boxes  # noqa: E402

assert np.isclose(reference_boxes.box_iou(a, b)[0, 0], iou)

# %% [markdown]
# ## The correctness rule
# A prediction counts when IoU > 0.5 and the class matches. A perfect box with the wrong
# class is wrong; the right class with a box that overlaps by a third is wrong too.

# %%
truth = [{"boxes": np.array([[10.0, 10.0, 30.0, 30.0]]), "labels": np.array([2])}]


def one(box, label):
    return [{"boxes": np.array([box]), "labels": np.array([label]), "scores": np.array([0.9])}]


print("right box, right class:", localization_accuracy(one([11, 10, 31, 30], 2), truth))
print("right box, wrong class:", localization_accuracy(one([11, 10, 31, 30], 1), truth))
print("shifted box, right class:", localization_accuracy(one([20, 20, 40, 40], 2), truth))
assert localization_accuracy(one([11, 10, 31, 30], 2), truth) == 1.0
assert localization_accuracy(one([11, 10, 31, 30], 1), truth) == 0.0
assert localization_accuracy(one([20, 20, 40, 40], 2), truth) == 0.0  # IoU = 100 / 700

# %% [markdown]
# ## Train the localizer on synthetic shapes
# `Shapes` draws one circle, rectangle or triangle per image over a textured background.
# The `Localizer` is a small conv net: its class head reads max-pooled features, its box
# head regresses (cx, cy, w, h) as fractions of the image from the flattened features.
# The loss is cross-entropy plus 5 x smooth L1 on the box.

# %%
train_images, epochs = (256, 2) if FAST else (2048, 10)
train = DataLoader(Shapes(train_images, 64, 1, 1, seed=0), batch_size=32, shuffle=True, seed=0)
val = DataLoader(Shapes(128 if FAST else 256, 64, 1, 1, seed=1), batch_size=64)
model = Localizer.tiny(num_classes=3, image_size=64)
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

# %%
model.eval()
predictions, targets = [], []
for images, batch_targets in val:
    predictions += model.predict(images)
    targets += batch_targets
accuracy = localization_accuracy(predictions, targets)
ious = [ops.box_iou(p["boxes"], t["boxes"])[0, 0] for p, t in zip(predictions, targets)]
print(
    f"localization accuracy {accuracy:.3f}, median IoU {np.median(ious):.3f} on {len(targets)} images"
)
if not FAST:
    assert accuracy > 0.5

# %%
try:
    from minivision import viz

    FIGURES.mkdir(parents=True, exist_ok=True)
    images, batch_targets = next(iter(val))
    p = model.predict(images[:1])[0]
    viz.draw_boxes(
        images.numpy()[0],
        p["boxes"],
        p["labels"],
        p["scores"],
        ["bg", "circle", "rectangle", "triangle"],
        title=f"IoU with the truth {ious[0]:.2f}",
        path=FIGURES / "01_localization.png",
    )
    print("figure:", FIGURES / "01_localization.png")
except ImportError:
    print("matplotlib is not installed: no figure")
