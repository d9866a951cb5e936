"""SSD: Single Shot MultiBox Detector (Liu et al., 2016): every default box of several feature
maps is "classified" directly, class and box shape, in one pass.

    SSD300, the paper's released model:
        image (N, 3, 300, 300)
        -> VGG16 to conv4_3 (pool3 rounds up: 75 -> 38)        38 x 38 x 512, L2Norm (scale 20)
        -> pool4, conv5_1..3, pool5 (3x3, stride 1)
           fc6 (3x3 conv, dilation 6, 1024), fc7 (1x1, 1024)    19 x 19 x 1024
        -> conv8_1 (1x1, 256), conv8_2 (3x3 stride 2, 512)      10 x 10 x 512
        -> conv9_1 (1x1, 128), conv9_2 (3x3 stride 2, 256)       5 x 5 x 256
        -> conv10_1 (1x1, 128), conv10_2 (3x3, no padding, 256)  3 x 3 x 256
        -> conv11_1 (1x1, 128), conv11_2 (3x3, no padding, 256)  1 x 1 x 256
        each of these six source maps -> a 3x3 conv for 4 box deltas and one for C + 1 class
        scores per default box: 4, 6, 6, 6, 4, 4 boxes per position, 8,732 in all.

    tiny (ours, for Shapes with objects of very different sizes on 2 CPU cores): convolutions
    with batch norm, four source maps at strides 4, 8, 16 and 32 (24, 12, 6, 3 cells for a
    96 x 96 image), 4 default boxes per position whose sizes are fractions of the image side.

Training matches the default boxes to the objects (``multibox.match``) and minimises the
MultiBox loss (``multibox.multibox_loss``: smooth L1 on the positives' deltas, cross-entropy on
the positives and the 3:1 hardest negatives); detections come from ``multibox.decode``.
"""

from __future__ import annotations

import numbers

import numpy as np

import minivision as mv
from minivision import nn
from minivision.models._conv_stack import conv_stack
from minivision.models.multibox import decode, encode_targets, match, multibox_loss
from minivision.nn.l2norm import L2Norm
from minivision.ops import DefaultBoxes
from minivision.tensor import Tensor

# VGG16 up to conv4_3, then to conv5_3 (an int: a 3x3 conv of that many channels; "M": 2x2 pool;
# "C": 2x2 pool rounding up, which turns conv3's 75 x 75 into conv4's 38 x 38).
VGG16_CONV4_3 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512]
VGG16_CONV5_3 = ["M", 512, 512, 512]
# SSD300's extra layers: per source map, (kernel, channels, stride, padding) of its two convolutions.
SSD300_EXTRAS = [
    [(1, 256, 1, 0), (3, 512, 2, 1)],
    [(1, 128, 1, 0), (3, 256, 2, 1)],
    [(1, 128, 1, 0), (3, 256, 1, 0)],
    [(1, 128, 1, 0), (3, 256, 1, 0)],
]
# The tiny form: per source map, a ``conv_stack`` spec (with batch norm); its default boxes'
# smallest and largest sizes as fractions of the image side (8-16, 16-32, 32-56, 56-80 pixels
# at 96 x 96), aspect ratio 2 (and 1/2) at every map.
TINY_STAGES = [
    [32, "M", 64, "M", 64],
    ["M", 128],
    [(1, 64, 1), (3, 128, 2)],
    [(1, 64, 1), (3, 128, 2)],
]
TINY_MIN_FRACTIONS = (1 / 12, 1 / 6, 1 / 3, 7 / 12)
TINY_MAX_FRACTIONS = (1 / 6, 1 / 3, 7 / 12, 5 / 6)
VARIANTS = ("ssd300", "tiny")


def _vgg_layers(spec, in_channels: int) -> tuple[list, int]:
    """VGG's convolutions (3x3, padding 1, ReLU) and pools from ``spec``: (layers, channels)."""
    layers = []
    for item in spec:
        if item in ("M", "C"):
            layers.append(nn.MaxPool2d(2, ceil_mode=item == "C"))
        else:
            layers += [nn.Conv2d(in_channels, item, 3, padding=1), nn.ReLU()]
            in_channels = item
    return layers, in_channels


