# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 8. The bottleneck encoder-decoder and U-Net
# The encoder-decoder pairs every downsampling layer with an upsampling layer: the encoder
# pools its way down to a small, deep "bottleneck" map (context: what is in the image),
# and the decoder upsamples back to a per-pixel output. U-Net (Ronneberger et al., 2015)
# adds a skip connection from each encoder level to the decoder level of the same size, so
# the decoder sees the fine detail the bottleneck has pooled away. This tutorial measures
# what the bottleneck loses, follows the paper's 572 -> 388 shapes, and trains a tiny
# U-Net on synthetic shapes.

# %%
import os
from pathlib import Path

import numpy as np

import minivision as mv
from minivision import functional as F
from minivision import optim
from minivision.data import DataLoader, Shapes
from minivision.metrics import SegmentationMetric
from minivision.models import UNet
from minivision.models.unet import center_crop, valid_output_size, valid_sizes
from minivision.train import fit

FAST = os.environ.get("MINIVISION_FAST") == "1"
FIGURES = Path(os.environ.get("MINIVISION_FIGURES", "tutorial_figures"))
mv.manual_seed(0)

# %% [markdown]
# ## What a decoder can rebuild from the bottleneck alone
# The tiny U-Net pools three times: a 64x64 image becomes an 8x8 bottleneck, each of its
# cells standing for an 8x8-pixel square. Suppose the bottleneck were perfect and knew,
# for every square, exactly how much of each class it holds. A decoder without skips has
# to draw the 64x64 mask from that: a good smooth guess is to upsample the class fractions
# bilinearly and take the largest. Score that guess against the truth, for maps of 8x8,
# 16x16, 32x32 and 64x64 (no pooling).

# %%
val_set = Shapes(64 if FAST else 256, 64, 1, 3, seed=1)
truth = np.stack([val_set[k][1]["semantic"] for k in range(len(val_set))])  # (N, 64, 64)
one_hot = mv.tensor(
    (truth[:, None] == np.arange(4)[None, :, None, None]).astype(np.float32)
)  # (N, 4, 64, 64)
best_miou = {}
for factor in (8, 4, 2, 1):
    coarse = F.avg_pool2d(one_hot, factor)  # what a perfect (64 / factor)-sized map knows
    rebuilt = F.interpolate(coarse, size=(64, 64), mode="bilinear").numpy().argmax(axis=1)
    metric = SegmentationMetric(4)
    metric.update(rebuilt, truth)
    best_miou[factor] = metric.compute().mean_iou
    print(f"from a {64 // factor}x{64 // factor} map: best mean IoU {best_miou[factor]:.3f}")
assert best_miou[1] == 1.0
assert best_miou[8] < best_miou[4] < best_miou[2] < best_miou[1]

# %% [markdown]
# Even a perfect 8x8 map loses the corners and thin tips of the shapes. A network can learn
# to pack some of that detail into the bottleneck's 64 channels, and the decoder to unpack
# it, but a skip makes that unnecessary: it hands the decoder the encoder's map *at its own
# resolution*. The last decoder level sees the 64x64 features of the first level next to
# the upsampled context: "what" from below, "where exactly" from the side.
#
# Here is the U-Net forward pass written out, with a switch that replaces each skip by
# zeros (what a plain bottleneck encoder-decoder would pass). The paper crops the encoder
# map to the decoder's size ("copy and crop"); with same padding the sizes already agree.


# %%
def unet_forward(model, images, skips=True):
    encoder_maps, x = [], images
    for level in model.down:  # two 3x3 convs per level, then a 2x2 max pool
        x = level(x)
        encoder_maps.append(x)
        x = model.pool(x)
    x = model.bottom(x)
    for up, decode, skip in zip(model.up, model.decode, reversed(encoder_maps)):
        x = up(x)  # 2x2 up-convolution, stride 2: double the size, halve the channels
        side = center_crop(skip, *x.shape[2:]) if skips else mv.zeros(*x.shape)
        x = decode(mv.cat([side, x], dim=1))  # the decoder sees [encoder map, upsampled]
    return model.classifier(x)


model = UNet.tiny(num_classes=3).eval()
image = mv.tensor(val_set[0][0][None])
with mv.no_grad():
    assert np.allclose(unet_forward(model, image).numpy(), model(image).numpy(), atol=1e-5)
print("unet_forward(skips=True) is UNet.forward")

# %% [markdown]
# ## The paper's U-Net: 572x572 in, 388x388 out
# Depth 4, 64 channels at the top doubling to 1024 at the bottom, *valid* 3x3 convolutions
# (no padding: each loses a pixel on every side), 2x2 max pools, 2x2 up-convolutions. The
# shapes do not depend on the widths, so we follow them through a 2-channel-wide copy
# (fast), and count the parameters of the real one.

# %%
paper = UNet()  # in_channels=1, num_classes=2, base_channels=64, depth=4, padding="valid"
parameters = sum(int(np.prod(p.shape)) for p in paper.parameters())
widths = [level[1][0].weight.shape[0] for level in paper.down] + [
    paper.bottom[1][0].weight.shape[0]
]
print(f"the paper's U-Net: widths {widths}, {parameters / 1e6:.1f} million parameters")
assert widths == [64, 128, 256, 512, 1024] and round(parameters / 1e6) == 31

