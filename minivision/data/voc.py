"""Pascal VOC readers for a year folder on disk (e.g. ``VOCdevkit/VOC2007``).

Layout::

    root/Annotations/<id>.xml              detection boxes, names, difficult flags
    root/ImageSets/Main/<image_set>.txt    ids for detection (one per line)
    root/ImageSets/Segmentation/<image_set>.txt
    root/JPEGImages/<id>.jpg
    root/SegmentationClass/<id>.png        palette PNG: index k = class k, 0 background, 255 void

VOC corners are 1-based and inclusive: a box with xmin=1, xmax=W covers the whole first
row of pixels to the last. In continuous coordinates (DESIGN.md) that is x1 = xmin - 1,
y1 = ymin - 1, x2 = xmax, y2 = ymax.

Annotations are parsed without entity expansion: with defusedxml when installed,
otherwise by refusing any document that declares a DOCTYPE before ElementTree sees it.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from xml.parsers import expat

import numpy as np

from minivision.data._image import read_image, require
from minivision.data.coco import resolve_inside
from minivision.data.dataset import Dataset, empty_target

log = logging.getLogger(__name__)

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
VOID_LABEL = 255


def voc_colormap(n: int = 256) -> np.ndarray:
    """The (n, 3) uint8 VOC palette: colour of label k (bits of k spread over R, G, B)."""
    colours = np.zeros((n, 3), dtype=np.uint8)
    for label in range(n):
        value = label
        for shift in range(7, -1, -1):
            for channel in range(3):
                colours[label, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
    return colours


def _doctype_error(path: Path) -> ValueError:
    return ValueError(
        f"annotation file {str(path)!r} declares a DOCTYPE or entities; refusing to parse "
        f"it (possible entity-expansion attack); VOC annotations have none"
    )


def _refuse_doctype(data: bytes, path: Path) -> None:
    """Scan with expat (which decodes any declared encoding, unlike a byte search) and stop
    at the DOCTYPE, before any entity is declared or expanded."""

    def refuse(*_):
        raise _doctype_error(path)

    scanner = expat.ParserCreate()
    scanner.StartDoctypeDeclHandler = refuse
    scanner.EntityDeclHandler = refuse
    scanner.Parse(data, True)


def _parse_without_entities(data: bytes, path: Path) -> ElementTree.Element:
    try:
        defusedxml = require("defusedxml", "safe XML parsing")
    except ImportError:
        log.debug("defusedxml missing: scanning %s for DOCTYPEs before parsing", path)
        _refuse_doctype(data, path)
        return ElementTree.fromstring(data)
    safe = require("defusedxml.ElementTree", "safe XML parsing")
    try:
        return safe.fromstring(data, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise _doctype_error(path) from exc


def parse_xml(path) -> ElementTree.Element:
    """The root element of an XML file, parsed without DTDs or entity expansion.

    Raises FileNotFoundError for a missing file and ValueError for malformed XML or a
    document with a DOCTYPE/ENTITY declaration.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file {str(path)!r} does not exist") from None
    try:
        return _parse_without_entities(data, path)
    except (ElementTree.ParseError, expat.ExpatError) as exc:
        raise ValueError(f"annotation file {str(path)!r} is not well-formed XML: {exc}") from exc


def _read_ids(root: Path, task: str, image_set: str) -> tuple[Path, list[str]]:
    """The image set list's path and the ids it names (first word of each non-blank line)."""
    folder = root / "ImageSets" / task
    if not folder.is_dir():
        raise FileNotFoundError(
            f"VOC folder {str(root)!r} has no ImageSets/{task} folder; "
            f"root must be a year folder such as VOCdevkit/VOC2007"
        )
    listing = folder / f"{image_set}.txt"
    if not listing.is_file():
        available = sorted(p.stem for p in folder.glob("*.txt") if "_" not in p.stem)
        raise ValueError(
            f"unknown image_set {image_set!r}: {str(listing)!r} does not exist; "
            f"available: {available}"
        )
    return listing, [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]


def _require_dirs(root: Path, *names: str) -> None:
    if not root.is_dir():
        raise FileNotFoundError(f"VOC root {str(root)!r} does not exist or is not a folder")
    for name in names:
        if not (root / name).is_dir():
            raise FileNotFoundError(f"VOC folder {str(root)!r} has no {name} folder")


def _box(obj: ElementTree.Element, where: str) -> list[float]:
    """VOC's 1-based inclusive corners as a continuous xyxy box; ``where`` names the object."""
    corners = []
    for tag in ("bndbox/xmin", "bndbox/ymin", "bndbox/xmax", "bndbox/ymax"):
        text = obj.findtext(tag)
        try:
            value = float(text)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):  # float() also reads 'nan' and 'inf'
            raise ValueError(f"{where} field {tag} is {text!r}; expected a finite number")
        corners.append(value)
    xmin, ymin, xmax, ymax = corners
    return [xmin - 1, ymin - 1, xmax, ymax]


