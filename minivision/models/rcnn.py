"""R-CNN and Fast R-CNN: classify region proposals, slowly and then fast (the lecture's
"smarter sliding window": look only where a proposal says an object may be).

    R-CNN (Girshick et al. 2014), once per proposal:
        image, box -> crop the box (plus context), warp to warp x warp -> body (conv stack)
            -> max pool to pool_size x pool_size -> head: fc - fc -> class scores, box deltas
    Fast R-CNN (Girshick 2015), once per image:
        image -> body -> feature map (N, C, H / stride, W / stride)
            -> RoI max pool each box to pool_size x pool_size -> the same head

Both models have the same layers under the same names (``body``, ``head``), so one's
``state_dict`` loads into the other: what differs is only where the body runs. R-CNN runs it
on every warped crop, so overlapping proposals recompute the same convolutions (the "really
slow" part); Fast R-CNN runs it once and pools every region from the shared feature map.

The head is ``minivision.models.roi_heads.FastRCNNHead`` (two fully connected layers, then
(num_classes + 1) class scores and class-specific box deltas); training samples RoIs with
``sample_proposals`` and scores them with ``fast_rcnn_loss``, and detections come from
``postprocess_detections``. For R-CNN this departs from the paper, which trains the CNN, then
one linear SVM per class on its features, then a ridge regressor for the boxes, in stages;
here the whole R-CNN trains end to end with the softmax and smooth L1 loss of Fast R-CNN.

Proposals come from a given generator rather than selective search (which R-CNN and Fast
R-CNN use, about 2,000 per image): ``training_proposals`` (ground truth jittered plus random
boxes) for the loss and ``grid_proposals`` (a dense multi-scale, multi-aspect grid of boxes)
for ``predict``; either method also takes the proposals as an argument.

Boxes are continuous xyxy pixels: pixel (i, j) covers [j, j + 1) x [i, i + 1). A box covers
the feature cells whose pixels it spans: ``roi_pool`` reads a box as whole-cell corners
``round(x1 * scale) .. round(x2 * scale)`` inclusive (torchvision's convention), so the box it
is given ends one stride earlier (``pooled_boxes``). Then a box aligned to the stride and
``warp`` pixels wide is pooled from the same cells by both models: with 1x1 convolutions
(which see no neighbours, so cropping cannot change them) and BN in eval mode, R-CNN and
Fast R-CNN give the same scores for it, which the tests check.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

import minivision as mv
from minivision import nn
from minivision.backend import get_array_module, random_generator
from minivision.models.roi_heads import (
    FastRCNNHead,
    _boxes,
    _positive_int,
    fast_rcnn_loss,
    postprocess_detections,
    sample_proposals,
)
from minivision.tensor import Tensor

CROP_CHUNK = 256  # R-CNN warps and runs this many crops at a time, so memory stays bounded


# --------------------------------------------------------------------------- proposals
def grid_proposals(
    height: int, width: int, sizes=(0.2, 0.3, 0.45), ratios=(0.5, 1.0, 2.0), step: float = 0.25
) -> np.ndarray:
    """A dense multi-scale grid of boxes inside a height x width image: (P, 4) float32 xyxy.

    For each size s (a fraction of the shorter side) and aspect ratio r (height / width), boxes
    of area (s * side)^2 and that ratio tile the image at a stride of ``step`` times their own
    shorter side, spread evenly from edge to edge (the first touches the left/top edge, the
    last the right/bottom). A box of the grid's size and shape is then off by at most
    step / 2 of its side from any object of that size, IoU >= 0.6 for the default 0.25.
    The defaults give 2,094 boxes for a square image of any size, about as many as selective
    search gives R-CNN.
    """
    if not (
        isinstance(height, numbers.Integral)
        and isinstance(width, numbers.Integral)
        and height > 0
        and width > 0
    ):
        raise ValueError(f"height and width must be positive ints, got {height!r} and {width!r}")
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1] (a fraction of each box's side), got {step!r}")
    side = min(height, width)
    boxes = []
    for size in sizes:
        if not 0 < size <= 1:
            raise ValueError(f"sizes must be fractions of the shorter side in (0, 1], got {size!r}")
        for ratio in ratios:
            if not ratio > 0:
                raise ValueError(f"ratios must be positive (height / width), got {ratio!r}")
            w, h = (
                min(size * side / math.sqrt(ratio), width),
                min(size * side * math.sqrt(ratio), height),
            )
            stride = step * min(w, h)
            x1 = np.linspace(0, width - w, int(np.ceil((width - w) / stride)) + 1)
            y1 = np.linspace(0, height - h, int(np.ceil((height - h) / stride)) + 1)
            xs, ys = np.meshgrid(x1, y1)
            boxes.append(np.stack([xs.ravel(), ys.ravel(), xs.ravel() + w, ys.ravel() + h], axis=1))
    return np.concatenate(boxes).astype(np.float32)


def training_proposals(
    gt_boxes, height: int, width: int, count: int = 64, jitter: float = 0.2
) -> np.ndarray:
    """Proposals for one training image: (count, 4) float32 xyxy inside the image.

    Half are ground-truth boxes (chosen at random) with their centre moved by a normal
    ``jitter`` x their size and each side scaled by exp(normal(0, jitter)): mostly foreground
    at IoU >= 0.5, some not, as selective search's boxes near an object. The rest (all, when
    there is no object) are uniform random boxes with sides of 10-60% of the image: mostly
    background. Drawn from minivision's seeded generator.
    """
    count = _positive_int(count, "count")
    gt = (
        np.zeros((0, 4))
        if np.size(gt_boxes) == 0
        else _boxes(gt_boxes, "gt_boxes").astype(np.float64)
    )
    rng = random_generator()
    num_jittered = count // 2 if len(gt) else 0
    picked = gt[rng.integers(0, len(gt), num_jittered)] if len(gt) else np.zeros((0, 4))
    size = picked[:, 2:] - picked[:, :2]
    centre = (picked[:, :2] + picked[:, 2:]) / 2 + rng.normal(0, jitter, size.shape) * size
    size = size * np.exp(rng.normal(0, jitter, size.shape))
    image = np.array([width, height], dtype=np.float64)
    random_size = rng.uniform(0.1, 0.6, (count - num_jittered, 2)) * image
    random_corner = rng.uniform(0, 1, random_size.shape) * (image - random_size)
    corners = np.concatenate(
        [
            np.concatenate([centre - size / 2, centre + size / 2], axis=1),
            np.concatenate([random_corner, random_corner + random_size], axis=1),
        ]
    )
    corners = np.clip(corners, 0, np.tile(image, 2))
    # a box jittered off the image keeps at least one pixel: the head needs positive sizes
    corners[:, 2:] = np.maximum(corners[:, 2:], 1)
    corners[:, :2] = np.minimum(corners[:, :2], corners[:, 2:] - 1)
    return corners.astype(np.float32)


def pooled_boxes(boxes, stride: int):
    """The boxes (K, 4) continuous xyxy pixels as ``roi_pool`` takes them at ``spatial_scale =
    1 / stride``: its corners round to whole cells and include the last one, so the box given
    ends one stride earlier (a box narrower than a cell pools one cell)."""
    xp = get_array_module(boxes)
    end = xp.maximum(boxes[:, 2:] - stride, boxes[:, :2])
    return xp.concatenate([boxes[:, :2], end], axis=1)


def crop_and_warp(images, boxes, batch, size: int, context: int = 0):
    """Each box's region of its image, resampled bilinearly to size x size: (K, C, size, size).

    images: (N, C, H, W) NumPy or CuPy array; boxes: (K, 4) xyxy pixels; batch: (K,) image
    index of each box. ``context``: R-CNN's padding: the box is first enlarged about its centre
    so that, once warped, ``context`` pixels of the image surround the original box (the paper
    warps to 227 x 227 with 16 pixels of context). Output pixel (i, j) samples the image at
    x1 + (j + 0.5) * (x2 - x1) / size - 0.5 (pixel centres, as ``interpolate`` with
    align_corners=False) with neighbours outside the image replaced by the nearest edge pixel.
    So a box of exactly size x size at whole-pixel corners is copied unchanged.
    """
    xp = get_array_module(images)
    boxes = xp.asarray(boxes, dtype=np.float64)
    centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2
    half = half * (size / (size - 2 * context))
    step = 2 * half / size  # (K, 2): image pixels per output pixel along x, y
    offsets = xp.arange(size, dtype=np.float64) + 0.5
    xs = centre[:, 0:1] - half[:, 0:1] + offsets * step[:, 0:1] - 0.5  # (K, size)
    ys = centre[:, 1:2] - half[:, 1:2] + offsets * step[:, 1:2] - 0.5
    _, channels, height, width = images.shape
    x0, y0 = xp.floor(xs), xp.floor(ys)
    fx, fy = (xs - x0).astype(images.dtype), (ys - y0).astype(images.dtype)
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    cols = [xp.clip(x0, 0, width - 1), xp.clip(x0 + 1, 0, width - 1)]
    rows = [xp.clip(y0, 0, height - 1) * width, xp.clip(y0 + 1, 0, height - 1) * width]
    # gathering whole pixels (C values each) from a channels-last copy is the fast gather
    pixels = xp.ascontiguousarray(images.transpose(0, 2, 3, 1)).reshape(
        -1, channels
    )  # (N * H * W, C)
    first = xp.asarray(batch)[:, None, None] * (height * width)

    def tap(r, c):  # (K, size, size, C): images[batch, :, r, c]
        return pixels[first + r[:, :, None] + c[:, None, :]]

    def lerp(a, b, weight):  # a where weight is 0, exactly
        return a + (b - a) * weight

    wx, wy = fx[:, None, :, None], fy[:, :, None, None]
    top = lerp(tap(rows[0], cols[0]), tap(rows[0], cols[1]), wx)
    bottom = lerp(tap(rows[1], cols[0]), tap(rows[1], cols[1]), wx)
    return xp.ascontiguousarray(lerp(top, bottom, wy).transpose(0, 3, 1, 2))


# --------------------------------------------------------------------------- the models
class _RegionCNN(nn.Module):
    """What R-CNN and Fast R-CNN share: the body, the head, proposals, the loss and detections.
    A subclass says where the body runs: ``_region_features(images, boxes)``.

    Args:
        num_classes: object classes (labels 1..num_classes; 0 is the background).
        image_size: the side the model is trained at (``minivision train`` and ``predict_image``
            resize to it); the models themselves take images of any size.
        widths: the body's stages, each conv (``kernel_size``, same padding) - BN - ReLU -
            max pool 2x2, so the body's stride is 2 ** len(widths).
        pool_size: each region is max-pooled to pool_size x pool_size cells (7 in the papers).
        hidden: the head's fully connected width (4096 in the papers).
        rois_per_image: RoIs sampled per image for the loss (the papers: 64, 2 images a batch).
        proposal_step: ``grid_proposals``' step for the default test-time proposals (0.25:
            2,094 boxes an image, about as many as selective search gives; 0.5: 643).
    """

    task = "detection"
    TINY = dict(widths=(32, 64), hidden=256, rois_per_image=64)  # what ``tiny`` sets

    def __init__(
        self,
        num_classes: int,
        image_size: int = 64,
        in_channels: int = 3,
        widths=(16, 32),
        kernel_size: int = 3,
        pool_size: int = 4,
        hidden: int = 128,
        rois_per_image: int = 32,
        proposal_step: float = 0.25,
    ):
        super().__init__()
        if (
            isinstance(proposal_step, bool)
            or not isinstance(proposal_step, numbers.Real)
            or not 0 < proposal_step <= 1
        ):
            raise ValueError(
                f"proposal_step must be a number in (0, 1] (a fraction of each box's side), "
                f"got {proposal_step!r}"
            )
        for value, name in (
            (num_classes, "num_classes"),
            (image_size, "image_size"),
            (in_channels, "in_channels"),
            (pool_size, "pool_size"),
            (hidden, "hidden"),
            (rois_per_image, "rois_per_image"),
        ):
            _positive_int(value, name)
        if not widths:
            raise ValueError(f"widths must name at least one conv stage, got {widths!r}")
        if _positive_int(kernel_size, "kernel_size") % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd (same padding keeps the map aligned), got {kernel_size}"
            )
        self.config = {
            "num_classes": num_classes,
            "image_size": image_size,
            "in_channels": in_channels,
            "widths": list(widths),
            "kernel_size": kernel_size,
            "pool_size": pool_size,
            "hidden": hidden,
            "rois_per_image": rois_per_image,
            "proposal_step": proposal_step,
        }
        layers, channels = [], in_channels
        for i, width in enumerate(widths):
            layers += [
                nn.Conv2d(
                    channels,
                    _positive_int(width, f"widths[{i}]"),
                    kernel_size,
                    padding=kernel_size // 2,
                ),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.stride = 2 ** len(widths)
        self.body = nn.Sequential(*layers)
        self.head = FastRCNNHead(
            channels,
            num_classes,
            hidden=hidden,
            output_size=pool_size,
            spatial_scale=1.0 / self.stride,
        )

    @classmethod
    def tiny(cls, num_classes: int, image_size: int = 64):
        """The configuration trained on synthetic data: two conv stages of 32 and 64 channels
        (stride 4), 4x4 pooling, fc width 256, 64 RoIs an image."""
        return cls(num_classes, image_size=image_size, **cls.TINY)

    # ----------------------------------------------------------------- inputs
    def _check_images(self, images) -> None:
        channels = self.config["in_channels"]
        if len(images.shape) != 4 or images.shape[1] != channels:
            raise ValueError(
                f"images must have shape (N, {channels}, H, W), got {tuple(images.shape)}"
            )

    def _check_proposals(self, proposals, images) -> list:
        """``proposals`` as N host arrays (P_i, 4) with positive sizes, P_i >= 1."""
        count = images.shape[0]
        if not isinstance(proposals, (list, tuple)) or len(proposals) != count:
            got = (
                f"a {type(proposals).__name__} of {len(proposals)}"
                if isinstance(proposals, (list, tuple))
                else type(proposals).__name__
            )
            raise ValueError(
                f"proposals must be a list of {count} (P, 4) box arrays, one per image, got {got}"
            )
        checked = [
            _boxes(boxes, f"proposals[{i}]", positive=True) for i, boxes in enumerate(proposals)
        ]
        for i, boxes in enumerate(checked):
            if len(boxes) == 0:
                raise ValueError(f"proposals[{i}] must hold at least one box, got shape (0, 4)")
        return checked

    def default_proposals(self, images) -> list:
        """``grid_proposals`` at ``proposal_step`` for each image's size."""
        height, width = images.shape[2:]
        return [grid_proposals(height, width, step=self.config["proposal_step"])] * images.shape[0]

    # ----------------------------------------------------------------- scoring
    def _region_features(self, images, boxes: list):
        """(features, rois) for the head: the regions' feature maps and the boxes to pool."""
        raise NotImplementedError

    def forward(self, images, proposals=None) -> tuple[Tensor, Tensor]:
        """Scores of every proposal, images (N, C, H, W) and a list of N (P_i, 4) xyxy boxes
        (default ``grid_proposals``): (class_logits (sum P_i, num_classes + 1),
        box_deltas (sum P_i, 4 (num_classes + 1))), image by image."""
        self._check_images(images)
        proposals = self.default_proposals(images) if proposals is None else proposals
        return self.head(*self._region_features(images, self._check_proposals(proposals, images)))

    def loss(self, images, targets, proposals=None) -> Tensor:
        """``fast_rcnn_loss`` of ``rois_per_image`` RoIs per image drawn by ``sample_proposals``
        (at most a quarter foreground, the ground truth included) from ``proposals`` (default
        ``training_proposals`` of each target)."""
        self._check_images(images)
        if len(targets) != images.shape[0]:
            raise ValueError(
                f"targets must hold one dict per image: {images.shape[0]} images, got {len(targets)}"
            )
        height, width = images.shape[2:]
        if proposals is None:
            proposals = [training_proposals(t["boxes"], height, width) for t in targets]
        proposals = self._check_proposals(proposals, images)
        sampled = [
            sample_proposals(
                boxes,
                t["boxes"],
                np.asarray(t["labels"]),
                batch_size_per_image=self.config["rois_per_image"],
            )
            for boxes, t in zip(proposals, targets)
        ]
        rois, labels, goals = (list(parts) for parts in zip(*sampled))
        class_logits, box_deltas = self.head(*self._region_features(images, rois))
        return fast_rcnn_loss(
            class_logits, box_deltas, np.concatenate(labels), np.concatenate(goals)
        )

    def predict(
        self, images, proposals=None, score_thresh: float = 0.05, nms_thresh: float = 0.5
    ) -> list[dict]:
        """Detections per image (``postprocess_detections``): NumPy ``boxes`` (K, 4) xyxy
        pixels, ``labels`` (K,) in 1..num_classes, ``scores`` (K,), from ``proposals``
        (default ``grid_proposals``)."""
        self._check_images(images)
        proposals = self._check_proposals(
            self.default_proposals(images) if proposals is None else proposals, images
        )
        with mv.no_grad():
            class_logits, box_deltas = self(images, proposals)
        logits, deltas = class_logits.numpy(), box_deltas.numpy()
        ends = np.cumsum([len(boxes) for boxes in proposals])
        return [
            postprocess_detections(
                logits[end - len(boxes) : end],
                deltas[end - len(boxes) : end],
                boxes,
                tuple(images.shape[2:]),
                score_thresh=score_thresh,
                nms_thresh=nms_thresh,
            )
            for boxes, end in zip(proposals, ends)
        ]


