"""Fully convolutional networks (Long, Shelhamer and Darrell, 2015): FCN-32s, FCN-16s, FCN-8s.

The reference VGG16 nets (the Caffe ``voc-fcn*s`` models)::

    conv1_1 3x3 pad 100, conv1_2 3x3 pad 1, pool1 2x2 ceil    64       1/2
    conv2_1..2_2 3x3 pad 1, pool2                            128       1/4
    conv3_1..3_3 3x3 pad 1, pool3                            256       1/8
    conv4_1..4_3 3x3 pad 1, pool4                            512       1/16
    conv5_1..5_3 3x3 pad 1, pool5                            512       1/32
    fc6 7x7 conv (no pad) + ReLU + dropout                  4096
    fc7 1x1 conv + ReLU + dropout                           4096
    score_fr 1x1 conv                                num_classes
    32s: upscore 64x64 stride 32, crop 19                              1/1
    16s: upscore2 4x4 stride 2; + score_pool4 (1x1 on pool4) cropped at 5;
         upscore16 32x32 stride 16, crop 27
    8s:  upscore2; + score_pool4 cropped at 5; upscore_pool4 4x4 stride 2;
         + score_pool3 (1x1 on pool3) cropped at 9; upscore8 16x16 stride 8, crop 31

The 100-pixel padding lets fc6's 7x7 window fit pool5 for any input (so the output matches
the input for every size) and makes every crop offset non-negative. The offsets are not
typed in: like Caffe's ``coord_map`` they are derived from the layer list, by tracking
where each map's pixel 0 and its spacing sit in image coordinates (``Grid``).
The transposed convolutions start as bilinear interpolation (``nn.init.bilinear_kernel``)
and, as the paper allows, are learned; the new skip scores start at zero so a 16s/8s net
starts as its coarser parent.

``backbone="tiny"`` (ours, for 64x64 Shapes on 2 CPU cores) keeps the same five stages,
skips and variants with one conv-BN-ReLU per stage, widths 8..64, a 4x4 fc6 (the smallest
whose skip crops fit every input size; a 3x3 one leaves no room for score_pool3's crop when
pool3 has 4k+1 rows) and a 49-pixel first padding (the smallest that fits it to pool5 for any
input).
"""

from __future__ import annotations

from dataclasses import dataclass

from minivision import nn
from minivision.models._seg_common import SegmentationModel, conv_block

VARIANTS = ("32s", "16s", "8s")
_UPSCORE_NAMES = {"32s": "upscore", "16s": "upscore16", "8s": "upscore8"}


@dataclass(frozen=True)
class Backbone:
    """One backbone of the table above: conv widths per stage, fc6/fc7, first padding."""

    stages: tuple  # conv widths of each of the five stages
    fc_width: int  # fc6 and fc7 channels
    fc6_kernel: int  # fc6's kernel (a fully connected layer over pool5 windows)
    first_padding: int  # conv1_1's padding
    batch_norm: bool
    dropout: float


BACKBONES = {
    "vgg16": Backbone(
        ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
        fc_width=4096,
        fc6_kernel=7,
        first_padding=100,
        batch_norm=False,
        dropout=0.5,
    ),
    "tiny": Backbone(
        ((8,), (16,), (32,), (64,), (64,)),
        fc_width=128,
        fc6_kernel=4,
        first_padding=49,
        batch_norm=True,
        dropout=0.0,
    ),
}


@dataclass(frozen=True)
class Grid:
    """Where a feature map's pixels sit in the image: pixel i is centred at ``step * i + start``."""

    step: float = 1.0
    start: float = 0.0

    def conv(self, kernel: int, stride: int = 1, padding: int = 0) -> Grid:
        """After a conv or pool: output i reads inputs stride*i - padding .. + kernel - 1."""
        return Grid(self.step * stride, self.start + self.step * ((kernel - 1) / 2 - padding))

    def transposed(self, kernel: int, stride: int) -> Grid:
        """After an unpadded transposed conv: input i stamps outputs stride*i .. + kernel - 1."""
        return Grid(self.step / stride, self.start - self.step / stride * (kernel - 1) / 2)

    def offset_of(self, other: Grid) -> int:
        """The index in this map of ``other``'s pixel 0: the crop offset aligning this map to ``other``."""
        offset = (other.start - self.start) / self.step
        if other.step != self.step or offset != int(offset) or offset < 0:
            raise ValueError(f"cannot crop a map on {self} to one on {other}")
        return int(offset)


def crop(x, offset: int, height: int, width: int):
    """x[:, :, offset:offset + height, offset:offset + width], checked to fit."""
    if x.shape[2] < offset + height or x.shape[3] < offset + width:
        raise ValueError(
            f"FCN: cannot crop {height}x{width} at offset {offset} from a map of shape {tuple(x.shape)}"
        )
    return x[:, :, offset : offset + height, offset : offset + width]