class _VOCFolder(Dataset):
    """A VOC-layout folder: the image ids of one ``ImageSets/<split_folder>/<image_set>.txt``.

    ``paths[i]`` holds image ``i``'s files, one per ``(folder, suffix)`` of ``files``, resolved
    and checked to lie inside their folder (an id such as ``../x`` or a symlink leading out is
    refused when the dataset is built).
    """

    class_names = VOC_CLASSES
    num_classes = len(VOC_CLASSES)
    split_folder = ""
    files = ()

    def __init__(self, root, image_set: str = "train", transform=None):
        self.root = Path(root)
        _require_dirs(self.root, *(folder for folder, _ in self.files))
        listing, self.ids = _read_ids(self.root, self.split_folder, image_set)
        folders = [((self.root / folder).resolve(), suffix) for folder, suffix in self.files]
        self.paths = [
            tuple(
                resolve_inside(
                    folder, stem + suffix, f"image set {str(listing)!r}: image id {stem!r} names"
                )
                for folder, suffix in folders
            )
            for stem in self.ids
        ]
        self.image_set = image_set
        self.transform = transform

    def __len__(self) -> int:
        return len(self.ids)


class VOCDetection(_VOCFolder):
    """Pascal VOC detection: ``(image (3, H, W) float32, target)``.

    Target: ``boxes`` (K, 4) float32 xyxy (x1 = xmin - 1, x2 = xmax), ``labels`` (K,) int64
    in 1..20 (``class_names[label - 1]``), ``difficult`` (K,) bool, ``image_id`` the file stem.
    With ``keep_difficult=False`` difficult objects are left out (for training);
    keep them (the default) for evaluation, where the VOC metric ignores them.
    """

    split_folder = "Main"
    files = (("JPEGImages", ".jpg"), ("Annotations", ".xml"))

    def __init__(self, root, image_set: str = "train", keep_difficult: bool = True, transform=None):
        super().__init__(root, image_set, transform)
        self.keep_difficult = bool(keep_difficult)

    def load(self, index: int):
        image_path, annotation_path = self.paths[index]
        image = read_image(image_path)
        target = self.read_target(annotation_path, image.shape[1:])
        target["image_id"] = self.ids[index]
        return image, target

    def read_target(self, path: Path, image_hw: tuple[int, int]) -> dict:
        """Boxes, labels and difficult flags of one annotation file, checked against the image."""
        height, width = image_hw
        boxes, labels, difficult = [], [], []
        for index, obj in enumerate(parse_xml(path).iter("object")):
            where = f"annotation {str(path)!r}: object {index}"
            name = (obj.findtext("name") or "").strip()
            if name not in VOC_CLASSES:
                raise ValueError(
                    f"{where} has unknown class name {name!r}; expected one of {VOC_CLASSES}"
                )
            box = _box(obj, where)
            if not (0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height):
                raise ValueError(
                    f"{where}: box {box} (x1, y1, x2, y2 after the 1-based "
                    f"conversion) lies outside the {width}x{height} image or is empty"
                )
            is_difficult = (obj.findtext("difficult") or "0").strip() == "1"
            if is_difficult and not self.keep_difficult:
                continue
            boxes.append(box)
            labels.append(VOC_CLASSES.index(name) + 1)
            difficult.append(is_difficult)
        target = empty_target()
        if boxes:
            target["boxes"] = np.array(boxes, dtype=np.float32)
            target["labels"] = np.array(labels, dtype=np.int64)
        target["difficult"] = np.array(difficult, dtype=bool)
        return target


class VOCSegmentation(_VOCFolder):
    """Pascal VOC semantic segmentation: ``(image (3, H, W) float32, {"semantic", "image_id"})``.

    ``semantic`` is (H, W) int64 read from the palette PNG's indices: 0 background,
    k = class k (``class_names[k - 1]``), 255 void (kept as 255, the loss's ignore_index).
    """

    ignore_index = VOID_LABEL
    split_folder = "Segmentation"
    files = (("JPEGImages", ".jpg"), ("SegmentationClass", ".png"))

    def load(self, index: int):
        stem = self.ids[index]
        image_path, label_path = self.paths[index]
        image = read_image(image_path)
        semantic = read_label_png(label_path)
        if semantic.shape != image.shape[1:]:
            raise ValueError(
                f"segmentation {stem!r}: label map is {semantic.shape}, image is {image.shape[1:]}"
            )
        return image, {"semantic": semantic, "image_id": stem}


def read_label_png(path) -> np.ndarray:
    """(H, W) int64 class indices of a palette ("P") or greyscale ("L") PNG."""
    image_module = require("PIL.Image", "reading VOC label maps")
    if not Path(path).is_file():
        raise FileNotFoundError(f"label map {str(path)!r} does not exist")
    with image_module.open(path) as img:
        if img.mode not in ("P", "L"):
            raise ValueError(
                f"label map {str(path)!r} has mode {img.mode!r}; expected a palette ('P') "
                f"PNG whose indices are class labels"
            )
        labels = np.asarray(img, dtype=np.int64)
    unexpected = np.setdiff1d(np.unique(labels), np.r_[0 : len(VOC_CLASSES) + 1, VOID_LABEL])
    if unexpected.size:
        raise ValueError(
            f"label map {str(path)!r} holds labels {unexpected.tolist()}; expected 0..20 or 255"
        )
    return labels
