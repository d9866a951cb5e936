"""U-Net (Ronneberger, Fischer and Brox, 2015): an encoder-decoder with a skip from every
encoder level to its decoder level.

The paper's network (``UNet()``: depth 4, 64 base channels, valid 3x3 convolutions), for a
572x572 input::

    level  contracting path (two 3x3 convs + ReLU, then 2x2 max pool)   channels  size
    1      572 -> 570 -> 568, pool -> 284                                   64      568
    2      284 -> 282 -> 280, pool -> 140                                  128      280
    3      140 -> 138 -> 136, pool ->  68                                  256      136
    4       68 ->  66 ->  64, pool ->  32                                  512       64
    bottom  32 ->  30 ->  28                                              1024       28
           expanding path (2x2 up-conv halving the channels, concatenate the
           centre crop of the encoder's map, two 3x3 convs + ReLU)
    4       28 -> 56, cat crop(64 -> 56) -> 54 -> 52                        512       52
    3       52 -> 104, cat crop(136 -> 104) -> 102 -> 100                   256      100
    2      100 -> 200, cat crop(280 -> 200) -> 198 -> 196                   128      196
    1      196 -> 392, cat crop(568 -> 392) -> 390 -> 388                    64      388
    1x1 conv to num_classes                                                         388

With valid convolutions the output is smaller than the input: ``forward`` returns that
smaller map (572 -> 388), and ``scores``/``loss``/``predict`` use the paper's overlap-tile
strategy: the image is mirrored outwards until the output covers it, then cropped back.
``padding="same"`` pads every 3x3 conv by 1, so the output has the input's size (which must be
divisible by 2**depth, one halving per pool). ``batch_norm`` (not in the paper) puts a
BatchNorm after every 3x3 conv; the small configuration uses it to train fast.
"""

from __future__ import annotations

import minivision as mv
from minivision import nn
from minivision.backend import get_array_module
from minivision.models._seg_common import SegmentationModel, conv_block

PADDINGS = ("valid", "same")
_SHRINK = 4  # a pair of valid 3x3 convs loses 2 pixels on each side


