"""SegNet (Badrinarayanan, Kendall and Cipolla, 2017): an encoder-decoder whose decoder
upsamples with the encoder's max-pooling switches (the lecture's "remember which element
was max": unpooling puts each value back where its maximum came from, zeros elsewhere).

    encoder stage: convs (conv-BN-ReLU), then 2x2 max pool keeping its switches
    decoder stage: max unpool with the mirror encoder stage's switches, then convs
    classifier: conv to num_classes (per-pixel scores)

=========  ================================================  ======================================
variant    encoder stages (conv widths; 2x2 pool after each)  decoder stages (after each unpool)
=========  ================================================  ======================================
vgg16      64 64 | 128 128 | 256 256 256 | 512 512 512 |      512 512 512 | 512 512 256 |
           512 512 512  (VGG16's 13 convs, 3x3)               256 256 128 | 128 64 | 64;
                                                              3x3 classifier (the Caffe conv1_1_D)
basic      16 | 32 | 64 | 64  (3x3)                           64 | 32 | 16 | 16; 1x1 classifier
=========  ================================================  ======================================

"basic" is ours, shaped like the paper's SegNet-Basic (four one-conv encoders and decoders,
BatchNorm, no ReLU in the decoder, a 1x1 classifier) but with 3x3 convs and widths 16..64
instead of 64-channel 7x7 ones, so that it trains on 64x64 Shapes on 2 CPU cores.
Odd sizes work: pooling drops a last odd row, unpooling (``output_size``) restores it as zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

from minivision import nn
from minivision.models._seg_common import SegmentationModel, conv_block


@dataclass(frozen=True)
class Layout:
    """One row of the table above."""

    encoder: tuple  # conv widths of each encoder stage
    decoder: tuple  # conv widths of each decoder stage, deepest first
    classifier_kernel: int
    decoder_relu: bool


VARIANTS = {
    "vgg16": Layout(
        encoder=((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
        decoder=((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64,)),
        classifier_kernel=3,
        decoder_relu=True,
    ),
    "basic": Layout(
        encoder=((16,), (32,), (64,), (64,)),
        decoder=((64,), (32,), (16,), (16,)),
        classifier_kernel=1,
        decoder_relu=False,
    ),
}


def _stage(channels: int, widths, relu: bool) -> nn.Sequential:
    """3x3 conv-BN(-ReLU) layers of ``widths`` from ``channels`` input channels."""
    layers = []
    for width in widths:
        layers.append(conv_block(channels, width, 3, 1, batch_norm=True, relu=relu))
        channels = width
    return nn.Sequential(*layers)


class SegNet(SegmentationModel):
    """SegNet: (N, in_channels, H, W) -> per-pixel scores (N, num_classes, H, W); H, W at least
    2 ** (number of pooling stages)."""

    def __init__(
        self,
        variant: str = "vgg16",
        num_classes: int = 12,
        in_channels: int = 3,
        image_size: int = 224,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"SegNet: variant must be one of {tuple(VARIANTS)}, got {variant!r}")
        # image_size: the side of the square images ``minivision train``/``eval`` use; the net takes others
        self.config = {
            "variant": variant,
            "num_classes": num_classes,
            "in_channels": in_channels,
            "image_size": image_size,
        }
        layout = VARIANTS[variant]
        inputs = [in_channels] + [widths[-1] for widths in layout.encoder[:-1]]
        self.encoder = nn.Sequential(
            *[_stage(c, widths, True) for c, widths in zip(inputs, layout.encoder)]
        )
        inputs = [layout.encoder[-1][-1]] + [widths[-1] for widths in layout.decoder[:-1]]
        self.decoder = nn.Sequential(
            *[_stage(c, widths, layout.decoder_relu) for c, widths in zip(inputs, layout.decoder)]
        )
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)
        kernel = layout.classifier_kernel
        self.classifier = nn.Conv2d(
            layout.decoder[-1][-1], num_classes, kernel, padding=kernel // 2
        )

    @classmethod
    def tiny(cls, num_classes: int, image_size: int = 64) -> SegNet:
        """The configuration trained on Shapes: "basic", num_classes object classes + background."""
        return cls("basic", num_classes + 1, image_size=image_size)

    def check_size(self, height: int, width: int) -> None:
        smallest = 2 ** len(self.encoder)
        if min(height, width) < smallest:
            raise ValueError(
                f"SegNet({self.config['variant']!r}) pools {len(self.encoder)} times, so images must be "
                f"at least {smallest}x{smallest}, got {height}x{width}"
            )

    def encode(self, images):
        """Encoder features (N, C, H / 2**k, W / 2**k) and, per stage, the switches and the size pooled."""
        switches, sizes, x = [], [], images
        for stage in self.encoder:
            x = stage(x)
            sizes.append(tuple(x.shape[2:]))
            x, indices = self.pool(x)
            switches.append(indices)
        return x, switches, sizes

    def forward(self, images):
        self.check_images(images)
        x, switches, sizes = self.encode(images)
        for stage, indices, size in zip(self.decoder, reversed(switches), reversed(sizes)):
            x = stage(self.unpool(x, indices, output_size=size))
        return self.classifier(x)