class RCNN(_RegionCNN):
    """R-CNN: every proposal is cropped, warped to ``warp`` x ``warp`` and run through the body.

    The paper warps to 227 x 227 after enlarging each box so that 16 warped pixels of context
    surround it (``context``), runs AlexNet to pool5 and then fc6, fc7; here the crop's feature
    map (warp / stride square) is max-pooled to pool_size x pool_size (its last pool) and
    goes to the same head as Fast R-CNN's. ``forward``: see ``_RegionCNN.forward``.
    """

    # a step's activations are those of its warped crops, whatever the image's size
    # (``minivision.memory_plan`` scales only the images themselves with the area)
    step_memory_grows_with_area = False

    def __init__(
        self,
        num_classes: int,
        image_size: int = 64,
        in_channels: int = 3,
        widths=(16, 32),
        kernel_size: int = 3,
        pool_size: int = 4,
        hidden: int = 128,
        rois_per_image: int = 32,
        proposal_step: float = 0.25,
        warp: int = 32,
        context: int = 0,
    ):
        super().__init__(
            num_classes,
            image_size,
            in_channels,
            widths,
            kernel_size,
            pool_size,
            hidden,
            rois_per_image,
            proposal_step,
        )
        if _positive_int(warp, "warp") % self.stride:
            raise ValueError(
                f"warp must be a multiple of the body's stride {self.stride} (its map then covers "
                f"the crop exactly), got {warp}"
            )
        if (
            isinstance(context, bool)
            or not isinstance(context, numbers.Integral)
            or not 0 <= 2 * context < warp
        ):
            raise ValueError(
                f"context must be an int in [0, warp / 2) = [0, {warp / 2:g}), got {context!r}"
            )
        self.config.update(warp=warp, context=context)

    @classmethod
    def tiny(cls, num_classes: int, image_size: int = 64):
        """Fast R-CNN's tiny configuration (the same layers, so the weights load into either),
        with each crop warped to 16 x 16 (the body's map then is the 4 x 4 pooling grid) and
        643 test-time proposals an image (proposal step 0.5) rather than 2,094: each one is a
        pass of the body here."""
        return cls(num_classes, image_size=image_size, **cls.TINY, warp=16, proposal_step=0.5)

    def _region_features(self, images, boxes: list):
        """The body on every warped crop, CROP_CHUNK crops at a time: ((K, C', warp / stride,
        warp / stride), one RoI per crop covering all of its map)."""
        data = images.data
        flat = np.concatenate(boxes)
        batch = np.repeat(np.arange(len(boxes)), [len(b) for b in boxes])
        warp, context = self.config["warp"], self.config["context"]
        features = [
            self.body(
                Tensor(
                    crop_and_warp(
                        data, flat[i : i + CROP_CHUNK], batch[i : i + CROP_CHUNK], warp, context
                    )
                )
            )
            for i in range(0, len(flat), CROP_CHUNK)
        ]
        features = mv.cat(features, dim=0) if len(features) > 1 else features[0]
        whole = pooled_boxes(np.array([[0, 0, warp, warp]], dtype=np.float64), self.stride)
        rois = np.concatenate(
            [np.arange(len(flat))[:, None], np.repeat(whole, len(flat), axis=0)], axis=1
        )
        return features, rois.astype(data.dtype)  # on the host, as the head takes sampled RoIs


class FastRCNN(_RegionCNN):
    """Fast R-CNN: the body runs once per image and each proposal is RoI-pooled from its map.

    ``forward``: see ``_RegionCNN.forward``.
    """

    def _region_features(self, images, boxes: list):
        """(the body's map of the images (N, C', H / stride, W / stride), each image's boxes
        as ``roi_pool`` reads them)."""
        return self.body(images), [pooled_boxes(b, self.stride) for b in boxes]
