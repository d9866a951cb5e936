"""Arguments shared by ``roi_pool`` and ``roi_align``: the feature map, the regions, the grid.

Regions come as torchvision takes them: a (K, 5) array or Tensor of rows (batch index,
x1, y1, x2, y2), or a list of (L_i, 4) arrays or Tensors of (x1, y1, x2, y2), one per
image (the batch index is the position in the list). The ops compute in the input's
dtype, as torchvision's kernels do; torchvision refuses boxes of another dtype, here
they are converted to the input's (what a caller would do first). float16 input is
refused: neither the Numba nor the CUDA kernels compute in it, and torchvision's CPU
RoI pooling refuses it too.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from minivision.backend import get_array_module, to_numpy

# The kernels index with int32 (as torchvision's do): scaled corners stay well inside its range.
MAX_COORD = 2**30


def _raw(value):
    from minivision.tensor import Tensor  # ops import without the engine (see _arrays.unwrap)

    return value.data if isinstance(value, Tensor) else value


def check_input(op: str, input):
    """The raw (N, C, H, W) float32/float64 array of ``input`` (a Tensor or an array)."""
    x = _raw(input)
    if not hasattr(x, "shape") or len(x.shape) != 4:
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ValueError(f"{op}: input must have shape (N, C, H, W), got {shape}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: input must be float32 or float64, got dtype {x.dtype}")
    if min(x.shape[2:]) < 1:
        raise ValueError(f"{op}: input must have H, W >= 1, got shape {tuple(x.shape)}")
    return x


def output_hw(op: str, output_size) -> tuple[int, int]:
    """``output_size`` (an int or a pair of ints) as (out_h, out_w), both positive."""
    size = (output_size, output_size) if isinstance(output_size, numbers.Integral) else output_size
    try:
        size = tuple(size)
    except TypeError:
        raise TypeError(
            f"{op}: output_size must be an int or a pair of ints, got {output_size!r}"
        ) from None
    if len(size) != 2 or not all(
        isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in size
    ):
        raise TypeError(f"{op}: output_size must be an int or a pair of ints, got {output_size!r}")
    if min(size) < 1:
        raise ValueError(f"{op}: output_size must be positive, got {output_size!r}")
    return int(size[0]), int(size[1])


def check_scale(op: str, spatial_scale) -> float:
    """``spatial_scale`` as a positive finite float."""
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, numbers.Real):
        raise TypeError(f"{op}: spatial_scale must be a positive number, got {spatial_scale!r}")
    if not (math.isfinite(spatial_scale) and spatial_scale > 0):
        raise ValueError(f"{op}: spatial_scale must be positive and finite, got {spatial_scale!r}")
    return float(spatial_scale)


def _real(op: str, array, name: str):
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{op}: {name} must hold real numbers, got dtype {array.dtype}")
    return array


def _stack_per_image(op: str, boxes, xp, dtype):
    """A list of (L_i, 4) boxes -> (K, 5) rows with the list position as batch index."""
    parts = []
    for i, image_boxes in enumerate(boxes):
        array = _real(op, xp.asarray(_raw(image_boxes)), f"boxes[{i}]")
        if array.ndim != 2 or array.shape[1] != 4:
            raise ValueError(
                f"{op}: boxes[{i}] must have shape (L, 4) as (x1, y1, x2, y2), got shape {tuple(array.shape)}"
            )
        index = xp.full((array.shape[0], 1), i, dtype=dtype)
        parts.append(xp.concatenate([index, array.astype(dtype)], axis=1))
    return xp.concatenate(parts) if parts else xp.zeros((0, 5), dtype=dtype)


def _first(mask) -> int:
    return int(to_numpy(mask).argmax())


def as_rois(op: str, boxes, x, spatial_scale: float):
    """``boxes`` as C-contiguous (K, 5) rows in ``x``'s dtype and device, and their batch
    indices (K,) int64, checked: integral batch indices in [0, N), finite coordinates,
    scaled corners within +-MAX_COORD."""
    xp = get_array_module(x)
    if isinstance(boxes, (list, tuple)):
        for image_boxes in boxes:
            get_array_module(x, _raw(image_boxes))  # one device: a clear error otherwise
        rois = _stack_per_image(op, boxes, xp, x.dtype)
    else:
        array = _raw(boxes)
        if not hasattr(array, "shape"):
            raise TypeError(
                f"{op}: boxes must be a (K, 5) Tensor or array, or a list of (L, 4) ones, "
                f"got {type(boxes).__name__}"
            )
        get_array_module(x, array)
        if array.ndim != 2 or array.shape[1] != 5:
            raise ValueError(
                f"{op}: boxes must have shape (K, 5) as (batch index, x1, y1, x2, y2), "
                f"or be a list of (L, 4) boxes per image, got shape {tuple(array.shape)}"
            )
        rois = _real(op, array, "boxes").astype(x.dtype)
    rois = xp.ascontiguousarray(rois)
    if rois.shape[0] == 0:
        return rois, xp.zeros(0, dtype=np.int64)
    index = rois[:, 0]
    problems = (  # (rows breaking a rule, its message for the first such row), checked in this order
        (
            ~xp.isfinite(rois).all(axis=1),
            lambda row: (
                f"{op}: boxes must be finite, got NaN or inf in row {row}: {to_numpy(rois[row]).tolist()}"
            ),
        ),
        (
            (index != xp.floor(index)) | (index < 0) | (index >= x.shape[0]),
            lambda row: (
                f"{op}: boxes' batch index must be an integer in [0, {x.shape[0]}) for input of "
                f"{x.shape[0]} images, got {to_numpy(index[row]).item()!r} in row {row}"
            ),
        ),
        (
            (xp.abs(rois[:, 1:].astype(np.float64)) * spatial_scale > MAX_COORD).any(axis=1),
            lambda row: (
                f"{op}: boxes times spatial_scale must lie within +-2**30, got row {row}: "
                f"{to_numpy(rois[row]).tolist()} with spatial_scale={spatial_scale!r}"
            ),
        ),
    )
    if bool(
        xp.stack([bad for bad, _ in problems]).any()
    ):  # one copy to the host for all three rules
        bad, message = next((bad, message) for bad, message in problems if bool(bad.any()))
        raise ValueError(message(_first(bad)))
    return rois, index.astype(np.int64)


def parse(op: str, input, boxes, output_size, spatial_scale):
    """Checked arguments of a RoI op: (x (N, C, H, W), rois (K, 5), batch (K,) int64,
    (out_h, out_w), spatial_scale as a scalar of x's dtype)."""
    x = check_input(op, input)
    out_hw = output_hw(op, output_size)
    scale = check_scale(op, spatial_scale)
    rois, batch = as_rois(op, boxes, x, scale)
    return x, rois, batch, out_hw, x.dtype.type(scale)
