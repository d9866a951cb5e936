"""Faster R-CNN (Ren et al., "Faster R-CNN", 2015): a Region Proposal Network and a Fast R-CNN
head sharing one convolutional feature map.

    image (N, 3, H, W) -> backbone -> features (N, C, H / stride, W / stride)
        -> RegionProposalNetwork -> proposals (K, 4) per image (no gradient)
        -> FastRCNNHead: RoI max pool -> fc -> fc -> class scores (R, num_classes + 1)
                                                  -> class-specific deltas (R, 4 (num_classes + 1))
        -> postprocess_detections -> boxes, labels, scores per image

Training is the approximate joint training of the paper's released code: one loss, the RPN's
two terms plus the head's, with the proposals taken as fixed inputs of the head (no gradient
flows through their coordinates); the shared backbone learns from both.

Variants:
- "vgg16": the paper's network. VGG16's conv1_1 .. conv5_3 (13 3x3 convolutions with ReLU, a
  2x2 max pool after conv1_2, conv2_2, conv3_3 and conv4_3, no pool5): stride 16, 512 channels.
  The pools round down (torchvision's VGG; Caffe's round up), so a 600 x 1000 image gives a
  37 x 62 map and 37 * 62 * 9 = 20,646 anchors. RPN: 3x3 conv of 512 channels, nine anchors
  (sizes 128, 256, 512; ratios 0.5, 1, 2), 2000 / 1000 proposals kept before and after NMS
  in training / testing (torchvision's defaults); head: 7x7 RoI pooling at scale 1/16, fc6
  and fc7 of 4096 with dropout 0.5, 128 RoIs sampled per image.
- "tiny" (ours, for 64 x 64 Shapes on 2 CPU cores): two conv-BN-ReLU-pool stages and two more
  conv-BN-ReLU (32, 64, 128, 128 channels): stride 4, so an object of 10 to 29 pixels covers
  2 to 7 cells of the map the RoIs are pooled from (at stride 8 the head, seeing 1 to 4 cells,
  reached mAP@0.5 0.59 after one pass over 6,144 Shapes images where stride 4 reached 0.78).
  Shapes objects have sides of 15% to 45% of the image, so the nine anchors have sizes of
  0.19, 0.31 and 0.44 times the image side (12, 20, 28 pixels at 64). 300 / 100 proposals
  before NMS in training / testing, 100 / 50 after; head: 4x4 RoI pooling at scale 1/4, two
  fc layers of 256, 64 RoIs per image.
"""

from __future__ import annotations

import numbers

import numpy as np

import minivision as mv
from minivision import nn
from minivision.models._conv_stack import conv_stack
from minivision.models.roi_heads import (
    FastRCNNHead,
    fast_rcnn_loss,
    postprocess_detections,
    sample_proposals,
)
from minivision.models.rpn import RegionProposalNetwork
from minivision.ops import AnchorGenerator

# Backbones, one entry per layer: an int is a 3x3 convolution (same padding) to that many
# channels, "M" a 2x2 max pool of stride 2 that rounds down.
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
TINY = [32, "M", 64, "M", 128, 128]

# Per variant: backbone, batch norm, anchor sizes as fractions of the image side (None: the
# paper's pixel sizes), proposals kept before and after NMS as (training, testing), RoI pool
# size, fc width, dropout, RoIs sampled per image. The RPN's 3x3 conv keeps the backbone's channels.
VARIANTS = {
    "vgg16": dict(
        layers=VGG16,
        batch_norm=False,
        anchor_fractions=None,
        pre_nms=(2000, 1000),
        post_nms=(2000, 1000),
        pool=7,
        hidden=4096,
        dropout=0.5,
        rois_per_image=128,
    ),
    "tiny": dict(
        layers=TINY,
        batch_norm=True,
        anchor_fractions=(0.1875, 0.3125, 0.4375),
        pre_nms=(300, 100),
        post_nms=(100, 50),
        pool=4,
        hidden=256,
        dropout=0.0,
        rois_per_image=64,
    ),
}
PAPER_ANCHOR_SIZES = (128, 256, 512)
ASPECT_RATIOS = (0.5, 1.0, 2.0)