def _ssd300_stages(in_channels: int) -> tuple[list, list]:
    """The six stages of SSD300, each ending at a source map, and their channels."""
    conv4, channels = _vgg_layers(VGG16_CONV4_3, in_channels)
    conv5, channels = _vgg_layers(VGG16_CONV5_3, channels)
    fc = [
        nn.MaxPool2d(3, stride=1, padding=1),
        nn.Conv2d(channels, 1024, 3, padding=6, dilation=6),
        nn.ReLU(),
        nn.Conv2d(1024, 1024, 1),
        nn.ReLU(),
    ]
    stages, out_channels, channels = (
        [nn.Sequential(*conv4), nn.Sequential(*conv5, *fc)],
        [512, 1024],
        1024,
    )
    for extra in SSD300_EXTRAS:
        layers = []
        for kernel, filters, stride, padding in extra:
            layers += [
                nn.Conv2d(channels, filters, kernel, stride=stride, padding=padding),
                nn.ReLU(),
            ]
            channels = filters
        stages.append(nn.Sequential(*layers))
        out_channels.append(channels)
    return stages, out_channels


def _tiny_stages(in_channels: int) -> tuple[list, list]:
    stages, out_channels = [], []
    for spec in TINY_STAGES:
        stage, in_channels, _ = conv_stack(spec, in_channels, batch_norm=True, activation=nn.ReLU)
        stages.append(stage)
        out_channels.append(in_channels)
    return stages, out_channels