def _smallest_bottom(depth: int) -> int:
    """The smallest size b of the bottom conv pair's output in a valid-padding U-Net: each decoder
    level (2 * previous - 4) must stay positive, so the output 2**depth * b - 4 * (2**depth - 1) >= 1."""
    return -(-(_SHRINK * (2**depth - 1) + 1) // 2**depth)


def _input_size(bottom: int, depth: int) -> int:
    """Input size for bottom size b: each level up doubles and adds a conv pair's 4 (572 for b = 28)."""
    return 2**depth * (bottom + 2 * _SHRINK) - _SHRINK


def valid_output_size(size: int, depth: int) -> int:
    """Output size of a valid-padding U-Net for a valid input ``size``: 572 -> 388 at depth 4."""
    bottom = (size + _SHRINK) // 2**depth - 2 * _SHRINK
    return 2**depth * bottom - _SHRINK * (2**depth - 1)


def valid_sizes(depth: int, count: int = 3) -> list[int]:
    """The ``count`` smallest input sizes a valid-padding U-Net of ``depth`` accepts (188, 204,
    220 at depth 4): every conv pair must leave an even size to pool and a positive one to
    upsample."""
    smallest = _smallest_bottom(depth)
    return [_input_size(b, depth) for b in range(smallest, smallest + count)]


def tile_size(size: int, depth: int) -> int:
    """The smallest valid input whose output covers ``size`` pixels (the overlap-tile input)."""
    bottom = max(_smallest_bottom(depth), -(-(size + _SHRINK * (2**depth - 1)) // 2**depth))
    return _input_size(bottom, depth)


def center_crop(x, height: int, width: int):
    """The central height x width window of x (N, C, H, W); (H - height) is even here."""
    top, left = (x.shape[2] - height) // 2, (x.shape[3] - width) // 2
    return x[:, :, top : top + height, left : left + width]


class UNet(SegmentationModel):
    """U-Net: (N, in_channels, H, W) -> per-pixel scores (N, num_classes, H', W'), H' = H for
    "same" padding and H - 184 (depth 4; see ``valid_output_size``) for "valid"."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        base_channels: int = 64,
        depth: int = 4,
        padding: str = "valid",
        batch_norm: bool = False,
        image_size: int = 572,
    ):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"UNet: padding must be one of {PADDINGS}, got {padding!r}")
        if depth < 1 or base_channels < 1 or num_classes < 1 or in_channels < 1:
            raise ValueError(
                f"UNet: depth, base_channels, num_classes and in_channels must be positive, got "
                f"{depth}, {base_channels}, {num_classes}, {in_channels}"
            )
        # image_size: the side of the square images ``minivision train``/``eval`` use; the net takes others
        self.config = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "base_channels": base_channels,
            "depth": depth,
            "padding": padding,
            "batch_norm": batch_norm,
            "image_size": image_size,
        }
        conv_padding = 1 if padding == "same" else 0

        def double_conv(cin, cout):
            return nn.Sequential(
                conv_block(cin, cout, 3, conv_padding, batch_norm),
                conv_block(cout, cout, 3, conv_padding, batch_norm),
            )

        widths = [base_channels * 2**level for level in range(depth + 1)]  # 64, 128, 256, 512, 1024
        self.down = nn.Sequential(
            *[double_conv(cin, cout) for cin, cout in zip([in_channels] + widths[:-2], widths[:-1])]
        )
        self.pool = nn.MaxPool2d(2)
        self.bottom = double_conv(widths[-2], widths[-1])
        # decoder levels run bottom-up; each up-conv halves the channels, the concatenation doubles them back
        self.up = nn.Sequential(
            *[nn.ConvTranspose2d(w, w // 2, 2, stride=2) for w in reversed(widths[1:])]
        )
        self.decode = nn.Sequential(*[double_conv(w, w // 2) for w in reversed(widths[1:])])
        self.classifier = nn.Conv2d(base_channels, num_classes, 1)

    @classmethod
    def tiny(cls, num_classes: int, image_size: int = 64) -> UNet:
        """The configuration trained on Shapes: RGB, 8 base channels, depth 3, same padding,
        batch norm; num_classes object classes + the background."""
        return cls(
            in_channels=3,
            num_classes=num_classes + 1,
            base_channels=8,
            depth=3,
            padding="same",
            batch_norm=True,
            image_size=image_size,
        )

    def check_size(self, height: int, width: int) -> None:
        depth = self.config["depth"]
        if self.config["padding"] == "same":
            step = 2**depth
            if height % step or width % step or min(height, width) < step:
                raise ValueError(
                    f"UNet(padding='same', depth={depth}) needs a height and width divisible by {step} "
                    f"(the smallest valid size is {step}), got {height}x{width}"
                )
            return
        sizes = valid_sizes(depth)
        for name, n in (("height", height), ("width", width)):
            if n < sizes[0] or (n + _SHRINK) % 2**depth:
                raise ValueError(
                    f"UNet(padding='valid', depth={depth}): {name} {n} is not a valid size; valid sizes "
                    f"are 2**{depth} * k - {_SHRINK} from the smallest, {sizes[0]}: "
                    f"{', '.join(map(str, sizes))}, ... (572 for the paper)"
                )

    def forward(self, images):
        self.check_images(images)
        skips, x = [], images
        for level in self.down:
            x = level(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, decode, skip in zip(self.up, self.decode, reversed(skips)):
            x = up(x)
            x = decode(
                mv.cat([center_crop(skip, *x.shape[2:]), x], dim=1)
            )  # the paper: copy and crop
        return self.classifier(x)

    def scores(self, images):
        """(N, num_classes, H, W) for any H, W: the overlap-tile strategy for valid padding."""
        if self.config["padding"] == "same":
            return self(images)
        height, width = images.shape[2:]
        depth = self.config["depth"]
        # the output is centred in the input: mirror a margin of context around the image
        margin = (tile_size(1, depth) - valid_output_size(tile_size(1, depth), depth)) // 2
        extra_h = tile_size(height, depth) - height - 2 * margin
        extra_w = tile_size(width, depth) - width - 2 * margin
        xp = get_array_module(images.data)
        mirrored = xp.pad(
            images.data,
            ((0, 0), (0, 0), (margin, margin + extra_h), (margin, margin + extra_w)),
            mode="symmetric",
        )
        return self(mv.Tensor(mirrored))[:, :, :height, :width]
