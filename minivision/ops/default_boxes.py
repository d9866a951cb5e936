"""Default boxes (priors) of SSD (Liu et al. 2016), laid out as the released code lays them out.

At every position of each feature map, in this order: the square of side ``min_size``, the
square of side ``sqrt(min_size * max_size)`` (the extra box), then for each aspect ratio ``r``
(width / height, the paper's convention; anchors.py uses height / width) the box
``min_size * sqrt(r)`` wide and ``min_size / sqrt(r)`` high and its transpose. So a level with
ratios ``(2, 3)`` has 6 boxes per position, one with ``(2,)`` has 4. Position ``(i, j)`` of a
map with step ``(sh, sw)`` centres its boxes on image point ``((j + 0.5) * sw, (i + 0.5) * sh)``;
positions run row-major, maps one after the other. Boxes are continuous pixel ``(x1, y1, x2, y2)``
boxes of the input image, computed in float64 and rounded to float32 once; the released code
gives the same boxes divided by the image size as ``(cx, cy, w, h)``, which ``normalized()``
returns.

Where the released SSD300 departs from the paper:

- Scales. The paper spaces the scales of its m = 6 maps evenly,
  ``s_k = s_min + (s_max - s_min) * (k - 1) / (m - 1)`` with ``s_min = 0.2``, ``s_max = 0.9``:
  0.2, 0.34, 0.48, 0.62, 0.76, 0.9, i.e. 60, 102, 144, 186, 228, 270 pixels at 300. The
  released SSD300 gives conv4_3 the scale 0.1 (30 pixels; the paper mentions this for its
  PASCAL VOC model) and spaces the other five from 20% in whole-percent steps of
  ``floor((90 - 20) / (6 - 2)) = 17``: 20, 37, 54, 71, 88% = 60, 111, 162, 213, 264 pixels.
  Each level's ``max_size`` is the next level's ``min_size`` and the last is 105% = 315.
- Centres. The paper puts them at ``((j + 0.5) / |f_k|, (i + 0.5) / |f_k|)`` of the image, a
  grid that fills the image exactly. The released code uses the layers' strides as steps,
  (8, 16, 32, 64, 100, 300), so the 38 x 38 grid's centres run from 4 to 300 and the 10 x 10
  grid's from 16 to 304 (steps 300 / 38 = 7.89 and 300 / 10 = 30 would fill the image).
- Clipping. The Caffe release clips the corners of the normalized boxes to [0, 1] when its
  ``clip`` flag is set (off for SSD300); ``clip=True`` here clips the pixel corners to the image,
  the same rule. The PyTorch port (ssd.pytorch) clamps the ``(cx, cy, w, h)`` values to [0, 1]
  instead, which caps widths and heights at the image size but leaves boxes outside it.
"""

from __future__ import annotations

import math

import numpy as np

from minivision.backend import xp_for_device
from minivision.ops.anchors import _positive_numbers, _size_pair
from minivision.ops.boxes import box_convert


def _per_level(values, name: str, levels: int) -> tuple:
    """``values`` as a tuple with one entry per feature-map level."""
    if not isinstance(values, (tuple, list)) or len(values) != levels:
        raise ValueError(
            f"{name} must be a sequence with one entry per feature map ({levels}), got {values!r}"
        )
    return tuple(values)


def _ratios(values, name: str) -> tuple:
    """One level's aspect ratios: a (possibly empty) sequence of finite numbers > 0, none of them 1
    (the squares are always made; a ratio of 1 would repeat the first box twice)."""
    if isinstance(values, (tuple, list)) and not values:
        return ()
    try:
        ratios = _positive_numbers(values, name)
    except ValueError:
        raise ValueError(
            f"{name} must be a sequence (possibly empty) of finite numbers > 0, got {values!r}"
        ) from None
    if 1.0 in ratios:
        raise ValueError(
            f"{name} must not contain 1 (the square boxes are always made), got {values!r}"
        )
    return ratios


