# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 5. YOLO: detection as one regression over a grid
# YOLO cuts the image into an S x S grid (7 x 7 = 49 cells in the paper). Each cell
# predicts B boxes (x, y, w, h, confidence) and one set of class probabilities, all in one
# forward pass. This tutorial checks the paper's output shape, computes the loss term by
# term on a hand-made example, trains the tiny model on synthetic shapes and decodes its
# detections.

# %%
import os
from pathlib import Path

import numpy as np

import minivision as mv
from minivision import optim
from minivision.data import DataLoader, Shapes
from minivision.metrics import evaluate_detections
from minivision.models.yolo import FULL, YOLOv1, yolo_loss
from minivision.train import fit

FAST = os.environ.get("MINIVISION_FAST") == "1"
FIGURES = Path(os.environ.get("MINIVISION_FIGURES", "tutorial_figures"))
mv.manual_seed(0)

# %% [markdown]
# ## The paper's network: 448 x 448 in, 7 x 7 x 30 out
# 24 convolutional layers (the paper's Figure 3) and two fully connected layers. With
# S = 7, B = 2 and C = 20 classes each cell has 5 * 2 + 20 = 30 numbers.

# %%
convs = [layer for layer in FULL if layer != "M"]
print(
    f"{len(convs)} convolutional layers; the first: kernel {convs[0][0]}, {convs[0][1]} filters, stride {convs[0][2]}"
)
assert len(convs) == 24
assert 5 * 2 + 20 == 30

# %% [markdown]
# ## The loss, term by term
# A 2 x 2 grid over a 64 x 64 image, B = 1 predictor per cell, C = 2 classes. One object,
# a 32 x 32 box centred at (16, 16): it lives in cell (0, 0) at offset (0.5, 0.5), with
# w = h = 0.5 of the image. We build an output where cell (0, 0) predicts exactly that box
# with confidence 1 and the right class, and the other cells predict confidence 0.1.

# %%
target = [{"boxes": np.array([[0.0, 0.0, 32.0, 32.0]]), "labels": np.array([1])}]
output = np.zeros((1, 2, 2, 5 + 2))
output[..., :4] = [0.5, 0.5, 0.5, 0.5]  # every cell's box: centred in its cell, half the image
output[..., 4] = 0.1  # confidence
output[..., 5:] = [0.5, 0.5]  # class probabilities
output[0, 0, 0, 4] = 1.0
output[0, 0, 0, 5:] = [1.0, 0.0]
perfect = yolo_loss(mv.tensor(output), target, B=1, image_size=64).item()
# only the three empty cells cost anything: lambda_noobj * confidence^2 = 0.5 * 0.01 each
print(f"loss of the right answer: {perfect:.4f}")
assert np.isclose(perfect, 3 * 0.5 * 0.1**2)

# %% [markdown]
# Now get the class wrong in cell (0, 0): probabilities (0, 1) instead of (1, 0). The class
# term is the squared error of the probabilities, (0 - 1)^2 + (1 - 0)^2 = 2, added once.

# %%
output[0, 0, 0, 5:] = [0.0, 1.0]
wrong_class = yolo_loss(mv.tensor(output), target, B=1, image_size=64).item()
print(f"loss with the wrong class: {wrong_class:.4f}")
assert np.isclose(wrong_class, perfect + 2.0)

# %% [markdown]
# And a box too wide: w = 0.72 instead of 0.5. YOLO regresses sqrt(w), so big boxes are not
# punished more than small ones for the same relative error: lambda_coord * (sqrt(0.72) -
# sqrt(0.5))^2 = 5 * (0.8485 - 0.7071)^2 = 0.1. The confidence target is the box's IoU with
# the truth, 0.5/0.72 = 0.694 here, so (1 - 0.694)^2 is added too.

# %%
output[0, 0, 0, 5:] = [1.0, 0.0]
output[0, 0, 0, 2] = 0.72
too_wide = yolo_loss(mv.tensor(output), target, B=1, image_size=64).item()
coord = 5 * (np.sqrt(0.72) - np.sqrt(0.5)) ** 2
confidence = (1 - 0.5 / 0.72) ** 2
print(
    f"loss with a box too wide: {too_wide:.4f} = {perfect:.3f} + {coord:.3f} (size) + {confidence:.3f} (confidence)"
)
assert np.isclose(too_wide, perfect + coord + confidence)

# %% [markdown]
# ## Training the tiny YOLO on shapes
# 64 x 64 images with up to three shapes; a 4 x 4 grid, 2 boxes per cell, 5 small conv
# layers with batch norm and a 1 x 1 convolution per cell.

# %%
train_images, epochs = (128, 2) if FAST else (2048, 12)
train = DataLoader(Shapes(train_images, 64, 1, 3, seed=0), batch_size=32, shuffle=True, seed=0)
val = DataLoader(Shapes(64 if FAST else 256, 64, 1, 3, seed=1), batch_size=64)
model = YOLOv1.tiny(num_classes=3, image_size=64)
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
assert history[-1]["loss"] < history[0]["loss"]

# %% [markdown]
# ## Decoding: class-specific scores, then NMS per class
# Each predictor's score for class c is confidence x Pr(c | object); boxes scoring above a
# small threshold go through `batched_nms`, which never suppresses across classes.

# %%
model.eval()
predictions, targets = [], []
for images, batch_targets in val:
    predictions += model.predict(images)
    targets += batch_targets
result = evaluate_detections(predictions, targets, 0.5, method="voc")
print(f"mAP@0.5 on {len(targets)} validation images: {result.map:.3f}")
if not FAST:
    assert result.map > 0.5

# %%
try:
    from minivision import viz

    FIGURES.mkdir(parents=True, exist_ok=True)
    images, _ = next(iter(val))
    p = predictions[0]
    confident = p["scores"] > 0.3
    viz.draw_boxes(
        images.numpy()[0],
        p["boxes"][confident],
        p["labels"][confident],
        p["scores"][confident],
        ["bg", "circle", "rectangle", "triangle"],
        title="tiny YOLO",
        path=FIGURES / "05_yolo.png",
    )
    print("figure:", FIGURES / "05_yolo.png")
except ImportError:
    print("matplotlib is not installed: no figure")
