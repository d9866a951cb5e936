"""OverFeat (Sermanet et al., 2014): one ConvNet for classification, localization and detection.

    image (N, 3, 231, 231) -> layers 1-5 (conv, ReLU, max pool) -> pool5 (N, 1024, 6, 6)
        -> classifier: fc6, fc7, fc8 as convolutions (6x6, then 1x1, 1x1)  -> (N, C, 1, 1) scores
        -> regressor:  fc 4096, fc 1024, fc 4C as convolutions              -> (N, 4C, 1, 1) boxes

The fully connected layers are convolutions, so a larger image gives a spatial map of
scores and boxes: one per window of the training size, the sliding window computed once.
Layer tables (kernel, filters, stride, padding, max pool after it):

fast (Table 1, 231x231):       accurate (Table 3, 221x221):
  1  11x11  96 /4 pad 0, pool 2  1  7x7   96 /2 pad 0, pool 3
  2  5x5   256 /1 pad 0, pool 2  2  7x7  256 /1 pad 0, pool 2
  3  3x3   512 /1 pad 1          3  3x3  512 /1 pad 1
  4  3x3  1024 /1 pad 1          4  3x3  512 /1 pad 1
  5  3x3  1024 /1 pad 1, pool 2  5  3x3 1024 /1 pad 1
  6  fc 3072 (6x6 conv)          6  3x3 1024 /1 pad 1, pool 3
  7  fc 4096                     7  fc 4096 (5x5 conv)
  8  fc C                        8  fc 4096, 9 fc C

(Table 1 lists 24x24 as layer 2's input size; 231 -> 56 -> pool 28 -> conv 24: the table
gives layer 2's conv output there.) Dropout 0.5 follows the two hidden fc layers. The
regressor (§4.2) reads pool5 too, with hidden layers of 4096 and 1024 and 4 outputs per class.

Boxes: each window regresses (dx, dy, w, h) in units of the window size W (the smallest
valid input): centre = window centre + (dx, dy) * W, size = (w, h) * W. Multi-scale dense
evaluation (§3.3) replaces the last pool by offset max pooling: a k x k pool at every offset
in {0..k-1}^2, the classifier applied to each, the outputs interleaved into one map (Table 5).

"tiny" (ours): four 3x3 conv layers with batch norm, pool 2 after each, at 64x64 gives a
4x4 pool5; the classifier and regressor are a 2x2 window (32x32 input windows, stride 16)
and a 1x1 layer. It trains for localization (one class and one box per image): the class
score is the spatial maximum of the score map (the paper's classification rule), every
window regresses the object's box, and ``predict`` merges the windows' boxes (§4.3).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import minivision as mv
from minivision import functional as F
from minivision import nn
from minivision.models.localizer import largest_object

# (filters, kernel, stride, padding, pool after it or None); the last row's pool is pool5
VARIANTS = {
    "fast": {
        "input": 231,
        "window": 6,
        "classifier": (3072, 4096),
        "dropout": 0.5,
        "batch_norm": False,
        "layers": [
            (96, 11, 4, 0, 2),
            (256, 5, 1, 0, 2),
            (512, 3, 1, 1, None),
            (1024, 3, 1, 1, None),
            (1024, 3, 1, 1, 2),
        ],
    },
    "accurate": {
        "input": 221,
        "window": 5,
        "classifier": (4096, 4096),
        "dropout": 0.5,
        "batch_norm": False,
        "layers": [
            (96, 7, 2, 0, 3),
            (256, 7, 1, 0, 2),
            (512, 3, 1, 1, None),
            (512, 3, 1, 1, None),
            (1024, 3, 1, 1, None),
            (1024, 3, 1, 1, 3),
        ],
    },
    "tiny": {
        "input": 32,
        "window": 2,
        "classifier": (256,),
        "dropout": 0.0,
        "batch_norm": True,
        "layers": [(16, 3, 1, 1, 2), (32, 3, 1, 1, 2), (64, 3, 1, 1, 2), (128, 3, 1, 1, 2)],
    },
}
REGRESSOR = {"fast": (4096, 1024), "accurate": (4096, 1024), "tiny": (256,)}


class MapSizes(NamedTuple):
    """Spatial sizes (h, w) along the network for one input size (the columns of Table 5)."""

    pre_pool: tuple  # layer 5 (last conv) output, before pool5
    post_pool: tuple  # pool5 output, per offset when offset pooling
    classifier: tuple  # classifier map, per offset (Table 5's "pre-reshape")
    interleaved: tuple  # classifier map after interleaving the k x k offsets


# --------------------------------------------------------------------------- geometry
def map_sizes(variant: str, height: int, width: int) -> MapSizes:
    """Table 5's sizes for ``variant`` on a height x width input, by the layer arithmetic alone."""
    spec = VARIANTS[variant]
    size = np.array([height, width])
    for k, (_, kernel, stride, padding, pool) in enumerate(spec["layers"]):
        size = (size + 2 * padding - kernel) // stride + 1
        if pool and k < len(spec["layers"]) - 1:
            size = size // pool
    pool = spec["layers"][-1][4]
    post = (size - pool + 1) // pool  # every offset cropped alike, as offset_max_pool does
    classifier = post - spec["window"] + 1
    return MapSizes(
        tuple(int(v) for v in size),
        tuple(int(v) for v in post),
        tuple(int(v) for v in classifier),
        tuple(int(v) * pool for v in classifier),
    )


