"""The lecture's models, one file per family, and the registry the command uses.

Every registered model class has
- ``task``: "detection" or "segmentation";
- ``tiny(num_classes, image_size)``: the small configuration trained on synthetic data,
  ``num_classes`` counting object classes only (labels 1..num_classes, 0 = background);
- ``config``: its constructor's keyword arguments (JSON-able, saved in checkpoints), so
  ``cls(**model.config)`` rebuilds it; a segmentation model's ``config["num_classes"]``
  counts the background too (``tiny`` passes num_classes + 1);
- ``loss(images, targets)``: a scalar Tensor from images (N, 3, H, W) and a list of N
  target dicts (``minivision.data`` format);
- ``predict(images)``: detection: a list of N dicts of NumPy arrays ``boxes`` (K, 4) xyxy,
  ``labels`` (K,) in 1..num_classes, ``scores`` (K,); segmentation: an (N, H, W) int64
  NumPy array of labels, 0 = background.
"""

from dataclasses import dataclass

from minivision.models.faster_rcnn import FasterRCNN
from minivision.models.fcn import FCN
from minivision.models.localizer import Localizer
from minivision.models.overfeat import OverFeat
from minivision.models.rcnn import RCNN, FastRCNN
from minivision.models.segnet import SegNet
from minivision.models.ssd import SSD
from minivision.models.unet import UNet
from minivision.models.yolo import YOLOv1

MODELS = {
    "faster_rcnn": FasterRCNN,
    "fast_rcnn": FastRCNN,
    "fcn": FCN,
    "localizer": Localizer,
    "overfeat": OverFeat,
    "rcnn": RCNN,
    "segnet": SegNet,
    "ssd": SSD,
    "unet": UNet,
    "yolo": YOLOv1,
}


@dataclass(frozen=True)
class Recipe:
    """How ``minivision train`` trains a model's tiny configuration on synthetic data
    unless told otherwise: Adam with cosine decay over ``epochs``."""

    epochs: int = 10
    lr: float = 2e-3
    batch_size: int = 32
    train_images: int = 2048
    max_objects: int = 1  # objects per synthetic image: 1 for localization
    image_size: int = 64  # unless --image-size says otherwise
    # Shapes' object sizes as fractions (smallest, largest) of the image side, drawn
    # log-uniformly; None: Shapes' default of 0.15-0.45
    object_sizes: tuple | None = None


# Shapes renders each image from its index, so 8,192 distinct images cost no more per step
# than 2,048 seen four times, and they do not overfit: 20 passes over 2,048 gave the tiny YOLO
# mAP 0.96 on its training images and 0.735 on validation; 5 passes over 8,192 give 0.87.
RECIPES = {
    "faster_rcnn": Recipe(epochs=3, train_images=4096, max_objects=3),
    "fast_rcnn": Recipe(epochs=5, train_images=4096, max_objects=3),
    "fcn": Recipe(epochs=8, lr=3e-3, train_images=8192),
    "localizer": Recipe(epochs=10, train_images=8192),
    "overfeat": Recipe(epochs=5, train_images=8192),
    "rcnn": Recipe(epochs=3, train_images=4096, max_objects=3),
    "segnet": Recipe(epochs=12, lr=3e-3),
    # objects of 8-48 pixels in a 96 x 96 image: what SSD's several source maps are for
    "ssd": Recipe(
        epochs=4, train_images=4096, max_objects=3, image_size=96, object_sizes=(1 / 12, 1 / 2)
    ),
    "unet": Recipe(epochs=12, lr=3e-3),
    "yolo": Recipe(epochs=5, train_images=8192, max_objects=3),
}


def model_class(name: str):
    """The registered class called ``name``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(name: str, **config):
    """Construct a registered model by name from its constructor's arguments."""
    return model_class(name)(**config)


__all__ = [
    "FCN",
    "FastRCNN",
    "FasterRCNN",
    "MODELS",
    "RCNN",
    "RECIPES",
    "Localizer",
    "OverFeat",
    "Recipe",
    "SSD",
    "SegNet",
    "UNet",
    "YOLOv1",
    "build_model",
    "model_class",
]
