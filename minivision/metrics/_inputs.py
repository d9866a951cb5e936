"""Read and check the per-image prediction and target dicts of the detection metrics.

Each image is one dict: predictions hold ``boxes`` ``(K, 4)`` xyxy, ``scores`` ``(K,)`` and
``labels`` ``(K,)``; targets hold ``boxes``, ``labels`` and optionally ``difficult`` ``(G,)``.
Values may be NumPy or CuPy arrays, Tensors or lists; they come back as NumPy arrays
(float64 boxes and scores, int64 labels, bool difficult) so the metrics run on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minivision.backend import to_numpy
from minivision.ops._arrays import check_boxes, check_finite, check_vector, unwrap


@dataclass(frozen=True)
class ImageDetections:
    boxes: np.ndarray  # (K, 4) float64
    scores: np.ndarray  # (K,) float64
    labels: np.ndarray  # (K,) int64


@dataclass(frozen=True)
class ImageTargets:
    boxes: np.ndarray  # (G, 4) float64
    labels: np.ndarray  # (G,) int64
    difficult: np.ndarray  # (G,) bool


def _field(entry: dict, key: str, where: str) -> np.ndarray:
    if key not in entry:
        raise ValueError(
            f"{where} has no {key!r}; expected keys {sorted(entry)} to include {key!r}"
        )
    return to_numpy(unwrap(entry[key])[0])


def _boxes(entry: dict, where: str) -> np.ndarray:
    boxes = _field(entry, "boxes", where)
    if boxes.size == 0:  # np.array([]) is a fine way to say "no boxes"
        boxes = boxes.reshape(0, 4)
    return check_boxes(boxes, f"{where}['boxes']").astype(np.float64)


def _vector(entry: dict, key: str, where: str, length: int) -> np.ndarray:
    """One value per box: shape (length,); an empty array of any shape means none."""
    values = _field(entry, key, where)
    if values.size == 0:
        values = values.reshape(0)
    check_vector(values, f"{where}[{key!r}]", length, against=f"{where}['boxes']")
    return values


def _labels(entry: dict, where: str, length: int) -> np.ndarray:
    labels = _vector(entry, "labels", where, length)
    if labels.size and labels.dtype.kind not in "iu":
        raise TypeError(f"{where}['labels'] must hold integer class ids, got dtype {labels.dtype}")
    return labels.astype(np.int64)


def _check_dict(entry, where: str) -> None:
    if not isinstance(entry, dict):
        raise TypeError(
            f"{where} must be a dict with 'boxes', 'labels', ..., got {type(entry).__name__}"
        )


def read_detections(entry, where: str) -> ImageDetections:
    _check_dict(entry, where)
    boxes = _boxes(entry, where)
    scores = _vector(entry, "scores", where, len(boxes))
    if scores.size and scores.dtype.kind not in "iuf":
        raise TypeError(f"{where}['scores'] must hold real numbers, got dtype {scores.dtype}")
    scores = scores.astype(np.float64)
    check_finite(scores, f"{where}['scores']", np)
    return ImageDetections(boxes, scores, _labels(entry, where, len(boxes)))


def read_targets(entry, where: str) -> ImageTargets:
    _check_dict(entry, where)
    boxes = _boxes(entry, where)
    labels = _labels(entry, where, len(boxes))
    if "difficult" not in entry:
        return ImageTargets(boxes, labels, np.zeros(len(boxes), bool))
    difficult = _vector(entry, "difficult", where, len(boxes))
    if difficult.size and difficult.dtype.kind not in "biu":
        raise TypeError(f"{where}['difficult'] must hold booleans, got dtype {difficult.dtype}")
    return ImageTargets(boxes, labels, difficult.astype(bool))


def read_images(predictions, targets) -> list[tuple[ImageDetections, ImageTargets]]:
    """Check both lists (one dict per image, same length) and return them paired."""
    for name, value in (("predictions", predictions), ("targets", targets)):
        if isinstance(value, dict) or not hasattr(value, "__len__"):
            raise TypeError(
                f"{name} must be a list with one dict per image, got {type(value).__name__}"
            )
    if len(predictions) != len(targets):
        raise ValueError(
            f"predictions and targets must have one entry per image each, got {len(predictions)} "
            f"predictions and {len(targets)} targets"
        )
    return [
        (read_detections(p, f"predictions[{i}]"), read_targets(t, f"targets[{i}]"))
        for i, (p, t) in enumerate(zip(predictions, targets))
    ]