def smallest_input(variant: str, dense: bool = False) -> int:
    """The smallest square input giving a 1x1 score map: the window size W. With ``dense``,
    the smallest that offset pooling at every offset accepts (Table 5 starts above it)."""
    spec, size = VARIANTS[variant], 1
    while True:
        sizes = map_sizes(variant, size, size)
        plain = max(sizes.pre_pool[0], 0) // spec["layers"][-1][4] - spec["window"] + 1
        if (sizes.classifier[0] if dense else plain) >= 1:
            return size
        size += 1


# --------------------------------------------------------------------------- offset pooling
def offset_max_pool(x, kernel: int):
    """k x k max pooling (stride k) at every offset (dy, dx) in {0..k-1}^2, offsets in the batch.

    x (N, C, H, W) -> (N * k * k, C, h, w), sample n * k * k + dy * k + dx pooled from
    x[n, :, dy:, dx:]; every offset is cropped to the size of the last, h = (H - k + 1) // k.
    """
    n, c, height, width = x.shape
    h, w = (height - kernel + 1) // kernel, (width - kernel + 1) // kernel
    if min(h, w) < 1:
        raise ValueError(
            f"offset_max_pool: a {kernel}x{kernel} pool at offsets up to {kernel - 1} needs at least "
            f"{2 * kernel - 1}x{2 * kernel - 1} inputs, got {height}x{width}"
        )
    pooled = [
        F.max_pool2d(x[:, :, dy : dy + h * kernel, dx : dx + w * kernel], kernel)
        for dy in range(kernel)
        for dx in range(kernel)
    ]
    return mv.stack(pooled, dim=1).reshape(n * kernel * kernel, c, h, w)


def interleave_offsets(y, kernel: int):
    """Inverse bookkeeping of ``offset_max_pool``: (N * k * k, C, h, w) -> (N, C, h * k, w * k),
    out[n, :, i * k + dy, j * k + dx] = y[n * k * k + dy * k + dx, :, i, j]."""
    nkk, c, h, w = y.shape
    n = nkk // (kernel * kernel)
    grid = y.reshape(n, kernel, kernel, c, h, w).permute(0, 3, 4, 1, 5, 2)  # (n, c, i, dy, j, dx)
    return grid.reshape(n, c, h * kernel, w * kernel)


