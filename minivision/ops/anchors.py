"""Anchors for region proposals (Faster R-CNN, Ren et al. 2015), laid out as torchvision's
``AnchorGenerator`` lays them out.

At every position of a feature map, one anchor per (aspect ratio, size) pair. An anchor of
size ``s`` and aspect ratio ``r`` (height / width) has the area of an ``s x s`` square:
``h = s * sqrt(r)``, ``w = s / sqrt(r)``. Position ``(i, j)`` of a map with stride
``(sh, sw)`` (image pixels per map pixel) centres its anchors on image point
``(j * sw, i * sh)``, as torchvision does. Anchors are continuous ``(x1, y1, x2, y2)`` boxes
and are not rounded (torchvision rounds its anchors centred on 0; the original code rounds
the widths and heights and counts pixels inclusively). The nine anchors at position (0, 0)
for the defaults::

    ratio  size   minivision                              torchvision            py-faster-rcnn
    0.5    128    ( -90.51,  -45.25,   90.51,   45.25)    ( -91,  -45,  91,  45)   ( -84,  -40,  99,  55)
    0.5    256    (-181.02,  -90.51,  181.02,   90.51)    (-181,  -91, 181,  91)   (-176,  -88, 191, 103)
    0.5    512    (-362.04, -181.02,  362.04,  181.02)    (-362, -181, 362, 181)   (-360, -184, 375, 199)
    1      128    ( -64,     -64,      64,      64   )    ( -64,  -64,  64,  64)   ( -56,  -56,  71,  71)
    1      256    (-128,    -128,     128,     128   )    (-128, -128, 128, 128)   (-120, -120, 135, 135)
    1      512    (-256,    -256,     256,     256   )    (-256, -256, 256, 256)   (-248, -248, 263, 263)
    2      128    ( -45.25,  -90.51,   45.25,   90.51)    ( -45,  -91,  45,  91)   ( -36,  -80,  51,  95)
    2      256    ( -90.51, -181.02,   90.51,  181.02)    ( -91, -181,  91, 181)   ( -80, -168,  95, 183)
    2      512    (-181.02, -362.04,  181.02,  362.04)    (-181, -362, 181, 362)   (-168, -344, 183, 359)

py-faster-rcnn's ``generate_anchors.py`` (stride 16, scales 8, 16, 32 times 16 pixels) gives
inclusive pixel corners centred on pixel 7.5: as continuous boxes (add 1 to x2 and y2) they are
centred on (8, 8), the middle of the first 16 x 16 cell, not on (0, 0). Its sizes come from
rounding each ratio's box at 16 pixels (23 x 12 for ratio 0.5) and scaling that by 8, 16, 32:
184 x 96 rather than 181.02 x 90.51.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from minivision.backend import device_of, xp_for_device
from minivision.ops._arrays import unwrap


def _positive_numbers(values, name: str) -> tuple:
    """``values`` (a sequence of finite numbers > 0) as a tuple of floats."""
    items = tuple(values) if isinstance(values, (tuple, list)) else ()
    if not items or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        for v in items
    ):
        raise ValueError(
            f"{name} must be a non-empty sequence of finite numbers > 0, got {values!r}"
        )
    return tuple(float(v) for v in items)


def _nested(values, name: str) -> bool:
    """Whether ``values`` (a non-empty sequence) holds one sequence per feature-map level; a flat
    one is read as torchvision reads it (sizes: one per level; aspect_ratios: the same for all)."""
    if not isinstance(values, (tuple, list)) or not values:
        raise ValueError(
            f"{name} must be a non-empty sequence (one entry per feature-map level), got {values!r}"
        )
    return isinstance(values[0], (tuple, list))


def _size_pair(value, name: str, integral: bool) -> tuple:
    """``value`` (one number or two, each > 0; ints when ``integral``) as ``(h, w)``."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    kind = numbers.Integral if integral else numbers.Real
    if len(items) != 2 or not all(
        isinstance(v, kind) and not isinstance(v, bool) and v > 0 for v in items
    ):
        what = "ints" if integral else "numbers"
        raise ValueError(f"{name} must be one or two {what} > 0 as (height, width), got {value!r}")
    return tuple(int(v) if integral else float(v) for v in items)


def _spatial_size(value, name: str) -> tuple:
    """(h, w) of a size pair, or of the last two axes of an array or Tensor."""
    if hasattr(value, "shape"):
        if len(value.shape) < 2:
            raise ValueError(
                f"{name} must be an (H, W) pair or an array whose last two axes are (H, W), "
                f"got an array of shape {tuple(value.shape)}"
            )
        value = tuple(int(n) for n in value.shape[-2:])
    return _size_pair(value, name, integral=True)


