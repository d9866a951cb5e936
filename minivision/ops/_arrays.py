"""Argument handling shared by the box ops: unwrap Tensors, check shapes and values.

Every public op takes NumPy arrays, CuPy arrays or Tensors and gives back the kind it was
given, so each op starts with ``unwrap`` and ends with the ``wrap`` it returned. The checks
raise errors that name the argument, what was seen and what was expected, before any
kernel sees the data.
"""

from __future__ import annotations

import numpy as np

from minivision.backend import device_of, get_array_module


def _identity(array):
    return array


def unwrap(value):
    """Return ``(array, wrap)``: the raw NumPy/CuPy array and a function that re-wraps a
    result in the caller's kind (a Tensor for a Tensor, the array itself otherwise).

    Lists and tuples become NumPy arrays, so ``box_area([[0, 0, 2, 2]])`` works.
    """
    # Imported here, not at module level: the engine stands above ops in the layout and
    # ops must stay importable on their own.
    from minivision.tensor import Tensor

    if isinstance(value, Tensor):
        return value.data, Tensor
    if isinstance(value, np.ndarray) or device_of(value) == "cuda":
        return value, _identity
    return np.asarray(value), _identity


def as_float(array, name: str):
    """Keep float32/float64 arrays as they are; promote integer and float16 arrays the way
    NumPy would combine them with float32 (int64 -> float64, float16 -> float32)."""
    kind = array.dtype.kind
    if kind == "f" and array.dtype.itemsize >= 4:
        return array
    if kind in "iuf":
        return array.astype(np.result_type(array.dtype, np.float32))
    raise TypeError(f"{name} must hold real numbers (float32 or float64), got dtype {array.dtype}")


def _first_bad_row(mask, xp) -> int:
    """Index of the first True in a 1-D boolean mask (a host int, whatever the device)."""
    return int(xp.argmax(mask))


def check_finite(array, name: str, xp) -> None:
    """Raise ValueError naming the first NaN/inf entry of ``array``."""
    bad = ~xp.isfinite(array)
    if bool(bad.any()):
        flat = _first_bad_row(bad.reshape(bad.shape[0], -1).any(axis=1), xp)
        raise ValueError(
            f"{name} must be finite, got NaN or inf at row {flat}: {array[flat].tolist()}"
        )


def check_boxes(boxes, name: str = "boxes"):
    """Validate an ``(N, 4)`` xyxy box array and return it as float32/float64.

    Checks: shape ``(N, 4)``, finite coordinates, ``x2 >= x1`` and ``y2 >= y1``.
    """
    xp = get_array_module(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"{name} must have shape (N, 4) as (x1, y1, x2, y2), got shape {tuple(boxes.shape)}"
        )
    boxes = as_float(boxes, name)
    check_finite(boxes, name, xp)
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bool(inverted.any()):
        row = _first_bad_row(inverted, xp)
        raise ValueError(
            f"{name} must satisfy x2 >= x1 and y2 >= y1 (format xyxy), got row {row}: "
            f"{boxes[row].tolist()}"
        )
    return boxes


def check_vector(array, name: str, length: int, against: str = "boxes") -> None:
    """Raise ValueError unless ``array`` has shape ``(length,)``, one entry per box."""
    if array.ndim != 1 or array.shape[0] != length:
        raise ValueError(
            f"{name} must have shape ({length},), one entry per row of {against}, "
            f"got shape {tuple(array.shape)}"
        )
