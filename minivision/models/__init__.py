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
from minivision.models.localizer import Localizer

MODELS = {
    "localizer": Localizer,
}


def model_class(name: str):
    """The registered class called ``name``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(name: str, **config):
    """Construct a registered model by name from its constructor's arguments."""
    return model_class(name)(**config)


__all__ = ["MODELS", "Localizer", "build_model", "model_class"]
