"""COCO-format detection reader: an image folder and one instances JSON file.

COCO boxes are ``[x, y, width, height]`` in continuous pixel coordinates already, so
xyxy = (x, y, x + width, y + height). Category ids (sparse, e.g. 1..90 with gaps) become
contiguous labels 1..K in sorted id order; 0 stays the background.

The whole file is checked when the dataset is built, so a bad entry stops a run before
training rather than surfacing later as a NaN loss or a crash deep inside a batch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path

import numpy as np

from minivision.data._image import read_image
from minivision.data.dataset import Dataset, empty_target

log = logging.getLogger(__name__)

REQUIRED_KEYS = {
    "": ("images", "annotations", "categories"),
    "images": ("id", "file_name"),
    "annotations": ("image_id", "bbox", "category_id"),
    "categories": ("id", "name"),
}
TOLERANCE = 1.0  # pixels a box may overhang the image (COCO's float boxes do) before it is an error


# The checks run once per annotation (close to a million in COCO train), hence exact type tests:
# the json module gives exact ints and floats, and the bools it gives are not numbers here.
def _is_int(value) -> bool:
    return type(value) is int


def _is_finite_number(value) -> bool:
    """A finite float, or an int that stays finite as a float."""
    kind = type(value)
    return (kind is float and math.isfinite(value)) or (
        kind is int and abs(value) <= sys.float_info.max
    )


def _is_xywh(value) -> bool:
    """4 finite numbers with width, height >= 0 (zero-area boxes are skipped, not errors)."""
    return (
        type(value) is list
        and len(value) == 4
        and all(map(_is_finite_number, value))
        and value[2] >= 0
        and value[3] >= 0
    )


INTEGER = (_is_int, "an integer")
# Checks of every field the reader uses, whenever the field is present: field -> (check, expected).
FIELDS = {
    "images": {
        "id": INTEGER,
        "file_name": (
            lambda v: isinstance(v, str) and v != "" and "\0" not in v,
            "a non-empty file name",
        ),
    },
    "annotations": {
        "id": INTEGER,
        "image_id": INTEGER,
        "category_id": INTEGER,
        "bbox": (_is_xywh, "[x, y, width, height]: 4 finite numbers with width, height >= 0"),
        "iscrowd": (lambda v: _is_int(v) and v in (0, 1), "0 or 1"),
    },
    "categories": {"id": INTEGER, "name": (lambda v: isinstance(v, str), "a string")},
}


def _short(value) -> str:
    """repr of a JSON value, cut so that a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _entry_name(section: str, index: int, entry: dict) -> str:
    """``annotations[3] (id 12)``: position in the file, and the id where the entry has one."""
    return f"{section}[{index}]" + (f" (id {_short(entry['id'])})" if "id" in entry else "")


def _check_section(where: str, section: str, entries) -> None:
    """Each entry is an object with the required keys, well-typed fields and an id of its own."""
    if not isinstance(entries, list):
        raise ValueError(f"{where}: {section!r} is {_short(entries)}; expected a list of objects")
    required = REQUIRED_KEYS[section]
    first_index_of = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: {section}[{i}] is {_short(entry)}; expected an object")
        missing = [k for k in required if k not in entry]
        if missing:
            raise ValueError(
                f"{where}: {section}[{i}] lacks {missing}; each entry needs {required}"
            )
        for field, (check, expected) in FIELDS[section].items():
            if field in entry and not check(entry[field]):
                raise ValueError(
                    f"{where}: {_entry_name(section, i, entry)} field {field!r} is "
                    f"{_short(entry[field])}; expected {expected}"
                )
        if "id" in entry:
            first = first_index_of.setdefault(entry["id"], i)
            if first != i:
                raise ValueError(
                    f"{where}: {section}[{i}] repeats id {entry['id']} of {section}[{first}]; "
                    f"ids in {section!r} must be unique"
                )