# --------------------------------------------------------------------------- the network
def _fc_as_conv(channels: int, widths, window: int, outputs: int, dropout: float) -> nn.Sequential:
    """Fully connected layers as convolutions: a window x window one, then 1x1 ones."""
    layers = []
    for k, width in enumerate(widths):
        layers += [nn.Conv2d(channels, width, window if k == 0 else 1), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        channels = width
    layers.append(nn.Conv2d(channels, outputs, window if not widths else 1))
    return nn.Sequential(*layers)


class OverFeat(nn.Module):
    """OverFeat's fast, accurate or tiny network: score map (N, C, h, w), box map (N, 4C, h, w)."""

    task = "detection"

    def __init__(
        self,
        variant: str = "fast",
        num_classes: int = 1000,
        in_channels: int = 3,
        image_size=None,
        merge_threshold: float = 0.6,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        spec = VARIANTS[variant]
        image_size = spec["input"] if image_size is None else image_size
        self.config = {
            "variant": variant,
            "num_classes": num_classes,
            "in_channels": in_channels,
            "image_size": image_size,
            "merge_threshold": merge_threshold,
        }
        layers, channels, last = [], in_channels, len(spec["layers"]) - 1
        for k, (filters, kernel, stride, padding, pool) in enumerate(spec["layers"]):
            layers.append(
                nn.Conv2d(channels, filters, kernel, stride, padding, bias=not spec["batch_norm"])
            )
            layers += [nn.BatchNorm2d(filters)] if spec["batch_norm"] else []
            layers.append(nn.ReLU())
            if (
                pool and k < last
            ):  # pool5 is kept apart: dense evaluation replaces it by offset pooling
                layers.append(nn.MaxPool2d(pool))
            channels = filters
        self.features = nn.Sequential(*layers)
        self.pool5 = nn.MaxPool2d(spec["layers"][-1][4])
        self.classifier = _fc_as_conv(
            channels, spec["classifier"], spec["window"], num_classes, spec["dropout"]
        )
        self.regressor = _fc_as_conv(
            channels, REGRESSOR[variant], spec["window"], 4 * num_classes, spec["dropout"]
        )
        self.window, self.dense_window = (
            smallest_input(variant),
            smallest_input(variant, dense=True),
        )
        if image_size < self.window:
            raise ValueError(
                f"OverFeat({variant!r}): image_size must be at least {self.window}, got {image_size}"
            )

    @classmethod
    def tiny(cls, num_classes: int, image_size: int = 64) -> "OverFeat":
        """The configuration trained on synthetic data (localization, one object per image)."""
        return cls("tiny", num_classes, image_size=image_size)

    def _check_input(self, images, dense: bool = False) -> None:
        channels, smallest = self.config["in_channels"], self.dense_window if dense else self.window
        if len(images.shape) != 4 or images.shape[1] != channels:
            raise ValueError(
                f"OverFeat takes images of shape (N, {channels}, H, W), got {tuple(images.shape)}"
            )
        if min(images.shape[2:]) < smallest:
            what = "dense (offset-pooled) evaluation" if dense else "one window"
            raise ValueError(
                f"OverFeat({self.config['variant']!r}) needs images of at least {smallest}x{smallest} "
                f"for {what}, got {images.shape[2]}x{images.shape[3]}"
            )

    # ----------------------------------------------------------------- forward passes
    def forward(self, images):
        """(N, 3, H, W) -> (scores (N, C, h, w), boxes (N, 4C, h, w)); 1x1 maps at the window size."""
        self._check_input(images)
        pooled = self.pool5(self.features(images))
        return self.classifier(pooled), self.regressor(pooled)

    def dense(self, images):
        """Offset-pooled forward (§3.3): maps with k x k times more positions, stride W-step / k."""
        self._check_input(images, dense=True)
        kernel = self.pool5.kernel_size
        pooled = offset_max_pool(self.features(images), kernel)
        return interleave_offsets(self.classifier(pooled), kernel), interleave_offsets(
            self.regressor(pooled), kernel
        )

    def window_boxes(self, boxes: np.ndarray, step: float) -> np.ndarray:
        """Box map (N, 4C, h, w) of (dx, dy, w, h) per window -> xyxy pixels (N, C, h, w, 4), for
        windows whose top-left corners sit ``step`` pixels apart."""
        n, _, h, w = boxes.shape
        d = boxes.reshape(n, -1, 4, h, w).transpose(0, 1, 3, 4, 2).astype(np.float64)
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        cx = cols * step + self.window / 2 + d[..., 0] * self.window
        cy = rows * step + self.window / 2 + d[..., 1] * self.window
        # |w|, |h|: a linear output can be negative early in training
        half_w, half_h = np.abs(d[..., 2]) * self.window / 2, np.abs(d[..., 3]) * self.window / 2
        return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)

    def stride(self) -> int:
        """Pixels between neighbouring windows of the plain score map."""
        total = 1
        for _, _, stride, _, pool in VARIANTS[self.config["variant"]]["layers"]:
            total *= stride * (pool or 1)
        return total

    def multiscale(self, images, scales=(1.0,)) -> list[tuple[np.ndarray, np.ndarray]]:
        """Dense evaluation at each scale: per scale (class probabilities (N, C, h, w), boxes
        (N, C, h, w, 4) xyxy in the pixels of ``images``). Images are resized bilinearly."""
        results = []
        with mv.no_grad():
            for scale in scales:
                size = [max(self.dense_window, int(round(n * scale))) for n in images.shape[2:]]
                resized = (
                    images
                    if list(images.shape[2:]) == size
                    else F.interpolate(images, size=size, mode="bilinear")
                )
                scores, boxes = self.dense(resized)
                corners = self.window_boxes(boxes.numpy(), self.stride() / self.pool5.kernel_size)
                factor = np.array([images.shape[3] / size[1], images.shape[2] / size[0]] * 2)
                results.append((F.softmax(scores, dim=1).numpy(), corners * factor))
        return results

    # ----------------------------------------------------------------- the model protocol
    def loss(self, images, targets) -> mv.Tensor:
        """Localization training: cross-entropy on the spatial maximum of each class's score
        map, plus smooth L1 on the true class's box at every window."""
        scores, boxes = self(images)
        n, _, h, w = boxes.shape
        goals, labels = [], []
        for target in targets:
            box, label = largest_object(target)
            labels.append(label - 1)
            goals.append(box)
        labels = np.asarray(labels, dtype=np.int64)
        # the target (dx, dy, w, h) of every window, in units of the window size
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        x1, y1, x2, y2 = (np.asarray(goals)[:, k, None, None] for k in range(4))
        centre_x, centre_y = (
            cols * self.stride() + self.window / 2,
            rows * self.stride() + self.window / 2,
        )
        goal = np.stack(
            [
                ((x1 + x2) / 2 - centre_x) / self.window,
                ((y1 + y2) / 2 - centre_y) / self.window,
                np.broadcast_to((x2 - x1) / self.window, (n, h, w)),
                np.broadcast_to((y2 - y1) / self.window, (n, h, w)),
            ],
            axis=1,
        )
        own = boxes.reshape(n, -1, 4, h, w)[
            np.arange(n), labels
        ]  # (N, 4, h, w): the true class's box
        goal = mv.tensor(goal.astype(own.dtype), device=own.device)
        label_tensor = mv.tensor(labels, device=scores.device)
        return F.cross_entropy(scores.max(dim=(2, 3)), label_tensor) + 5.0 * F.smooth_l1_loss(
            own, goal, beta=0.05
        )

    def predict(self, images, scales=(1.0,)) -> list[dict]:
        """One detection per image: the top class over all windows and scales, its boxes merged
        greedily (§4.3); the merged box with the largest summed probability is the answer."""
        maps = self.multiscale(images, scales)
        results = []
        for k in range(images.shape[0]):
            best = np.max(
                [probs[k].reshape(probs.shape[1], -1).max(axis=1) for probs, _ in maps], axis=0
            )
            label = int(best.argmax())
            boxes = np.concatenate([corners[k, label].reshape(-1, 4) for _, corners in maps])
            scores = np.concatenate([probs[k, label].ravel() for probs, _ in maps])
            merged, merged_scores = merge_boxes(boxes, scores, self.config["merge_threshold"])
            results.append(
                {
                    "boxes": merged[:1].astype(np.float32),
                    "labels": np.array([label + 1]),
                    "scores": np.array([best[label]], dtype=np.float32),
                }
            )
        return results


# --------------------------------------------------------------------------- box merging (§4.3)
def match_score(a: np.ndarray, b: np.ndarray) -> float:
    """How far apart two xyxy boxes are (0 for equal boxes; lower merges first).

    The paper's "sum of the distance between centres and the intersection area" made
    scale-free: centre distance / sqrt(smaller area) + (1 - intersection / smaller area).
    """
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    if smaller <= 0:
        return np.inf
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    distance = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)
    return float(distance / np.sqrt(smaller) + 1 - inter_w * inter_h / smaller)


def merge_boxes(boxes, scores, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy merging (§4.3): while the best-matching pair scores at most ``threshold``,
    replace it by the average of its coordinates, with the sum of its scores.

    boxes (K, 4) xyxy, scores (K,) -> (merged boxes (M, 4), summed scores (M,)), by decreasing score.
    """
    boxes = [np.asarray(b, dtype=np.float64) for b in np.asarray(boxes).reshape(-1, 4)]
    scores = [float(s) for s in np.asarray(scores).ravel()]
    while len(boxes) > 1:
        pairs = [
            (match_score(boxes[i], boxes[j]), i, j)
            for i in range(len(boxes))
            for j in range(i + 1, len(boxes))
        ]
        best, i, j = min(pairs)
        if best > threshold:
            break
        merged, total = (boxes[i] + boxes[j]) / 2, scores[i] + scores[j]
        for index in (j, i):  # j > i: remove the later one first
            del boxes[index], scores[index]
        boxes.append(merged)
        scores.append(total)
    order = np.argsort(-np.asarray(scores), kind="stable")
    return np.asarray(boxes).reshape(-1, 4)[order], np.asarray(scores)[order]
