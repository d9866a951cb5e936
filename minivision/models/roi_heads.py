"""Fast R-CNN's detection head (Girshick, "Fast R-CNN", 2015), as torchvision's ``RoIHeads``.

    proposals (P, 4) + ground truth -> sample_proposals -> R sampled RoIs, labels, targets
    features (N, C, H, W), RoIs -> RoI max pool (C, 7, 7) -> flatten -> fc + ReLU -> fc + ReLU
        -> class scores (R, num_classes + 1) and class-specific deltas (R, 4 (num_classes + 1))
    scores, deltas, proposals -> postprocess_detections -> boxes, labels, scores

Class 0 is the background; object classes are 1..num_classes. Box deltas are R-CNN's
(dx, dy, dw, dh) of ``BoxCoder`` with torchvision's weights (10, 10, 5, 5), which scale
the targets to about unit variance, as the paper's normalisation of the targets does.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from minivision import functional as F
from minivision import nn
from minivision.backend import get_array_module, random_generator, to_numpy
from minivision.nn import init
from minivision.ops import BoxCoder, batched_nms, box_iou, roi_pool
from minivision.tensor import Tensor

BOX_CODER = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
BETA = 1.0 / 9  # torchvision's smooth L1 beta for the second stage (the paper's is 1)


# --------------------------------------------------------------------------- checks
def _host(value):
    """A NumPy array from a NumPy/CuPy array, a Tensor or a list."""
    return to_numpy(value.data if isinstance(value, Tensor) else value)


def _boxes(value, name: str, positive: bool = False) -> np.ndarray:
    """``value`` as a finite (N, 4) xyxy float array with x2 >= x1, y2 >= y1 (> when ``positive``)."""
    boxes = _host(value)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"{name} must have shape (N, 4) as (x1, y1, x2, y2), got shape {tuple(boxes.shape)}"
        )
    if boxes.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {boxes.dtype}")
    boxes = boxes.astype(np.result_type(boxes.dtype, np.float32), copy=False)
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    flat = (width <= 0) | (height <= 0) if positive else (width < 0) | (height < 0)
    bad = ~np.isfinite(boxes).all(axis=1) | flat
    if bad.any():
        row = int(np.argmax(bad))
        rule = "x2 > x1 and y2 > y1" if positive else "x2 >= x1 and y2 >= y1"
        raise ValueError(f"{name} must be finite with {rule}, got row {row}: {boxes[row].tolist()}")
    return boxes


def _fraction(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- training targets
def sample_proposals(
    proposals,
    gt_boxes,
    gt_labels,
    batch_size_per_image: int = 128,
    positive_fraction: float = 0.25,
    fg_iou: float = 0.5,
    bg_iou_high: float = 0.5,
    bg_iou_low: float = 0.0,
):
    """One image's RoI minibatch: (boxes (R, 4), labels (R,) int64, regression targets (R, 4)).

    proposals: (P, 4) xyxy; gt_boxes: (G, 4) xyxy with positive sizes; gt_labels: (G,) in 1..
    The ground-truth boxes join the proposals, so every object has a foreground RoI. A box is
    foreground when its highest IoU with a ground-truth box is >= ``fg_iou`` (label and target:
    that box, the first of equals), background when it is in [bg_iou_low, bg_iou_high) (label 0,
    target 0), ignored otherwise. At most ``batch_size_per_image * positive_fraction`` foreground
    boxes and then up to ``batch_size_per_image`` in all with background, each drawn without
    replacement from minivision's seeded generator; R <= batch_size_per_image, foreground first.
    Targets are ``BoxCoder((10, 10, 5, 5)).encode(gt box, RoI)``.
    """
    proposals = _boxes(proposals, "proposals")
    gt_boxes = _boxes(gt_boxes, "gt_boxes", positive=True)  # a target's dw, dh are logs of its size
    gt_labels = _host(gt_labels)
    if gt_labels.shape != (gt_boxes.shape[0],):
        raise ValueError(
            f"gt_labels must have shape ({gt_boxes.shape[0]},), one per row of gt_boxes, "
            f"got shape {tuple(gt_labels.shape)}"
        )
    if gt_labels.dtype.kind not in "iu":
        raise TypeError(
            f"gt_labels must hold integer classes 1..num_classes, got dtype {gt_labels.dtype}"
        )
    if (gt_labels < 1).any():
        raise ValueError(
            f"gt_labels must be >= 1 (0 is the background), got {gt_labels[gt_labels < 1][0]}"
        )
    batch_size_per_image = _positive_int(batch_size_per_image, "batch_size_per_image")
    positive_fraction = _fraction(positive_fraction, "positive_fraction")
    fg_iou, bg_iou_high, bg_iou_low = (
        _fraction(v, n)
        for v, n in ((fg_iou, "fg_iou"), (bg_iou_high, "bg_iou_high"), (bg_iou_low, "bg_iou_low"))
    )
    if fg_iou == 0:
        raise ValueError(
            "fg_iou must be in (0, 1] (at 0 a box that misses every object would be foreground), got 0"
        )
    if not bg_iou_low <= bg_iou_high <= fg_iou:
        raise ValueError(
            f"IoU bands must satisfy bg_iou_low <= bg_iou_high <= fg_iou (a box has one role), got "
            f"bg_iou_low={bg_iou_low}, bg_iou_high={bg_iou_high}, fg_iou={fg_iou}"
        )

    boxes = np.concatenate([proposals, gt_boxes.astype(proposals.dtype)])
    if gt_boxes.shape[0]:
        ious = box_iou(gt_boxes, boxes)  # (G, P + G)
        best, matched = ious.max(axis=0), ious.argmax(axis=0)
    else:  # no object: every box has IoU 0
        best, matched = np.zeros(len(boxes)), np.zeros(len(boxes), np.int64)
    foreground = np.flatnonzero(best >= fg_iou)
    background = np.flatnonzero((best < bg_iou_high) & (best >= bg_iou_low))
    rng = random_generator()
    num_fg = min(len(foreground), int(batch_size_per_image * positive_fraction))
    num_bg = min(len(background), batch_size_per_image - num_fg)
    fg = rng.choice(foreground, num_fg, replace=False)
    bg = rng.choice(background, num_bg, replace=False)

    keep = np.concatenate([fg, bg]).astype(np.int64)
    labels = np.concatenate([gt_labels[matched[fg]], np.zeros(num_bg, gt_labels.dtype)]).astype(
        np.int64
    )
    targets = np.zeros((len(keep), 4), boxes.dtype)
    if num_fg:  # foreground boxes overlap a ground-truth box, so their sizes are positive
        targets[:num_fg] = BOX_CODER.encode(gt_boxes[matched[fg]], boxes[fg])
    return boxes[keep], labels, targets


# --------------------------------------------------------------------------- the head
def fast_rcnn_loss(
    class_logits, box_deltas, labels, regression_targets, beta: float = BETA
) -> Tensor:
    """Classification plus box regression loss of R sampled RoIs, a scalar Tensor.

    class_logits: (R, num_classes + 1); box_deltas: (R, 4 (num_classes + 1)); labels: (R,)
    int in 0..num_classes; regression_targets: (R, 4). Cross-entropy averaged over the R RoIs,
    plus the smooth L1 loss (``beta``; torchvision's 1/9 by default) of each foreground RoI's
    deltas for its own class, summed and divided by R (background RoIs have no box to regress).
    """
    labels = _host(labels)
    if class_logits.ndim != 2 or class_logits.shape[1] < 2:
        raise ValueError(
            f"class_logits must have shape (R, num_classes + 1) with num_classes >= 1, "
            f"got shape {tuple(class_logits.shape)}"
        )
    count, classes = class_logits.shape
    if count == 0:
        raise ValueError(
            "class_logits must hold at least one RoI, got shape (0, ...); sample some RoIs first"
        )
    if tuple(box_deltas.shape) != (count, 4 * classes):
        raise ValueError(
            f"box_deltas must have shape ({count}, {4 * classes}), 4 per class of class_logits, "
            f"got shape {tuple(box_deltas.shape)}"
        )
    if labels.shape != (count,):
        raise ValueError(
            f"labels must have shape ({count},), one per RoI, got shape {tuple(labels.shape)}"
        )
    if tuple(regression_targets.shape) != (count, 4):
        raise ValueError(
            f"regression_targets must have shape ({count}, 4), got shape "
            f"{tuple(regression_targets.shape)}"
        )
    xp = get_array_module(class_logits.data)  # labels and targets move to the outputs' device
    classification = F.cross_entropy(
        class_logits, xp.asarray(labels)
    )  # checks labels' dtype and range
    foreground = np.flatnonzero(labels > 0)
    own = box_deltas.reshape(count, classes, 4)[
        xp.asarray(foreground), xp.asarray(labels[foreground])
    ]  # (R_fg, 4)
    targets = xp.asarray(_host(regression_targets)[foreground].astype(own.dtype))
    box_loss = F.smooth_l1_loss(own, targets, reduction="sum", beta=beta)
    return classification + box_loss / count


class FastRCNNHead(nn.Module):
    """RoI pooling, two fully connected layers and the two sibling outputs of Fast R-CNN.

    ``forward(features (N, in_channels, H, W), rois)`` -> (class_logits (R, num_classes + 1),
    box_deltas (R, 4 (num_classes + 1))), rois a (R, 5) array of (batch index, x1, y1, x2, y2)
    in image pixels or a list of per-image (L, 4) boxes (``roi_pool``'s forms).
    ``hidden``: the fully connected layers' width (4096 in the paper).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden: int = 4096,
        output_size: int = 7,
        spatial_scale: float = 1.0 / 16,
        dropout: float = 0.0,
    ):
        super().__init__()
        for value, name in (
            (in_channels, "in_channels"),
            (num_classes, "num_classes"),
            (hidden, "hidden"),
            (output_size, "output_size"),
        ):
            _positive_int(value, name)
        if (
            isinstance(spatial_scale, bool)
            or not isinstance(spatial_scale, numbers.Real)
            or not (math.isfinite(spatial_scale) and spatial_scale > 0)
        ):
            raise ValueError(
                f"spatial_scale must be a positive finite number, got {spatial_scale!r}"
            )
        _fraction(dropout, "dropout")
        self.config = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "hidden": hidden,
            "output_size": output_size,
            "spatial_scale": spatial_scale,
            "dropout": dropout,
        }
        self.fc6 = nn.Linear(in_channels * output_size * output_size, hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.cls_score = nn.Linear(hidden, num_classes + 1)
        self.bbox_pred = nn.Linear(hidden, 4 * (num_classes + 1))
        # The paper's initialisation of the two outputs: zero-mean Gaussians of std 0.01 and
        # 0.001, zero biases, so training starts from uniform scores and near-zero deltas.
        for layer, std in ((self.cls_score, 0.01), (self.bbox_pred, 0.001)):
            init.normal_(layer.weight, 0.0, std)
            init.zeros_(layer.bias)

    def forward(self, features, rois) -> tuple[Tensor, Tensor]:
        channels = self.config["in_channels"]
        if len(features.shape) != 4 or features.shape[1] != channels:
            raise ValueError(
                f"features must have shape (N, {channels}, H, W), got {tuple(features.shape)}"
            )
        xp = get_array_module(features.data)  # boxes sampled on the host go to the features' device
        if isinstance(rois, (list, tuple)):
            rois = [xp.asarray(_host(boxes)) for boxes in rois]
        else:
            rois = xp.asarray(_host(rois))
        pooled = roi_pool(features, rois, self.config["output_size"], self.config["spatial_scale"])
        x = pooled.reshape(pooled.shape[0], -1)
        p = self.config["dropout"]
        for fc in (self.fc6, self.fc7):
            x = F.dropout(F.relu(fc(x)), p, self.training) if p else F.relu(fc(x))
        return self.cls_score(x), self.bbox_pred(x)

    def loss(self, features, rois, labels, regression_targets, beta: float = BETA) -> Tensor:
        """``fast_rcnn_loss`` of this head's outputs on sampled RoIs (``sample_proposals``' labels and targets)."""
        class_logits, box_deltas = self(features, rois)
        return fast_rcnn_loss(class_logits, box_deltas, labels, regression_targets, beta)


# --------------------------------------------------------------------------- detections
def _image_hw(image_size) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, numbers.Real) else tuple(image_size)
    if len(size) != 2 or not all(
        isinstance(s, numbers.Real) and not isinstance(s, bool) and s > 0 for s in size
    ):
        raise ValueError(
            f"image_size must be a positive number or (height, width), got {image_size!r}"
        )
    return float(size[0]), float(size[1])