def _image_hw(image_size) -> tuple[int, int]:
    """``image_size`` (an int or a (height, width) pair of ints > 0) as (height, width)."""
    items = tuple(image_size) if isinstance(image_size, (tuple, list)) else (image_size, image_size)
    if len(items) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in items
    ):
        raise ValueError(
            f"image_size must be an int or (height, width), ints > 0, got {image_size!r}"
        )
    return int(items[0]), int(items[1])


class FasterRCNN(nn.Module):
    """Faster R-CNN: region proposals and their classification from one shared feature map.

    ``forward(images (N, in_channels, H, W))`` -> (proposals: N (K_i, 4) xyxy arrays, class_logits
    (sum K_i, num_classes + 1), box_deltas (sum K_i, 4 (num_classes + 1))), the head's outputs
    for every proposal, image by image. (H, W) is ``image_size``.
    """

    task = "detection"

    def __init__(
        self,
        variant: str = "vgg16",
        num_classes: int = 20,
        image_size=(600, 1000),
        in_channels: int = 3,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, numbers.Integral)
            or num_classes < 1
        ):
            raise ValueError(
                f"num_classes must be an int >= 1 (object classes, background not counted), "
                f"got {num_classes!r}"
            )
        height, width = _image_hw(image_size)
        spec = VARIANTS[variant]
        self.config = {
            "variant": variant,
            "num_classes": num_classes,
            "image_size": list(image_size) if isinstance(image_size, (tuple, list)) else image_size,
            "in_channels": in_channels,
        }
        self.image_hw = (height, width)
        self.backbone, channels, self.stride = conv_stack(
            spec["layers"], in_channels, spec["batch_norm"], nn.ReLU
        )
        if min(self.feature_size(height, width)) < 1:
            raise ValueError(
                f"FasterRCNN({variant!r}) downsamples by {self.stride}: image_size must be at least "
                f"{self.stride} on each side, got {image_size!r}"
            )
        fractions = spec["anchor_fractions"]
        sizes = (
            PAPER_ANCHOR_SIZES
            if fractions is None
            else tuple(f * min(height, width) for f in fractions)
        )
        (pre_train, pre_test), (post_train, post_test) = spec["pre_nms"], spec["post_nms"]
        self.rpn = RegionProposalNetwork(
            channels,
            AnchorGenerator((sizes,), (ASPECT_RATIOS,)),
            pre_nms_top_n_train=pre_train,
            post_nms_top_n_train=post_train,
            pre_nms_top_n_test=pre_test,
            post_nms_top_n_test=post_test,
        )
        self.roi_head = FastRCNNHead(
            channels,
            num_classes,
            hidden=spec["hidden"],
            output_size=spec["pool"],
            spatial_scale=1.0 / self.stride,
            dropout=spec["dropout"],
        )
        self.rois_per_image = spec["rois_per_image"]

    @classmethod
    def tiny(cls, num_classes: int, image_size: int = 64) -> "FasterRCNN":
        """The configuration trained on synthetic data: stride 4, anchors sized for Shapes objects."""
        return cls("tiny", num_classes=num_classes, image_size=image_size)

    def feature_size(self, height: int, width: int) -> tuple[int, int]:
        """The backbone's map size for an (height, width) image: each pool halves, rounding down."""
        for module in self.backbone:
            if isinstance(module, nn.MaxPool2d):
                height, width = height // 2, width // 2
        return height, width

    def _check_images(self, images) -> None:
        (height, width), channels = self.image_hw, self.config["in_channels"]
        if len(images.shape) != 4 or tuple(images.shape[1:]) != (channels, height, width):
            raise ValueError(
                f"FasterRCNN({self.config['variant']!r}) takes images of shape (N, {channels}, {height}, "
                f"{width}) (build it with image_size=... for another size), got {tuple(images.shape)}"
            )

    def _check_targets(self, targets, count: int) -> None:
        if not isinstance(targets, (tuple, list)) or len(targets) != count:
            seen = (
                f"{len(targets)} items"
                if isinstance(targets, (tuple, list))
                else type(targets).__name__
            )
            raise ValueError(
                f"targets must be a list of {count} dicts with 'boxes' and 'labels', one per image, "
                f"got {seen}"
            )
        classes = self.config["num_classes"]
        for k, target in enumerate(targets):
            if not isinstance(target, dict) or "boxes" not in target or "labels" not in target:
                seen = sorted(target) if isinstance(target, dict) else type(target).__name__
                raise ValueError(
                    f"targets[{k}] must be a dict with 'boxes' and 'labels', got {seen}"
                )
            boxes, labels = np.asarray(target["boxes"]), np.asarray(target["labels"])
            if boxes.ndim != 2 or boxes.shape[1] != 4:
                raise ValueError(
                    f"targets[{k}]['boxes'] must have shape (G, 4) as xyxy pixels, "
                    f"got shape {boxes.shape}"
                )
            if labels.shape != (len(boxes),) or labels.dtype.kind not in "iu":
                raise ValueError(
                    f"targets[{k}]['labels'] must be {len(boxes)} integers, one per box, "
                    f"got shape {labels.shape} and dtype {labels.dtype}"
                )
            outside = (labels < 1) | (labels > classes)
            if outside.any():
                raise ValueError(
                    f"targets[{k}]['labels'] must be in 1..{classes} (0 is the background), "
                    f"got {int(labels[outside][0])}"
                )

    def forward(self, images) -> tuple:
        self._check_images(images)
        features = self.backbone(images)
        proposals, _ = self.rpn(features, self.image_hw)
        class_logits, box_deltas = self.roi_head(features, proposals)
        return proposals, class_logits, box_deltas

    def losses(self, images, targets) -> dict:
        """The four scalar losses: the RPN's ``loss_objectness`` and ``loss_rpn_box_reg``, and the
        head's ``loss_fast_rcnn`` (classification plus box regression of the sampled RoIs)."""
        self._check_images(images)
        self._check_targets(targets, images.shape[0])
        features = self.backbone(images)
        proposals, losses = self.rpn(features, self.image_hw, targets)
        rois, labels, regression = [], [], []
        for boxes, target in zip(proposals, targets):
            sampled = sample_proposals(
                boxes,
                target["boxes"],
                np.asarray(target["labels"]),
                batch_size_per_image=self.rois_per_image,
            )
            for kept, part in zip((rois, labels, regression), sampled):
                kept.append(part)
        class_logits, box_deltas = self.roi_head(features, rois)
        losses["loss_fast_rcnn"] = fast_rcnn_loss(
            class_logits, box_deltas, np.concatenate(labels), np.concatenate(regression)
        )
        return losses

    def loss(self, images, targets) -> mv.Tensor:
        """The sum of ``losses``: approximate joint training."""
        losses = self.losses(images, targets)
        return losses["loss_objectness"] + losses["loss_rpn_box_reg"] + losses["loss_fast_rcnn"]

    def predict(
        self,
        images,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
    ) -> list[dict]:
        """Boxes (K, 4) xyxy pixels, labels 1..num_classes and scores per image (``postprocess_detections``)."""
        with mv.no_grad():
            proposals, class_logits, box_deltas = self(images)
        logits, deltas = class_logits.numpy(), box_deltas.numpy()
        ends = np.cumsum([len(boxes) for boxes in proposals])
        return [
            postprocess_detections(
                logits[end - len(boxes) : end],
                deltas[end - len(boxes) : end],
                boxes,
                self.image_hw,
                score_thresh,
                nms_thresh,
                detections_per_img,
            )
            for boxes, end in zip(proposals, ends)
        ]
