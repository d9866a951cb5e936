"""Datasets, loading and paired transforms.

``(image, target)`` samples: image (3, H, W) float32 in [0, 1]; target a dict of NumPy
arrays (boxes (K, 4) xyxy float32, labels (K,) int64 in 1..num_classes, masks (K, H, W)
bool, semantic (H, W) int64, ...), described in ``minivision.data.dataset``.
A DataLoader batch is ``(images Tensor (N, 3, H, W) float32, [target, ...])``.
"""

from minivision.data import transforms
from minivision.data.coco import COCODetection
from minivision.data.dataset import INSTANCE_KEYS, Dataset, Subset
from minivision.data.digits import DIGIT_CLASSES, DigitsOnCanvas
from minivision.data.loader import (
    DataLoader,
    default_collate,
    detection_collate,
    segmentation_collate,
)
from minivision.data.shapes import SHAPE_CLASSES, Shapes
from minivision.data.voc import VOC_CLASSES, VOCDetection, VOCSegmentation, voc_colormap

__all__ = [
    "COCODetection",
    "DIGIT_CLASSES",
    "DataLoader",
    "Dataset",
    "DigitsOnCanvas",
    "INSTANCE_KEYS",
    "SHAPE_CLASSES",
    "Shapes",
    "Subset",
    "VOCDetection",
    "VOCSegmentation",
    "VOC_CLASSES",
    "default_collate",
    "detection_collate",
    "segmentation_collate",
    "transforms",
    "voc_colormap",
]