def postprocess_detections(
    class_logits,
    box_deltas,
    proposals,
    image_size,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    min_size: float = 1e-2,
) -> dict:
    """One image's detections from the head's outputs, in ``predict``'s format.

    class_logits: (R, num_classes + 1); box_deltas: (R, 4 (num_classes + 1)); proposals: (R, 4)
    xyxy with positive sizes; image_size: (height, width) or one number. Each RoI gives one box
    per object class (softmax score, its own deltas decoded against the RoI, clipped to the
    image); boxes scoring <= ``score_thresh`` or narrower or shorter than ``min_size`` go, then
    per-class NMS, then the ``detections_per_img`` best. Returns NumPy ``boxes`` (K, 4) float32,
    ``labels`` (K,) int64 in 1..num_classes, ``scores`` (K,) float32, by decreasing score.
    """
    logits, deltas = _host(class_logits).astype(np.float64), _host(box_deltas).astype(np.float64)
    proposals = _boxes(
        proposals, "proposals", positive=True
    )  # the deltas are relative to their size
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(
            f"class_logits must have shape (R, num_classes + 1) with num_classes >= 1, "
            f"got shape {logits.shape}"
        )
    count, classes = logits.shape
    if deltas.shape != (count, 4 * classes):
        raise ValueError(
            f"box_deltas must have shape ({count}, {4 * classes}), 4 per class of class_logits, "
            f"got shape {deltas.shape}"
        )
    if proposals.shape[0] != count:
        raise ValueError(
            f"proposals must have one row per row of class_logits: expected ({count}, 4), "
            f"got {proposals.shape}"
        )
    height, width = _image_hw(image_size)
    score_thresh, nms_thresh = (
        _fraction(score_thresh, "score_thresh"),
        _fraction(nms_thresh, "nms_thresh"),
    )
    if isinstance(min_size, bool) or not isinstance(min_size, numbers.Real) or not min_size >= 0:
        raise ValueError(f"min_size must be a number >= 0, got {min_size!r}")
    detections_per_img = _positive_int(detections_per_img, "detections_per_img")

    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))  # a stable softmax
    scores = (shifted / shifted.sum(axis=1, keepdims=True))[:, 1:]  # background dropped
    references = np.repeat(proposals.astype(np.float64), classes - 1, axis=0)
    boxes = BOX_CODER.decode(deltas.reshape(count, classes, 4)[:, 1:].reshape(-1, 4), references)
    boxes = np.clip(boxes, 0, [width, height, width, height])
    labels = np.tile(np.arange(1, classes), count)
    scores = scores.reshape(-1)
    keep = (
        (scores > score_thresh)
        & (boxes[:, 2] - boxes[:, 0] >= min_size)
        & (boxes[:, 3] - boxes[:, 1] >= min_size)
    )
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_img]
    return {
        "boxes": boxes[keep].astype(np.float32),
        "labels": labels[keep].astype(np.int64),
        "scores": scores[keep].astype(np.float32),
    }
