# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 7. FCN: classify every pixel
# Semantic segmentation labels every pixel with a class. Keeping full resolution through a
# deep network is too costly, so a fully convolutional network (FCN, Long et al., 2015)
# does its deep, low-resolution processing in the middle (that is where it integrates
# context) and upsamples the class scores back to the image size at the end. This
# tutorial checks the per-pixel loss, shows that a bilinear-initialised transposed
# convolution is bilinear interpolation, follows the shapes and crops of the 32s -> 16s ->
# 8s skips, and trains a tiny FCN-8s on synthetic shapes.

# %%
import os
from pathlib import Path

import numpy as np

import minivision as mv
from minivision import functional as F
from minivision import nn, optim
from minivision.data import DataLoader, Shapes
from minivision.metrics import SegmentationMetric
from minivision.models.fcn import BACKBONES, FCN, Grid, crop, crop_offsets
from minivision.train import fit

FAST = os.environ.get("MINIVISION_FAST") == "1"
FIGURES = Path(os.environ.get("MINIVISION_FIGURES", "tutorial_figures"))
mv.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## Per-pixel classification
# A segmentation target is an (H, W) map of labels: 0 is the background, 1..3 are the
# shapes. The network outputs an (N, C, H, W) map of class scores, and the loss is the
# ordinary classification cross-entropy, at every pixel, averaged over the pixels.

# %%
image, target = Shapes(1, 64, 2, 3, seed=5)[0]
labels = target["semantic"]
print(
    "image",
    image.shape,
    "labels",
    labels.shape,
    labels.dtype,
    "classes present:",
    np.unique(labels),
)

scores = mv.tensor(rng.standard_normal((1, 4, 64, 64)).astype(np.float32))
loss = F.cross_entropy(scores, mv.tensor(labels[None]))
log_probabilities = F.log_softmax(scores, dim=1).numpy()[0]  # (4, 64, 64)
rows, cols = np.indices(labels.shape)
by_hand = -log_probabilities[
    labels, rows, cols
].mean()  # -log p(true class), averaged over all pixels
print(f"cross_entropy {loss.item():.5f}   by hand {by_hand:.5f}")
assert np.isclose(loss.item(), by_hand, rtol=1e-5)

# %% [markdown]
# Pixels labelled 255 (VOC's "void", e.g. object boundaries) are left out of the mean.

# %%
void = labels.copy()
void[:, :32] = 255  # forget the left half
loss_right_half = F.cross_entropy(scores, mv.tensor(void[None]), ignore_index=255).item()
assert np.isclose(loss_right_half, -log_probabilities[labels, rows, cols][:, 32:].mean(), rtol=1e-5)

# %% [markdown]
# ## Upsampling: a transposed convolution that starts as bilinear interpolation
# FCN upsamples the coarse scores with transposed convolutions (lecture: each input value
# stamps the filter into the output; overlapping stamps add up). With stride f, a
# 2f x 2f kernel and the bilinear filter as its weight, the stamps add up to bilinear
# interpolation. For f = 2 the filter is the outer product of (1/4, 3/4, 3/4, 1/4):

# %%
kernel = nn.init.bilinear_kernel(1, 1, 4).numpy()[0, 0]
print(kernel)
assert np.allclose(kernel, np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25]))

# %% [markdown]
# A transposed conv with stride f maps n pixels to (n - 1) f + 2f = (n + 1) f; dropping
# f / 2 on each side leaves n f. Compare with `F.interpolate(mode="bilinear")` (pixel
# centres aligned, PyTorch's `align_corners=False`): away from the border they agree
# exactly. At the border the transposed convolution fades towards zero, because nothing
# beyond the edge stamps into it, while `interpolate` repeats the edge value. (FCN pads
# its input by 100 pixels, so these borders fall outside the crop.)

