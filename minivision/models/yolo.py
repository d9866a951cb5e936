"""YOLO v1 (Redmon et al., "You Only Look Once", 2016): detection as one regression.

    image (N, 3, 448, 448) -> 24 conv layers (the paper's Figure 3) -> (N, 1024, 7, 7)
        -> fc 4096 -> dropout 0.5 -> fc S*S*(5B + C) -> (N, S, S, 5B + C) = (N, 7, 7, 30)

The image is cut into an S x S grid. Each cell predicts B boxes, each (x, y, w, h,
confidence), and one set of C class probabilities Pr(class | object). x, y are the box
centre's offset inside its cell and w, h are fractions of the image, all in [0, 1];
confidence stands for Pr(object) * IoU(prediction, truth).

Variants: "full" (24 conv layers, Figure 3), "fast" (Fast YOLO: 9 conv layers; the paper
gives no table, so the filters are those of darknet's v1 tiny configuration), and "tiny"
(ours, for 64x64 Shapes on 2 CPU cores: 5 conv layers with batch norm, S = image_size / 16
and a 1x1 convolution per cell in place of the fully connected layers, because weights
shared across cells learn from a few thousand images where a fully connected head cannot).
Every layer but the last is followed by a leaky ReLU of slope 0.1. The paper's last layer is
linear; here x, y, w, h and the confidence pass through a sigmoid and the class scores
through a softmax, so the square root of w and h always exists and every output lies where
its target does.
"""

from __future__ import annotations

import numpy as np

import minivision as mv
from minivision import functional as F
from minivision import nn
from minivision.backend import get_array_module
from minivision.models._conv_stack import conv_stack
from minivision.ops import batched_nms, matched_box_iou

# The paper's Figure 3, row by row: (kernel, filters, stride) for a convolution, "M" for a
# 2x2 max pool of stride 2. 3x3 and 7x7 convolutions are padded to keep sizes ("same").
FULL = [
    (7, 64, 2),
    "M",
    (3, 192, 1),
    "M",
    (1, 128, 1),
    (3, 256, 1),
    (1, 256, 1),
    (3, 512, 1),
    "M",
    *[(1, 256, 1), (3, 512, 1)] * 4,
    (1, 512, 1),
    (3, 1024, 1),
    "M",
    *[(1, 512, 1), (3, 1024, 1)] * 2,
    (3, 1024, 1),
    (3, 1024, 2),
    (3, 1024, 1),
    (3, 1024, 1),
]
FAST = [
    (3, 16, 1),
    "M",
    (3, 32, 1),
    "M",
    (3, 64, 1),
    "M",
    (3, 128, 1),
    "M",
    (3, 256, 1),
    "M",
    (3, 512, 1),
    "M",
    (3, 1024, 1),
    (3, 1024, 1),
    (3, 1024, 1),
]
TINY = [(3, 16, 1), "M", (3, 32, 1), "M", (3, 64, 1), "M", (3, 128, 1), "M", (3, 128, 1)]

VARIANTS = {"full": FULL, "fast": FAST, "tiny": TINY}
HIDDEN = 4096  # the first fully connected layer of "full" and "fast"


