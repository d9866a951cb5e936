"""The lecture's models, one file per family, and the registry the command uses.

Every registered model is a Module with a ``config`` dict (its constructor's arguments,
JSON-able, saved in checkpoints), a ``task`` ("detection" or "segmentation"),
``loss(images, targets)`` and ``predict(images)``.
"""
from minivision.models.localizer import Localizer

MODELS = {
    "localizer": Localizer,
}


def build_model(name: str, **config):
    """Construct a registered model by name."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[name](**config)


__all__ = ["MODELS", "Localizer", "build_model"]
