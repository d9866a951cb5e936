"""What ``minivision train`` records about a run in its checkpoint (the ``meta`` entry), and
the check that a checkpoint's record has that form before any model is built from it.

    {"model": "yolo", "config": {...the tiny model's constructor arguments...},
     "data": "shapes", "class_names": ["circle", ...], "max_objects": 3}

``config`` is always the tiny configuration, so it is rebuilt from ``model``, the number of
class names and ``config["image_size"]`` and must come out equal.
"""

from __future__ import annotations

import json

from minivision.models import MODELS

# The largest image side a checkpoint may name: 16 times the largest tiny input a course uses.
MAX_IMAGE_SIZE = 8192


def make_meta(name: str, model, data: str, class_names, max_objects: int) -> dict:
    return {
        "model": name,
        "config": model.config,
        "data": data,
        "class_names": list(class_names),
        "max_objects": max_objects,
    }


def _require(condition: bool, path, key: str, expected: str, seen) -> None:
    if not condition:
        shown = repr(seen) if len(repr(seen)) <= 60 else repr(seen)[:57] + "..."
        raise ValueError(f"{path!s}: checkpoint meta {key!r} must be {expected}, got {shown}")


def check_meta(meta, path) -> dict:
    """``meta`` itself when it has the form ``make_meta`` writes; else a ValueError naming the
    file, the key and what was expected. The config is compared by ``config_matches``."""
    _require(
        isinstance(meta, dict) and "model" in meta,
        path,
        "meta",
        "an object naming a model (the checkpoint was not written by `minivision train`)",
        meta,
    )
    _require(
        meta["model"] in MODELS, path, "model", f"one of {', '.join(sorted(MODELS))}", meta["model"]
    )
    names = meta.get("class_names")
    _require(
        isinstance(names, list) and len(names) > 0 and all(isinstance(n, str) and n for n in names),
        path,
        "class_names",
        "a non-empty list of names",
        names,
    )
    _require(
        isinstance(meta.get("data"), str) and meta["data"] != "",
        path,
        "data",
        "a data spec such as 'shapes'",
        meta.get("data"),
    )
    objects = meta.get("max_objects", 1)
    _require(
        isinstance(objects, int) and not isinstance(objects, bool) and objects >= 1,
        path,
        "max_objects",
        "a positive integer",
        objects,
    )
    config = meta.get("config")
    _require(isinstance(config, dict), path, "config", "an object of constructor arguments", config)
    size = config.get("image_size")
    _require(
        isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= MAX_IMAGE_SIZE,
        path,
        "config.image_size",
        f"an integer from 1 to {MAX_IMAGE_SIZE}",
        size,
    )
    return meta


def config_matches(model, meta, path) -> None:
    """Raise unless ``model`` (built by ``tiny`` from the meta) has the meta's config."""
    built = json.loads(json.dumps(model.config))
    if built != meta["config"]:
        differing = sorted(
            k for k in set(built) | set(meta["config"]) if built.get(k) != meta["config"].get(k)
        )
        raise ValueError(
            f"{path!s}: checkpoint meta 'config' is not the tiny {meta['model']} configuration for "
            f"{len(meta['class_names'])} classes at image_size {meta['config']['image_size']} "
            f"(differs in {', '.join(differing)})"
        )
