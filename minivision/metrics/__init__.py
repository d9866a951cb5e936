"""Evaluation: detection AP/mAP (VOC2007, VOC2010+, COCO), localization accuracy and the
FCN paper's segmentation scores. Inputs may live on the CPU or the GPU; scores are
computed with NumPy."""

from minivision.metrics.detection import DetectionResult, evaluate_detections
from minivision.metrics.localization import localization_accuracy
from minivision.metrics.segmentation import SegmentationMetric, SegmentationScores

__all__ = [
    "DetectionResult",
    "SegmentationMetric",
    "SegmentationScores",
    "evaluate_detections",
    "localization_accuracy",
]
