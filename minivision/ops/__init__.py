"""Box and region kernels mirroring ``torchvision.ops``: conversion, area, IoU, NMS, box
coding, anchors, RoI pooling and RoI Align.

Boxes are ``(x1, y1, x2, y2)`` floats in continuous coordinates (no "+1"). Every op takes
NumPy arrays, CuPy arrays or Tensors and returns the kind it was given; NumPy inputs run
Numba kernels, CuPy inputs CuPy kernels.
"""

from minivision.ops.anchors import AnchorGenerator
from minivision.ops.box_coder import BoxCoder
from minivision.ops.box_losses import (
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
)
from minivision.ops.boxes import (
    box_area,
    box_convert,
    box_iou,
    complete_box_iou,
    distance_box_iou,
    generalized_box_iou,
    matched_box_iou,
)
from minivision.ops.default_boxes import DefaultBoxes
from minivision.ops.nms import batched_nms, nms
from minivision.ops.roi_align import RoIAlign, roi_align
from minivision.ops.roi_pool import RoIPool, roi_pool

__all__ = [
    "AnchorGenerator",
    "BoxCoder",
    "DefaultBoxes",
    "RoIAlign",
    "RoIPool",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "complete_box_iou",
    "complete_box_iou_loss",
    "distance_box_iou",
    "distance_box_iou_loss",
    "generalized_box_iou",
    "generalized_box_iou_loss",
    "matched_box_iou",
    "nms",
    "roi_align",
    "roi_pool",
]
