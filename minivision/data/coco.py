"""COCO-format detection reader: an image folder and one instances JSON file.

COCO boxes are ``[x, y, width, height]`` in continuous pixel coordinates already, so
xyxy = (x, y, x + width, y + height). Category ids (sparse, e.g. 1..90 with gaps) become
contiguous labels 1..K in sorted id order; 0 stays the background.
"""
from __future__ import annotations

import json
import logging
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


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"annotation_file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"annotation_file {str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"annotation_file {str(path)!r} must hold a JSON object, got {type(data).__name__}")
    for key in REQUIRED_KEYS[""]:
        if key not in data:
            raise ValueError(f"annotation_file {str(path)!r} has no {key!r} key; a COCO file needs "
                             f"{REQUIRED_KEYS['']}")
    for section, keys in REQUIRED_KEYS.items():
        for i, entry in enumerate(data.get(section, [])):
            missing = [k for k in keys if k not in entry]
            if missing:
                raise ValueError(f"annotation_file {str(path)!r}: {section}[{i}] lacks {missing}; "
                                 f"each entry needs {keys}")
    return data


class COCODetection(Dataset):
    """COCO detection: ``(image (3, H, W) float32, target)``.

    Target: ``boxes`` (K, 4) float32 xyxy, ``labels`` (K,) int64 in 1..num_classes,
    ``iscrowd`` (K,) bool, ``image_id`` the COCO image id (int). Images are ordered by id;
    an image without annotations has K = 0.

    Crowd annotations (``iscrowd=1``, one box around many objects) are left out unless
    ``keep_crowd=True``, where they come flagged in ``iscrowd`` (COCO evaluation ignores
    detections matched to them). Boxes with no area are skipped; boxes reaching more than
    one pixel outside the image are an error.

    Attributes: ``class_names`` (in label order), ``category_ids`` (``category_ids[label - 1]``
    is the COCO id), ``label_of`` (COCO id -> label).
    """

    def __init__(self, image_dir, annotation_file, keep_crowd: bool = False, transform=None):
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image_dir {str(self.image_dir)!r} does not exist or is not a folder")
        self.annotation_file = Path(annotation_file)
        data = _load_json(self.annotation_file)
        categories = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids = [c["id"] for c in categories]
        self.class_names = tuple(c["name"] for c in categories)
        self.label_of = {cid: label for label, cid in enumerate(self.category_ids, start=1)}
        self.images = sorted(data["images"], key=lambda im: im["id"])
        self.keep_crowd = bool(keep_crowd)
        self.transform = transform
        self._annotations = {im["id"]: [] for im in self.images}
        for ann in data["annotations"]:
            if ann["image_id"] not in self._annotations:
                raise ValueError(f"annotation_file {str(self.annotation_file)!r}: annotation {ann.get('id')} "
                                 f"refers to image_id {ann['image_id']}, which is not in 'images'")
            if ann["category_id"] not in self.label_of:
                raise ValueError(f"annotation_file {str(self.annotation_file)!r}: annotation {ann.get('id')} "
                                 f"has category_id {ann['category_id']}, not in 'categories' {self.category_ids}")
            if self.keep_crowd or not ann.get("iscrowd", 0):
                self._annotations[ann["image_id"]].append(ann)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int):
        info = self.images[index]
        image = read_image(self.image_dir / info["file_name"])
        target = self._target(info, image.shape[1:])
        return image, target

    def _target(self, info: dict, image_hw: tuple[int, int]) -> dict:
        height, width = image_hw
        boxes, labels, crowd = [], [], []
        for ann in self._annotations[info["id"]]:
            x, y, w, h = (float(v) for v in ann["bbox"])
            if w <= 0 or h <= 0:
                log.debug("skipping annotation %s of image %s: box %s has no area",
                          ann.get("id"), info["id"], ann["bbox"])
                continue
            if x < -TOLERANCE or y < -TOLERANCE or x + w > width + TOLERANCE or y + h > height + TOLERANCE:
                raise ValueError(f"annotation {ann.get('id')} of image {info['file_name']!r}: bbox {ann['bbox']} "
                                 f"(x, y, w, h) lies outside the {width}x{height} image")
            boxes.append([x, y, x + w, y + h])
            labels.append(self.label_of[ann["category_id"]])
            crowd.append(bool(ann.get("iscrowd", 0)))
        target = empty_target()
        if boxes:
            size = np.array([width, height, width, height], dtype=np.float32)
            target["boxes"] = np.clip(np.array(boxes, dtype=np.float32), 0, size)  # the tolerated overhang
            target["labels"] = np.array(labels, dtype=np.int64)
        target["iscrowd"] = np.array(crowd, dtype=bool)
        target["image_id"] = info["id"]
        return target