def _bilinear_upsampling(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A stride-``factor`` transposed conv (kernel 2 * factor, no bias) initialised to bilinear."""
    layer = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, bias=False)
    layer.weight.data = nn.init.bilinear_kernel(channels, channels, 2 * factor).data
    return layer


def _zero_score(channels: int, num_classes: int) -> nn.Conv2d:
    """A 1x1 skip score layer starting at zero: adding it first changes nothing (the paper's init)."""
    layer = nn.Conv2d(channels, num_classes, 1)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def crop_offsets(backbone: Backbone, variant: str) -> dict:
    """The crop offsets of an FCN, derived from its layer list: {"score_pool4": 5, "score_pool3": 9,
    "upscore": 31} for the VGG16 FCN-8s (a skip's score map is cropped where the upsampled
    coarser score starts; the final upsampled map where the input starts)."""
    grid, pools = Grid(), []
    for index, widths in enumerate(backbone.stages):
        for layer in range(len(widths)):
            grid = grid.conv(3, 1, backbone.first_padding if index == layer == 0 else 1)
        grid = grid.conv(2, 2)
        pools.append(grid)
    score, offsets = pools[4].conv(backbone.fc6_kernel), {}
    for skip, pool in (("score_pool4", pools[3]), ("score_pool3", pools[2]))[
        : VARIANTS.index(variant)
    ]:
        score = score.transposed(4, 2)  # upscore2, upscore_pool4
        offsets[skip] = pool.offset_of(score)
    factor = int(score.step)
    offsets["upscore"] = score.transposed(2 * factor, factor).offset_of(Grid())
    return offsets


class FCN(SegmentationModel):
    """FCN-32s/16s/8s: (N, in_channels, H, W) -> per-pixel scores (N, num_classes, H, W), any H, W."""

    def __init__(
        self,
        variant: str = "32s",
        num_classes: int = 21,
        backbone: str = "vgg16",
        in_channels: int = 3,
        image_size: int = 500,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"FCN: variant must be one of {VARIANTS}, got {variant!r}")
        if backbone not in BACKBONES:
            raise ValueError(f"FCN: backbone must be one of {tuple(BACKBONES)}, got {backbone!r}")
        # image_size: the side of the square images ``minivision train``/``eval`` use; the net takes any
        self.config = {
            "variant": variant,
            "num_classes": num_classes,
            "backbone": backbone,
            "in_channels": in_channels,
            "image_size": image_size,
        }
        spec = BACKBONES[backbone]
        stages, channels = [], in_channels
        for index, widths in enumerate(spec.stages):
            layers = []
            for width in widths:
                padding = spec.first_padding if index == 0 and not layers else 1
                layers.append(conv_block(channels, width, 3, padding, spec.batch_norm))
                channels = width
            stages.append(nn.Sequential(*layers, nn.MaxPool2d(2, ceil_mode=True)))
        self.stages = nn.Sequential(*stages)  # conv1 .. pool5
        dropout = [nn.Dropout(spec.dropout)] if spec.dropout else []
        self.fc = nn.Sequential(
            conv_block(channels, spec.fc_width, spec.fc6_kernel, 0, spec.batch_norm),
            *dropout,
            conv_block(spec.fc_width, spec.fc_width, 1, 0, spec.batch_norm),
            *dropout,
        )
        self.score_fr = nn.Conv2d(spec.fc_width, num_classes, 1)
        if variant in ("16s", "8s"):
            self.upscore2 = _bilinear_upsampling(num_classes, 2)
            self.score_pool4 = _zero_score(spec.stages[3][-1], num_classes)
        if variant == "8s":
            self.upscore_pool4 = _bilinear_upsampling(num_classes, 2)
            self.score_pool3 = _zero_score(spec.stages[2][-1], num_classes)
        factor = {"32s": 32, "16s": 16, "8s": 8}[variant]
        setattr(self, _UPSCORE_NAMES[variant], _bilinear_upsampling(num_classes, factor))
        self.offsets = crop_offsets(spec, variant)

    @classmethod
    def tiny(cls, num_classes: int, image_size: int = 64) -> FCN:
        """The configuration trained on Shapes: FCN-8s on the tiny backbone, num_classes + background."""
        return cls("8s", num_classes + 1, backbone="tiny", image_size=image_size)

    def forward(self, images):
        self.check_images(images)
        pools, x = [], images
        for stage in self.stages:
            x = stage(x)
            pools.append(x)
        score = self.score_fr(self.fc(x))
        variant = self.config["variant"]
        if variant in ("16s", "8s"):
            score = self.upscore2(score)
            score = score + crop(
                self.score_pool4(pools[3]), self.offsets["score_pool4"], *score.shape[2:]
            )
        if variant == "8s":
            score = self.upscore_pool4(score)
            score = score + crop(
                self.score_pool3(pools[2]), self.offsets["score_pool3"], *score.shape[2:]
            )
        score = getattr(self, _UPSCORE_NAMES[variant])(score)
        return crop(score, self.offsets["upscore"], *images.shape[2:])