narrow = UNet(base_channels=2).eval()
with mv.no_grad():
    x, encoder_maps = mv.zeros(1, 1, 572, 572), []
    for level in narrow.down:
        x = level(x)
        encoder_maps.append(x)
        print(f"down: conv, conv -> {x.shape[2]}, pool -> {x.shape[2] // 2}")
        x = narrow.pool(x)
    x = narrow.bottom(x)
    print(f"bottom: conv, conv -> {x.shape[2]}")
    decoder_sizes = []
    for up, decode, skip in zip(narrow.up, narrow.decode, reversed(encoder_maps)):
        x = up(x)
        upsampled = x.shape[2]
        x = decode(mv.cat([center_crop(skip, *x.shape[2:]), x], dim=1))
        decoder_sizes.append((upsampled, x.shape[2]))
        print(
            f"up: up-conv -> {upsampled}, concatenate crop({skip.shape[2]} -> {upsampled}), "
            f"conv, conv -> {x.shape[2]}"
        )
    output = narrow.classifier(x)
print("output:", tuple(output.shape))
assert [m.shape[2] for m in encoder_maps] == [568, 280, 136, 64]
assert decoder_sizes == [(56, 52), (104, 100), (200, 196), (392, 388)]
assert output.shape == (1, 2, 388, 388) and valid_output_size(572, 4) == 388

# %% [markdown]
# The output covers only the centre of the input: the 92-pixel border was needed as
# context. Not every size works either: every conv pair must leave an even size to pool.
# The paper segments a large image tile by tile ("overlap-tile"), mirroring the image
# outwards at its edges to give the border pixels context; `UNet.scores` does that, so
# any image gets a full-size map.

# %%
print("valid input sizes at depth 4:", valid_sizes(4), "... 572")
with mv.no_grad():
    full_size = narrow.scores(mv.zeros(1, 1, 64, 64))
print("overlap-tile scores for a 64x64 image:", tuple(full_size.shape))
assert valid_sizes(4)[:3] == [188, 204, 220] and full_size.shape == (1, 2, 64, 64)

# %% [markdown]
# ## Training the tiny U-Net on shapes
# The tiny U-Net: depth 3, 8 channels at the top, *same* padding (so output size = input
# size, 64x64), batch norm after each conv. Mean IoU is scored against the trivial
# baseline that calls every pixel background.

# %%
train_images, epochs, batch_size, lr = (256, 4, 16, 5e-3) if FAST else (2048, 12, 32, 3e-3)
train = DataLoader(
    Shapes(train_images, 64, 1, 3, seed=0), batch_size=batch_size, shuffle=True, seed=0
)
val = DataLoader(val_set, batch_size=64)
mv.manual_seed(0)
model = UNet.tiny(num_classes=3, image_size=64)
opt = optim.Adam(model.parameters(), lr=lr)
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
# Score it, and score the same trained network with its skips switched off at test time:
# what does the decoder draw when it sees only the upsampled bottleneck?


# %%
def score(predict):
    """Mean IoU scores and object-vs-background IoU of ``predict(images) -> (N, H, W)`` on ``val``."""
    metric, foreground = SegmentationMetric(4), SegmentationMetric(2)
    for images, targets in val:
        labels = np.stack([t["semantic"] for t in targets])
        predicted = predict(images)
        metric.update(predicted, labels)
        foreground.update((predicted > 0).astype(np.int64), (labels > 0).astype(np.int64))
    return metric.compute(), foreground.compute().per_class_iou[1]


def without_skips(images):
    with mv.no_grad():
        return unet_forward(model, images, skips=False).numpy().argmax(axis=1)


model.eval()
result, object_iou = score(model.predict)
lesioned, lesioned_object_iou = score(without_skips)
trivial, _ = score(lambda images: np.zeros((images.shape[0], 64, 64), dtype=np.int64))
print(
    f"all-background baseline: mean IoU {trivial.mean_iou:.3f} (per class {np.round(trivial.per_class_iou, 2)})"
)
print(
    f"tiny U-Net:              mean IoU {result.mean_iou:.3f} (per class {np.round(result.per_class_iou, 2)}), "
    f"object-vs-background IoU {object_iou:.3f}"
)
print(
    f"same net, skips zeroed:  mean IoU {lesioned.mean_iou:.3f}, object-vs-background IoU {lesioned_object_iou:.3f}"
)
assert result.mean_iou > trivial.mean_iou + 0.05
assert object_iou > 0.5 and object_iou > lesioned_object_iou + 0.2
if not FAST:
    assert result.mean_iou > trivial.mean_iou + 0.3 and object_iou > 0.9

# %% [markdown]
# The trained decoder takes its outlines from the skips: without them it loses the
# objects. (That shows where *this* network gets its detail, not that no network could do
# without: a plain encoder-decoder trained on these simple shapes learns to carry the
# detail through its bottleneck. Skips make it easy; the more fine detail the images hold,
# the more that matters.)

# %%
try:
    from minivision import viz

    # two validation images, and the first one with a triangle (olive) after them
    picked = [0, 1] + [next(k for k in range(2, len(val_set)) if 3 in val_set[k][1]["labels"])]
    images = mv.tensor(np.stack([val_set[k][0] for k in picked]))
    viz.mask_rows(
        images.numpy(),
        [val_set[k][1]["semantic"] for k in picked],
        model.predict(images),
        "tiny U-Net",
        caption="circle: dark red, rectangle: green, triangle: olive",
        path=FIGURES / "08_unet_masks.png",
    )
    print("figure:", FIGURES / "08_unet_masks.png")
except ImportError:
    print("matplotlib is not installed: no figure")