# %%
coarse = mv.tensor(rng.standard_normal((1, 1, 6, 6)).astype(np.float32))
for f in (2, 4, 8):
    stamped = F.conv_transpose2d(coarse, nn.init.bilinear_kernel(1, 1, 2 * f), stride=f)
    assert stamped.shape[2:] == (7 * f, 7 * f)
    upsampled = stamped.numpy()[0, 0, f // 2 : f // 2 + 6 * f, f // 2 : f // 2 + 6 * f]
    reference = F.interpolate(coarse, scale_factor=f, mode="bilinear").numpy()[0, 0]
    inner = np.abs(upsampled - reference)[f:-f, f:-f].max()
    border = np.abs(upsampled - reference).max()
    print(
        f"x{f}: 6x6 -> {stamped.shape[2]}x{stamped.shape[3]}, cropped to {upsampled.shape}: "
        f"largest difference inside {inner:.1e}, at the border {border:.2f}"
    )
    assert inner < 1e-5 and border > 1e-2

# %% [markdown]
# For C classes the weight is (C, C, 2f, 2f) with the filter only on the diagonal: each
# class's score map is upsampled on its own. FCN then lets training adjust these weights.

# %%
weight = nn.init.bilinear_kernel(4, 4, 4).numpy()
off_diagonal = weight[~np.eye(4, dtype=bool)]
print("weight", weight.shape, "| off-diagonal entries all zero:", not off_diagonal.any())
assert not off_diagonal.any() and np.allclose(weight[2, 2], kernel)

# %% [markdown]
# ## From FCN-32s to FCN-16s to FCN-8s
# After five 2x2 pools the scores are at 1/32 of the image: FCN-32s upsamples them 32x in
# one step, and the result is blobby. FCN-16s first upsamples 2x and adds scores computed
# (by a 1x1 conv) from pool4, at 1/16; FCN-8s does it once more with pool3, at 1/8, and
# only then upsamples 8x. Finer layers bring back where the edges are.
#
# Follow the shapes through the tiny FCN-8s on a 64x64 image (one conv per stage; the
# first conv pads by 49 so that the 4x4 "fc6" fits pool5 for any input size):

# %%
model = FCN.tiny(num_classes=3).eval()
images = mv.tensor(image[None])
with mv.no_grad():
    x, pools = images, []
    for stage in model.stages:
        x = stage(x)
        pools.append(x)
        print(f"pool{len(pools)}: {tuple(x.shape)}")
    score = model.score_fr(model.fc(pools[4]))
    print("score_fr (1/32):", tuple(score.shape))
    score = model.upscore2(score)
    skip4 = model.score_pool4(pools[3])
    print(
        f"upscore2 x2: {tuple(score.shape)} + score_pool4 {tuple(skip4.shape)} cropped at "
        f"{model.offsets['score_pool4']}"
    )
    score = score + crop(skip4, model.offsets["score_pool4"], *score.shape[2:])
    score = model.upscore_pool4(score)
    skip3 = model.score_pool3(pools[2])
    print(
        f"upscore_pool4 x2: {tuple(score.shape)} + score_pool3 {tuple(skip3.shape)} cropped at "
        f"{model.offsets['score_pool3']}"
    )
    score = score + crop(skip3, model.offsets["score_pool3"], *score.shape[2:])
    score = model.upscore8(score)
    output = crop(score, model.offsets["upscore"], 64, 64)
    print(
        f"upscore8 x8: {tuple(score.shape)}, cropped at {model.offsets['upscore']} -> {tuple(output.shape)}"
    )
    assert np.allclose(output.numpy(), model(images).numpy(), atol=1e-5)

# %% [markdown]
# The new skip layers start at zero (the paper's initialisation): adding them changes
# nothing at first, so FCN-16s starts from FCN-32s's coarse predictions (upsampled in two
# steps instead of one) and learns the finer correction.

# %%
assert not skip4.numpy().any() and not skip3.numpy().any()

# %% [markdown]
# ## Where do the crop offsets come from?
# Each map's pixel i sits at image coordinate `step * i + start`. A conv or pool with
# kernel k, stride s and padding p multiplies the step by s and moves the start by
# step * ((k - 1) / 2 - p); a transposed conv divides the step. Two maps can be added
# once they have the same step: the crop offset is how many pixels of the larger one lie
# before the other's pixel 0. For the paper's VGG16 nets (first conv padded by 100):

# %%
vgg = BACKBONES["vgg16"]
grid, pool_grids = Grid(), []
for index, widths in enumerate(vgg.stages):
    for layer in range(len(widths)):
        grid = grid.conv(3, 1, vgg.first_padding if index == layer == 0 else 1)
    grid = grid.conv(2, 2)
    pool_grids.append(grid)
    print(f"pool{index + 1}: step {grid.step:4.0f}, pixel 0 at {grid.start}")
score_grid = pool_grids[4].conv(vgg.fc6_kernel)
print(f"score_fr: step {score_grid.step:.0f}, pixel 0 at {score_grid.start}")
up2 = score_grid.transposed(4, 2)
print(
    f"upscore2: step {up2.step:.0f}, pixel 0 at {up2.start}  -> score_pool4 crop "
    f"({up2.start} - ({pool_grids[3].start})) / {pool_grids[3].step:.0f} = {pool_grids[3].offset_of(up2)}"
)

# %% [markdown]
# The reference Caffe models crop at 19 (FCN-32s); 5 and 27 (FCN-16s); 5, 9 and 31
# (FCN-8s). `crop_offsets` derives them from the layer list, as above:

# %%
REFERENCE = {
    "32s": {"upscore": 19},
    "16s": {"score_pool4": 5, "upscore": 27},
    "8s": {"score_pool4": 5, "score_pool3": 9, "upscore": 31},
}
for variant, expected in REFERENCE.items():
    print(f"FCN-{variant}: {crop_offsets(vgg, variant)}")
    assert crop_offsets(vgg, variant) == expected

# %% [markdown]
# ## Training the tiny FCN-8s on shapes
# 64x64 images with one to three shapes; the loss is the per-pixel cross-entropy. We score
# it by mean IoU: per class, intersection over union of the predicted and the true pixels,
# averaged over the four classes (background included). The trivial baseline predicts
# "background" everywhere: its background IoU is the background's share of the pixels and
# every shape's IoU is 0.

# %%
train_images, epochs, batch_size, lr = (384, 6, 8, 3e-3) if FAST else (2048, 12, 32, 3e-3)
train = DataLoader(
    Shapes(train_images, 64, 1, 3, seed=0), batch_size=batch_size, shuffle=True, seed=0
)
val = DataLoader(Shapes(64 if FAST else 256, 64, 1, 3, seed=1), batch_size=64)
model = FCN.tiny(num_classes=3, image_size=64)
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

# %%
model.eval()
metric, baseline = SegmentationMetric(4), SegmentationMetric(4)
foreground, all_object = (
    SegmentationMetric(2),
    SegmentationMetric(2),
)  # object vs background, whatever the shape
for images, targets in val:
    truth = np.stack([t["semantic"] for t in targets])
    predicted = model.predict(images)
    metric.update(predicted, truth)
    baseline.update(np.zeros_like(truth), truth)
    foreground.update((predicted > 0).astype(np.int64), (truth > 0).astype(np.int64))
    all_object.update(np.ones_like(truth), (truth > 0).astype(np.int64))
result, trivial = metric.compute(), baseline.compute()
object_iou, trivial_object_iou = (
    foreground.compute().per_class_iou[1],
    all_object.compute().per_class_iou[1],
)
print(
    f"all-background baseline: mean IoU {trivial.mean_iou:.3f} (per class {np.round(trivial.per_class_iou, 2)})"
)
print(
    f"tiny FCN-8s:             mean IoU {result.mean_iou:.3f} (per class {np.round(result.per_class_iou, 2)}), "
    f"pixel accuracy {result.pixel_accuracy:.3f}"
)
print(
    f"object-vs-background IoU {object_iou:.3f} (calling every pixel an object: {trivial_object_iou:.3f})"
)

# %% [markdown]
# In a short run the network learns *where* the objects are well before it learns *which*
# shape each one is (compare the per-class IoUs); the longer run learns both. Look at the
# outlines in the picture below: FCN-8s's last step is an 8x bilinear upsampling, so its
# masks are smooth blobs that lose the corners. U-Net (tutorial 8) adds a skip at every
# level, up to full resolution.

# %%
assert result.mean_iou > trivial.mean_iou + 0.05
assert object_iou > 2 * trivial_object_iou
if not FAST:
    assert result.mean_iou > trivial.mean_iou + 0.3

# %%
try:
    from minivision import viz

    # two validation images, and the first one with a triangle (olive) after them
    picked = [0, 1] + [
        next(k for k in range(2, len(val.dataset)) if 3 in val.dataset[k][1]["labels"])
    ]
    images = mv.tensor(np.stack([val.dataset[k][0] for k in picked]))
    viz.mask_rows(
        images.numpy(),
        [val.dataset[k][1]["semantic"] for k in picked],
        model.predict(images),
        "tiny FCN-8s",
        caption="circle: dark red, rectangle: green, triangle: olive",
        path=FIGURES / "07_fcn_masks.png",
    )
    print("figure:", FIGURES / "07_fcn_masks.png")
except ImportError:
    print("matplotlib is not installed: no figure")