class AnchorGenerator:
    """Anchors over one or more feature maps, torchvision's ``AnchorGenerator`` as arrays.

    Args:
        sizes: per feature-map level, anchor sizes in image pixels (the side of the square
            of equal area); a flat sequence gives one size per level, as in torchvision.
        aspect_ratios: per level, height / width ratios; a flat sequence is used for every level.

    ``cell_anchors[level]`` holds the level's ``A = len(ratios) * len(sizes)`` anchors centred
    on 0, ``(A, 4)`` float64, ratio-major: anchor ``r * len(sizes) + s``.
    """

    def __init__(self, sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),)):
        levels = tuple(sizes) if _nested(sizes, "sizes") else tuple((s,) for s in sizes)
        ratios = (
            tuple(aspect_ratios)
            if _nested(aspect_ratios, "aspect_ratios")
            else (aspect_ratios,) * len(levels)
        )
        if len(levels) != len(ratios):
            raise ValueError(
                f"sizes and aspect_ratios must have one entry per feature-map level, "
                f"got {len(levels)} and {len(ratios)}"
            )
        self.sizes = tuple(_positive_numbers(s, f"sizes[{k}]") for k, s in enumerate(levels))
        self.aspect_ratios = tuple(
            _positive_numbers(r, f"aspect_ratios[{k}]") for k, r in enumerate(ratios)
        )
        self.cell_anchors = [
            self._centred_anchors(s, r) for s, r in zip(self.sizes, self.aspect_ratios)
        ]

    @staticmethod
    def _centred_anchors(sizes, ratios) -> np.ndarray:
        """(len(ratios) * len(sizes), 4) anchors centred on 0, ratio-major."""
        height_factor = np.sqrt(np.asarray(ratios))[:, None]
        heights = (height_factor * np.asarray(sizes)[None, :]).ravel()
        widths = (np.asarray(sizes)[None, :] / height_factor).ravel()
        return np.stack([-widths, -heights, widths, heights], axis=1) / 2

    def __repr__(self):
        return f"AnchorGenerator(sizes={self.sizes}, aspect_ratios={self.aspect_ratios})"

    def num_anchors_per_location(self) -> list:
        """Anchors at each position of each level's map: ``[A_0, A_1, ...]``."""
        return [len(anchors) for anchors in self.cell_anchors]

    def grid_anchors(self, grid_sizes, strides, device: str = "cpu") -> list:
        """Anchors over each level's map: a list of ``(H * W * A, 4)`` float32 arrays on ``device``,
        ordered by position (row-major) and then by anchor.

        Args:
            grid_sizes: per level, the map's ``(H, W)``.
            strides: per level, image pixels per map pixel, one number or ``(sh, sw)``.
        """
        for name, given in (("grid_sizes", grid_sizes), ("strides", strides)):
            if not isinstance(given, (tuple, list)) or len(given) != len(self.cell_anchors):
                raise ValueError(
                    f"{name} must have one entry per feature-map level ({len(self.cell_anchors)}), "
                    f"got {given!r}"
                )
        xp = xp_for_device(device)
        out = []
        for level, (size, stride, cell) in enumerate(zip(grid_sizes, strides, self.cell_anchors)):
            height, width = _size_pair(size, f"grid_sizes[{level}]", integral=True)
            stride_h, stride_w = _size_pair(stride, f"strides[{level}]", integral=False)
            centre_y, centre_x = xp.meshgrid(
                xp.arange(height) * stride_h, xp.arange(width) * stride_w, indexing="ij"
            )
            centres = xp.stack([centre_x, centre_y, centre_x, centre_y], axis=-1).reshape(-1, 1, 4)
            out.append((centres + xp.asarray(cell)[None]).reshape(-1, 4).astype(np.float32))
        return out

    def __call__(self, image_size, feature_maps):
        """All anchors for one image, ``(sum over levels of H * W * A, 4)`` float32.

        Args:
            image_size: the image's ``(H, W)``, or an image (batch) whose last two axes are (H, W).
            feature_maps: per level, the map's ``(H, W)``, or the map itself (last two axes); the
                anchors come back on the maps' device (a Tensor for Tensors).

        Each level's stride is ``image_size // map size``, torchvision's rule. It assumes maps
        that round down (VGG16 with floor pooling: 600 x 1000 -> 37 x 62, stride 16); for maps
        that round up (Caffe's ceil pooling: 38 x 63) it gives 15: call ``grid_anchors`` with
        the strides instead.
        """
        if not isinstance(feature_maps, (tuple, list)) or len(feature_maps) != len(
            self.cell_anchors
        ):
            seen = (
                len(feature_maps)
                if isinstance(feature_maps, (tuple, list))
                else type(feature_maps).__name__
            )
            raise ValueError(
                f"feature_maps must be a list with one map or (H, W) per level "
                f"({len(self.cell_anchors)}), got {seen}"
            )
        image_h, image_w = _spatial_size(image_size, "image_size")
        grid_sizes = [_spatial_size(m, f"feature_maps[{k}]") for k, m in enumerate(feature_maps)]
        for level, (h, w) in enumerate(grid_sizes):
            if h > image_h or w > image_w:
                raise ValueError(
                    f"feature_maps[{level}] ({h}x{w}) must not be larger than the image "
                    f"({image_h}x{image_w})"
                )
        strides = [(image_h // h, image_w // w) for h, w in grid_sizes]
        arrays = [m for m in feature_maps if hasattr(m, "shape")]
        raw, wrap = unwrap(arrays[0]) if arrays else (None, lambda anchors: anchors)
        device = device_of(raw)
        return wrap(
            xp_for_device(device).concatenate(
                self.grid_anchors(grid_sizes, strides, device), axis=0
            )
        )