def _load_json(path: Path) -> dict:
    """The parsed annotation file, each section checked by ``_check_section``."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation_file {str(path)!r} does not exist")
    where = f"annotation_file {str(path)!r}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{where} must hold a JSON object, got {type(data).__name__}")
    for key in REQUIRED_KEYS[""]:
        if key not in data:
            raise ValueError(f"{where} has no {key!r} key; a COCO file needs {REQUIRED_KEYS['']}")
    for section in REQUIRED_KEYS[""]:
        _check_section(where, section, data[section])
    return data


def resolve_inside(folder: Path, name: str, context: str) -> Path:
    """``folder / name`` with symlinks resolved; ``folder`` must be resolved already.

    Raises a ValueError starting with ``context`` when the result is not strictly inside
    ``folder`` (an absolute name, ``..`` or a symlink leading out).
    """
    path = os.path.join(folder, name)
    # folder is resolved, so a plain file name can only add a symlink at its last component: one
    # lstat for it, where realpath makes one per component (for each of a hundred thousand images).
    if name != os.path.basename(name) or name in (".", "..") or os.path.islink(path):
        path = os.path.realpath(path)
    if not path.startswith(os.path.join(folder, "")):
        raise ValueError(f"{context} {name!r}, which resolves to {path!r}, outside {str(folder)!r}")
    return Path(path)


class COCODetection(Dataset):
    """COCO detection: ``(image (3, H, W) float32, target)``.

    Target: ``boxes`` (K, 4) float32 xyxy, ``labels`` (K,) int64 in 1..num_classes,
    ``iscrowd`` (K,) bool, ``image_id`` the COCO image id (int). Images are ordered by id;
    an image without annotations has K = 0.

    Crowd annotations (``iscrowd=1``, one box around many objects) are left out unless
    ``keep_crowd=True``, where they come flagged in ``iscrowd`` (COCO evaluation ignores
    detections matched to them). Boxes with no area are skipped; boxes reaching more than
    one pixel outside the image are an error.

    The annotation file is checked when the dataset is built: field types, finite boxes with
    width, height >= 0, unique ids, known image and category ids, and image paths that stay
    inside ``image_dir`` once symlinks are resolved.

    Attributes: ``class_names`` (in label order), ``category_ids`` (``category_ids[label - 1]``
    is the COCO id), ``label_of`` (COCO id -> label), ``image_paths`` (resolved, in image order).
    """

    def __init__(self, image_dir, annotation_file, keep_crowd: bool = False, transform=None):
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(
                f"image_dir {str(self.image_dir)!r} does not exist or is not a folder"
            )
        self.annotation_file = Path(annotation_file)
        data = _load_json(self.annotation_file)
        where = f"annotation_file {str(self.annotation_file)!r}"
        categories = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids = [c["id"] for c in categories]
        self.class_names = tuple(c["name"] for c in categories)
        self.label_of = {cid: label for label, cid in enumerate(self.category_ids, start=1)}
        self.images = sorted(data["images"], key=lambda im: im["id"])
        image_dir = self.image_dir.resolve()
        self.image_paths = [
            resolve_inside(
                image_dir, im["file_name"], f"{where}: image id {im['id']} has file_name"
            )
            for im in self.images
        ]
        self.keep_crowd = bool(keep_crowd)
        self.transform = transform
        self._annotations = {im["id"]: [] for im in self.images}
        for i, ann in enumerate(data["annotations"]):
            if ann["image_id"] not in self._annotations:
                raise ValueError(
                    f"{where}: {_entry_name('annotations', i, ann)} refers to image_id "
                    f"{ann['image_id']}, which is not in 'images'"
                )
            if ann["category_id"] not in self.label_of:
                raise ValueError(
                    f"{where}: {_entry_name('annotations', i, ann)} has category_id "
                    f"{ann['category_id']}, not in 'categories' {self.category_ids}"
                )
            if self.keep_crowd or not ann.get("iscrowd", 0):
                self._annotations[ann["image_id"]].append(ann)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int):
        info = self.images[index]
        image = read_image(self.image_paths[index])
        target = self._target(info, image.shape[1:])
        return image, target

    def _target(self, info: dict, image_hw: tuple[int, int]) -> dict:
        height, width = image_hw
        boxes, labels, crowd = [], [], []
        for ann in self._annotations[info["id"]]:
            x, y, w, h = ann["bbox"]
            if w == 0 or h == 0:  # negative sizes were refused when the file was read
                log.debug(
                    "skipping annotation %s of image %s: box %s has no area",
                    ann.get("id"),
                    info["id"],
                    ann["bbox"],
                )
                continue
            if (
                x < -TOLERANCE
                or y < -TOLERANCE
                or x + w > width + TOLERANCE
                or y + h > height + TOLERANCE
            ):
                raise ValueError(
                    f"annotation {ann.get('id')} of image {info['file_name']!r}: bbox {ann['bbox']} "
                    f"(x, y, w, h) lies outside the {width}x{height} image"
                )
            boxes.append([x, y, x + w, y + h])
            labels.append(self.label_of[ann["category_id"]])
            crowd.append(bool(ann.get("iscrowd", 0)))
        target = empty_target()
        if boxes:
            size = np.array([width, height, width, height], dtype=np.float32)
            target["boxes"] = np.clip(
                np.array(boxes, dtype=np.float32), 0, size
            )  # the tolerated overhang
            target["labels"] = np.array(labels, dtype=np.int64)
        target["iscrowd"] = np.array(crowd, dtype=bool)
        target["image_id"] = info["id"]
        return target