# --------------------------------------------------------------------------- the loss
def encode_targets(targets, S: int, image_size: int):
    """Ground truth on the grid, NumPy arrays: ``has_object`` (N, S, S) bool, ``boxes`` (N, S, S, 4)
    as (x, y, w, h) in the paper's units, ``labels`` (N, S, S) 0-based, ``corners`` (N, S, S, 4) xyxy pixels.

    A cell holds the object whose centre falls in it. The grid has room for one object per
    cell; when two centres share a cell the larger object is kept.
    """
    n, cell = len(targets), image_size / S
    has_object = np.zeros((n, S, S), bool)
    boxes, corners = np.zeros((n, S, S, 4)), np.zeros((n, S, S, 4))
    labels, areas = np.zeros((n, S, S), np.int64), np.zeros((n, S, S))
    for k, target in enumerate(targets):
        for (x1, y1, x2, y2), label in zip(
            np.asarray(target["boxes"], np.float64).reshape(-1, 4), target["labels"]
        ):
            cx, cy, area = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * (y2 - y1)
            i, j = min(int(cy // cell), S - 1), min(int(cx // cell), S - 1)
            if has_object[k, i, j] and areas[k, i, j] >= area:
                continue
            has_object[k, i, j], areas[k, i, j], labels[k, i, j] = True, area, int(label) - 1
            boxes[k, i, j] = [
                cx / cell - j,
                cy / cell - i,
                (x2 - x1) / image_size,
                (y2 - y1) / image_size,
            ]
            corners[k, i, j] = [x1, y1, x2, y2]
    return has_object, boxes, labels, corners


def predicted_corners(boxes, image_size: int):
    """(N, S, S, B, 4) predicted (x, y, w, h) -> the same boxes as xyxy pixels (NumPy or CuPy)."""
    xp = get_array_module(boxes)
    S = boxes.shape[1]
    cell = image_size / S
    cols, rows = xp.meshgrid(xp.arange(S), xp.arange(S))
    cx = (cols[None, :, :, None] + boxes[..., 0]) * cell
    cy = (rows[None, :, :, None] + boxes[..., 1]) * cell
    w, h = boxes[..., 2] * image_size, boxes[..., 3] * image_size
    return xp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def responsible_predictors(preds, has_object: np.ndarray, corners: np.ndarray, image_size: int):
    """Which predictor answers for each object, and its IoU: (N, S, S, B) bool and float64
    arrays on ``preds``' device, from predictions (N, S, S, B, 5) and ``encode_targets``' grid.

    Among the B predictors of the cell holding an object, the one whose box has the highest IoU
    with it: the K objects' K * B IoUs in one ``matched_box_iou`` call, with no copy to the host.
    """
    xp = get_array_module(preds)
    n, S, _, B, _ = preds.shape
    cells = np.nonzero(
        has_object
    )  # integer indices: a boolean mask would cost CuPy a copy to the host each use
    guesses = predicted_corners(preds[..., :4].astype(xp.float64), image_size)[cells]  # (K, B, 4)
    objects = xp.asarray(corners[cells])  # (K, 4)
    own = matched_box_iou(guesses.reshape(-1, 4), xp.repeat(objects, B, axis=0)).reshape(
        -1, B
    )  # (K, B)
    ious, responsible = xp.zeros((n, S, S, B)), xp.zeros((n, S, S, B), bool)
    ious[cells] = own
    responsible[cells] = xp.eye(B, dtype=bool)[own.argmax(axis=-1)]
    return responsible, ious


def yolo_loss(
    output, targets, B: int, image_size: int, lambda_coord: float = 5.0, lambda_noobj: float = 0.5
) -> mv.Tensor:
    """The paper's sum-squared error (its equation 3), summed over the grid, averaged over images.

    output: (N, S, S, 5B + C), each cell's B predictors (x, y, w, h, confidence) then C class
    probabilities. targets: N ``minivision.data`` target dicts (boxes xyxy pixels, labels 1..C).
    The predictor responsible for an object is, among the B of the cell holding its centre,
    the one whose box has the highest IoU with it; its confidence target is that IoU. Every
    other predictor's confidence target is 0 (weighted by ``lambda_noobj``).
    """
    n, S = output.shape[0], output.shape[1]
    has_object, goal, labels, corners = encode_targets(targets, S, image_size)
    preds = output[..., : 5 * B].reshape(n, S, S, B, 5)
    probs = output[..., 5 * B :]
    responsible, ious = responsible_predictors(
        preds.data, has_object, corners, image_size
    )  # no gradient here

    const = lambda a: mv.tensor(a, dtype=output.dtype, device=output.device)  # noqa: E731
    obj, noobj = const(responsible), const(~responsible)
    goal_b = const(np.broadcast_to(goal[:, :, :, None, :], (n, S, S, B, 4)))
    x, y, w, h, confidence = (preds[..., c] for c in range(5))
    coord = ((x - goal_b[..., 0]) ** 2 + (y - goal_b[..., 1]) ** 2) * obj
    size = (
        (mv.sqrt(w.clip(1e-12)) - mv.sqrt(goal_b[..., 2])) ** 2
        + (mv.sqrt(h.clip(1e-12)) - mv.sqrt(goal_b[..., 3])) ** 2
    ) * obj
    conf_obj = (confidence - const(ious)) ** 2 * obj
    conf_noobj = confidence**2 * noobj
    one_hot = np.eye(probs.shape[-1])[labels] * has_object[..., None]
    classes = ((probs - const(one_hot)) ** 2) * const(has_object[..., None])
    total = (
        lambda_coord * (coord.sum() + size.sum())
        + conf_obj.sum()
        + lambda_noobj * conf_noobj.sum()
        + classes.sum()
    )
    return total / n


# --------------------------------------------------------------------------- decoding
def decode(
    output: np.ndarray,
    B: int,
    image_size: int,
    score_threshold: float = 0.01,
    iou_threshold: float = 0.5,
) -> list[dict]:
    """Detections from outputs (N, S, S, 5B + C): one dict per image (``predict``'s format).

    Each predictor's box gets a class-specific score confidence * Pr(class | object) for every
    class; scores at or below ``score_threshold`` are dropped, then per-class ``batched_nms``.
    """
    n, S, C = output.shape[0], output.shape[1], output.shape[-1] - 5 * B
    preds = output[..., : 5 * B].reshape(n, S, S, B, 5).astype(np.float64)
    boxes = np.clip(predicted_corners(preds[..., :4], image_size), 0, image_size).reshape(n, -1, 4)
    scores = (preds[..., 4:5] * output[:, :, :, None, 5 * B :]).reshape(n, -1, C)  # (N, S*S*B, C)
    results = []
    for k in range(n):
        box_index, label = np.nonzero(scores[k] > score_threshold)
        kept_boxes, kept_scores = boxes[k][box_index], scores[k][box_index, label]
        keep = batched_nms(kept_boxes, kept_scores, label, iou_threshold)
        results.append(
            {
                "boxes": kept_boxes[keep].astype(np.float32),
                "labels": label[keep] + 1,
                "scores": kept_scores[keep].astype(np.float32),
            }
        )
    return results


class YOLOv1(nn.Module):
    """YOLO v1: one network from the image to an S x S grid of boxes and class probabilities.

    ``forward`` maps (N, 3, image_size, image_size) to (N, S, S, 5B + num_classes).
    """

    task = "detection"

    def __init__(
        self,
        variant: str = "full",
        S: int = 7,
        B: int = 2,
        num_classes: int = 20,
        image_size: int = 448,
        in_channels: int = 3,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        self.config = {
            "variant": variant,
            "S": S,
            "B": B,
            "num_classes": num_classes,
            "image_size": image_size,
            "in_channels": in_channels,
        }
        self.backbone, channels, stride = conv_stack(
            VARIANTS[variant], in_channels, variant == "tiny", lambda: nn.LeakyReLU(0.1)
        )
        grid = image_size // stride
        if image_size % stride or grid < 1:
            raise ValueError(
                f"YOLOv1({variant!r}) downsamples by {stride}: image_size must be a positive multiple of "
                f"{stride}, got {image_size}"
            )
        outputs = 5 * B + num_classes
        if variant == "tiny":
            if grid != S:
                raise ValueError(
                    f"YOLOv1('tiny') gives a {grid}x{grid} grid for {image_size}x{image_size} images, "
                    f"so S must be {grid} (image_size = {stride} * S), got S={S}"
                )
            self.head = nn.Conv2d(channels, outputs, 1)
        else:
            self.head = nn.Sequential(
                nn.Flatten(),
                nn.Linear(channels * grid * grid, HIDDEN),
                nn.LeakyReLU(0.1),
                nn.Dropout(0.5),
                nn.Linear(HIDDEN, S * S * outputs),
            )

    @classmethod
    def tiny(cls, num_classes: int, image_size: int = 64) -> "YOLOv1":
        """The configuration trained on synthetic data: a (image_size / 16)-cell grid, 2 boxes per cell."""
        return cls("tiny", S=image_size // 16, B=2, num_classes=num_classes, image_size=image_size)

    def _check_input(self, images) -> None:
        size, channels = self.config["image_size"], self.config["in_channels"]
        if (
            len(images.shape) != 4
            or images.shape[1] != channels
            or tuple(images.shape[2:]) != (size, size)
        ):
            raise ValueError(
                f"YOLOv1({self.config['variant']!r}) takes images of shape (N, {channels}, {size}, {size}) "
                f"(its grid fixes the size; build it with image_size=... for another), "
                f"got {tuple(images.shape)}"
            )

    def forward(self, images) -> mv.Tensor:
        self._check_input(images)
        S, B = self.config["S"], self.config["B"]
        raw = self.head(self.backbone(images))
        raw = raw.permute(0, 2, 3, 1) if raw.ndim == 4 else raw.reshape(raw.shape[0], S, S, -1)
        boxes = F.sigmoid(raw[..., : 5 * B])
        return mv.cat([boxes, F.softmax(raw[..., 5 * B :], dim=-1)], dim=-1)

    def loss(self, images, targets) -> mv.Tensor:
        """``yolo_loss`` of this model's output (λ_coord = 5, λ_noobj = 0.5)."""
        return yolo_loss(self(images), targets, self.config["B"], self.config["image_size"])

    def predict(
        self, images, score_threshold: float = 0.01, iou_threshold: float = 0.5
    ) -> list[dict]:
        """Boxes (K, 4) xyxy pixels, labels 1..num_classes and class-specific scores, after NMS."""
        with mv.no_grad():
            output = self(images).numpy()
        return decode(
            output, self.config["B"], self.config["image_size"], score_threshold, iou_threshold
        )