class DefaultBoxes:
    """SSD's default boxes over a fixed set of feature maps.

    Args:
        image_size: the input image's ``(H, W)``, or one int for a square image.
        feature_maps: per level, the map's ``(H, W)`` or one int.
        steps: per level, image pixels between neighbouring centres, one number or ``(sh, sw)``.
        min_sizes: per level, the side of the small square, in pixels.
        max_sizes: per level, a number > ``min_sizes[k]``; the extra square has side
            ``sqrt(min_sizes[k] * max_sizes[k])``.
        aspect_ratios: per level, a sequence of width / height ratios (each gives a box and its
            transpose).
        clip: clip every box to the image, ``[0, W] x [0, H]``.

    ``cell_sizes[level]`` holds the level's ``B`` boxes as ``(B, 2)`` float64 widths and heights,
    in the order they take at every position.
    """

    def __init__(
        self,
        image_size,
        feature_maps,
        steps,
        min_sizes,
        max_sizes,
        aspect_ratios,
        clip: bool = False,
    ):
        self.image_size = _size_pair(image_size, "image_size", integral=True)
        if not isinstance(feature_maps, (tuple, list)) or not feature_maps:
            raise ValueError(
                f"feature_maps must be a non-empty sequence of (H, W) map sizes, got {feature_maps!r}"
            )
        levels = len(feature_maps)
        self.feature_maps = tuple(
            _size_pair(f, f"feature_maps[{k}]", integral=True) for k, f in enumerate(feature_maps)
        )
        self.steps = tuple(
            _size_pair(s, f"steps[{k}]", integral=False)
            for k, s in enumerate(_per_level(steps, "steps", levels))
        )
        self.min_sizes = _positive_numbers(_per_level(min_sizes, "min_sizes", levels), "min_sizes")
        self.max_sizes = _positive_numbers(_per_level(max_sizes, "max_sizes", levels), "max_sizes")
        for k, (low, high) in enumerate(zip(self.min_sizes, self.max_sizes)):
            if high <= low:
                raise ValueError(f"max_sizes[{k}] must be > min_sizes[{k}] ({low:g}), got {high:g}")
        self.aspect_ratios = tuple(
            _ratios(r, f"aspect_ratios[{k}]")
            for k, r in enumerate(_per_level(aspect_ratios, "aspect_ratios", levels))
        )
        if not isinstance(clip, bool):
            raise TypeError(f"clip must be a bool, got {clip!r}")
        self.clip = clip
        self.cell_sizes = [
            self._cell_sizes(low, high, ratios)
            for low, high, ratios in zip(self.min_sizes, self.max_sizes, self.aspect_ratios)
        ]

    @classmethod
    def ssd300(cls, clip: bool = False) -> "DefaultBoxes":
        """The released SSD300's 8,732 boxes: maps 38, 19, 10, 5, 3, 1 (conv4_3, fc7, conv8_2 to
        conv11_2) with 4, 6, 6, 6, 4, 4 boxes per position."""
        return cls(
            300,
            feature_maps=(38, 19, 10, 5, 3, 1),
            steps=(8, 16, 32, 64, 100, 300),
            min_sizes=(30, 60, 111, 162, 213, 264),
            max_sizes=(60, 111, 162, 213, 264, 315),
            aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
            clip=clip,
        )

    @staticmethod
    def _cell_sizes(min_size: float, max_size: float, ratios) -> np.ndarray:
        """(2 + 2 * len(ratios), 2) widths and heights: the two squares, then each ratio's box
        and its transpose."""
        extra = math.sqrt(min_size * max_size)
        sizes = [(min_size, min_size), (extra, extra)]
        for ratio in ratios:
            wide, high = min_size * math.sqrt(ratio), min_size / math.sqrt(ratio)
            sizes += [(wide, high), (high, wide)]
        return np.array(sizes, dtype=np.float64)

    def __repr__(self):
        return (
            f"DefaultBoxes(image_size={self.image_size}, feature_maps={self.feature_maps}, steps={self.steps}, "
            f"min_sizes={self.min_sizes}, max_sizes={self.max_sizes}, aspect_ratios={self.aspect_ratios}, "
            f"clip={self.clip})"
        )

    def num_boxes_per_location(self) -> list:
        """Boxes at each position of each level's map: ``[B_0, B_1, ...]``."""
        return [len(sizes) for sizes in self.cell_sizes]

    def __len__(self) -> int:
        """The number of boxes ``P``: sum over levels of ``H * W * B``."""
        return sum(h * w * len(sizes) for (h, w), sizes in zip(self.feature_maps, self.cell_sizes))

    def _pixel_boxes(self, xp):
        """(P, 4) float64 xyxy pixel boxes, clipped when ``clip`` is set."""
        out = []
        for (height, width), (step_h, step_w), sizes in zip(
            self.feature_maps, self.steps, self.cell_sizes
        ):
            centre_y, centre_x = xp.meshgrid(
                (xp.arange(height) + 0.5) * step_h, (xp.arange(width) + 0.5) * step_w, indexing="ij"
            )
            centres = xp.stack([centre_x, centre_y, centre_x, centre_y], axis=-1).reshape(-1, 1, 4)
            half = xp.asarray(sizes) / 2
            out.append((centres + xp.concatenate([-half, half], axis=1)[None]).reshape(-1, 4))
        boxes = xp.concatenate(out, axis=0)
        if self.clip:
            image_h, image_w = self.image_size
            boxes = xp.clip(
                boxes, 0.0, xp.asarray([image_w, image_h, image_w, image_h], dtype=np.float64)
            )
        return boxes

    def boxes(self, device: str = "cpu"):
        """All default boxes, ``(P, 4)`` float32 ``(x1, y1, x2, y2)`` in image pixels, on ``device``;
        ordered by level, then position (row-major), then box."""
        return self._pixel_boxes(xp_for_device(device)).astype(np.float32)

    __call__ = boxes

    def normalized(self, device: str = "cpu"):
        """The same boxes as the released code holds them: ``(P, 4)`` float32 ``(cx, cy, w, h)``
        divided by the image's ``(W, H, W, H)``."""
        xp = xp_for_device(device)
        image_h, image_w = self.image_size
        centre_size = box_convert(self._pixel_boxes(xp), "xyxy", "cxcywh")
        return (
            centre_size / xp.asarray([image_w, image_h, image_w, image_h], dtype=np.float64)
        ).astype(np.float32)