def map_size(layers, size: int) -> int:
    """The side of the map ``layers`` (convolutions and max pools, applied in order) make of a
    ``size`` x ``size`` input, by PyTorch's output-size rule (floor, or ceil with ``ceil_mode``)."""
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            kernel, stride, padding, dilation = (
                layer.kernel_size,
                layer.stride,
                layer.padding,
                layer.dilation,
            )
            kernel, stride, padding, dilation = (
                v[0] if isinstance(v, tuple) else v for v in (kernel, stride, padding, dilation)
            )
            span = size + 2 * padding - dilation * (kernel - 1) - 1
            if getattr(layer, "ceil_mode", False):
                steps = -(-span // stride)
                steps -= (
                    steps * stride >= size + padding
                )  # the last window must start inside the input
            else:
                steps = span // stride
            size = steps + 1
    return size


class SSD(nn.Module):
    """SSD: class scores and box deltas for every default box of several source maps.

    ``forward(images (N, in_channels, S, S))`` -> (loc (N, P, 4) deltas against the default
    boxes (``BoxCoder`` with SSD's variances), conf (N, P, num_classes + 1) logits, class 0 the
    background); P = ``len(self.default_boxes)``, ordered map by map, row-major, and per
    position in ``DefaultBoxes``' order. S is ``image_size`` (300 for SSD300).
    """

    task = "detection"

    def __init__(
        self,
        variant: str = "ssd300",
        num_classes: int = 20,
        image_size: int = 300,
        in_channels: int = 3,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        for value, name in (
            (num_classes, "num_classes"),
            (image_size, "image_size"),
            (in_channels, "in_channels"),
        ):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if variant == "ssd300" and image_size != 300:
            raise ValueError(
                f"SSD('ssd300') takes 300 x 300 images (its default boxes are the released "
                f"SSD300's), got image_size={image_size}; use variant 'tiny' for other sizes"
            )
        self.config = {
            "variant": variant,
            "num_classes": num_classes,
            "image_size": image_size,
            "in_channels": in_channels,
        }
        stages, channels = (_ssd300_stages if variant == "ssd300" else _tiny_stages)(in_channels)
        sizes, layers = [], []
        for stage in stages:
            layers += list(stage)
            sizes.append(map_size(layers, image_size))
        if min(sizes) < 1:
            raise ValueError(
                f"SSD({variant!r}) needs a larger image: image_size {image_size} leaves source maps "
                f"of {sizes} cells"
            )
        self.stages = nn.Sequential(*stages)
        self.l2norm = L2Norm(channels[0], scale=20.0) if variant == "ssd300" else None
        self.priors = (
            DefaultBoxes.ssd300()
            if variant == "ssd300"
            else DefaultBoxes(
                image_size,
                sizes,
                [image_size / s for s in sizes],
                [f * image_size for f in TINY_MIN_FRACTIONS],
                [f * image_size for f in TINY_MAX_FRACTIONS],
                [[2]] * len(sizes),
            )
        )
        self.default_boxes = self.priors()  # (P, 4) xyxy pixels, on the host
        per_position = self.priors.num_boxes_per_location()
        self.loc = nn.Sequential(
            *(nn.Conv2d(c, 4 * a, 3, padding=1) for c, a in zip(channels, per_position))
        )
        self.conf = nn.Sequential(
            *(
                nn.Conv2d(c, (num_classes + 1) * a, 3, padding=1)
                for c, a in zip(channels, per_position)
            )
        )

    @classmethod
    def tiny(cls, num_classes: int, image_size: int = 96) -> "SSD":
        """The configuration trained on synthetic data (see the module docstring)."""
        return cls("tiny", num_classes=num_classes, image_size=image_size)

    def _check_images(self, images) -> None:
        size, channels = self.config["image_size"], self.config["in_channels"]
        if len(images.shape) != 4 or tuple(images.shape[1:]) != (channels, size, size):
            raise ValueError(
                f"SSD({self.config['variant']!r}) takes images of shape (N, {channels}, {size}, {size}) "
                f"(build it with image_size=... for another size), got {tuple(images.shape)}"
            )

    def forward(self, images) -> tuple[Tensor, Tensor]:
        self._check_images(images)
        n, classes = images.shape[0], self.config["num_classes"] + 1
        x, locs, confs = images, [], []
        for i, (stage, loc, conf) in enumerate(zip(self.stages, self.loc, self.conf)):
            x = stage(x)
            source = self.l2norm(x) if i == 0 and self.l2norm is not None else x
            # (N, A * k, H, W) -> (N, H, W, A * k) -> (N, H * W * A, k): position-major, as the default boxes
            locs.append(loc(source).permute(0, 2, 3, 1).reshape(n, -1, 4))
            confs.append(conf(source).permute(0, 2, 3, 1).reshape(n, -1, classes))
        return mv.cat(locs, dim=1), mv.cat(confs, dim=1)

    def loss(self, images, targets) -> Tensor:
        """The MultiBox loss of a batch: ``targets`` a list of N dicts with ``boxes`` (G, 4) xyxy
        pixels and ``labels`` (G,) in 1..num_classes."""
        if not isinstance(targets, (list, tuple)) or len(targets) != images.shape[0]:
            seen = (
                f"{len(targets)} items"
                if isinstance(targets, (list, tuple))
                else type(targets).__name__
            )
            raise ValueError(
                f"targets must be a list of {images.shape[0]} dicts with 'boxes' and 'labels', "
                f"one per image, got {seen}"
            )
        loc, conf = self(images)
        labels, goals = [], []
        for target in targets:
            image_labels, matched = match(self.default_boxes, target["boxes"], target["labels"])
            labels.append(image_labels)
            goals.append(encode_targets(self.default_boxes, target["boxes"], matched))
        return multibox_loss(loc, conf, np.stack(labels), np.stack(goals))

    def predict(
        self, images, score_thresh: float = 0.01, nms_thresh: float = 0.45, top_k: int = 200
    ) -> list[dict]:
        """Detections per image (``multibox.decode``): NumPy ``boxes`` (K, 4) xyxy pixels,
        ``labels`` (K,) in 1..num_classes, ``scores`` (K,), best first."""
        with mv.no_grad():
            loc, conf = self(images)
        loc, conf = loc.numpy(), conf.numpy()
        return [
            decode(
                loc[i],
                conf[i],
                self.default_boxes,
                self.config["image_size"],
                score_thresh=score_thresh,
                nms_thresh=nms_thresh,
                top_k=top_k,
            )
            for i in range(loc.shape[0])
        ]
