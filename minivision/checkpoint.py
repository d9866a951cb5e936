"""Training checkpoints: model weights, optimizer and schedule state, history and RNG state
in one ``.npz`` (written atomically by ``mv.save``, read without pickle).

Arrays go under ``model/<name>`` and ``optimizer/<param index>/<key>``; everything else
(epoch, history, hyper-parameters, RNG state, the caller's ``meta``) is one JSON string.
"""

from __future__ import annotations

import json
import re

import numpy as np

from minivision import backend
from minivision.serialization import load, save

_META = "meta.json"


def save_checkpoint(
    path, model, optimizer=None, scheduler=None, epoch: int = 0, history=(), meta=None
) -> None:
    """Write everything needed to resume training after ``epoch`` epochs."""
    arrays = {f"model/{name}": t for name, t in model.state_dict().items()}
    info = {
        "epoch": int(epoch),
        "history": list(history),
        "meta": meta or {},
        "rng": backend.get_rng_state(),
    }
    if optimizer is not None:
        state = optimizer.state_dict()
        scalars = {}
        for index, entry in state["state"].items():
            for key, value in entry.items():
                if hasattr(value, "shape"):
                    arrays[f"optimizer/{index}/{key}"] = value
                else:
                    scalars.setdefault(str(index), {})[key] = value
        info["optimizer"] = {"param_groups": state["param_groups"], "scalars": scalars}
    if scheduler is not None:
        info["scheduler_epoch"] = scheduler.last_epoch
    arrays[_META] = np.array(json.dumps(info))
    save(arrays, path)


def read_checkpoint(path, max_bytes: int | None = None) -> tuple[dict, dict, dict]:
    """(model state, optimizer state in ``Optimizer.state_dict`` form or None, info dict).
    ``max_bytes``: see ``mv.load``. A file that is not a checkpoint ``save_checkpoint``
    could have written is a one-line ValueError naming the file and the key."""
    arrays = load(path, max_bytes=max_bytes)
    if _META not in arrays:
        raise ValueError(
            f"{path!s} is a .npz file but not a minivision checkpoint (no {_META!r} entry)"
        )
    info = _parse_info(path, arrays.pop(_META).numpy())
    model_state = {k[len("model/") :]: v for k, v in arrays.items() if k.startswith("model/")}
    optimizer_state = None
    if "optimizer" in info:
        per_param: dict = {}
        for key, value in arrays.items():
            if key.startswith("optimizer/"):
                match = re.fullmatch(r"optimizer/([0-9]+)/(.+)", key)
                _expect(
                    path, match, f"entry {key!r}", "named optimizer/<parameter index>/<name>", key
                )
                per_param.setdefault(int(match[1]), {})[match[2]] = value.data
        for index, scalars in info["optimizer"]["scalars"].items():
            per_param.setdefault(int(index), {}).update(scalars)
        optimizer_state = {"param_groups": info["optimizer"]["param_groups"], "state": per_param}
    return model_state, optimizer_state, info


def _parse_info(path, text: np.ndarray) -> dict:
    """The checkpoint's JSON info, checked against what ``save_checkpoint`` writes, so that
    nothing downstream meets a value of the wrong kind."""
    _expect(
        path,
        text.dtype.kind == "U" and text.ndim == 0,
        f"entry {_META!r}",
        "one text string",
        f"{text.dtype} array of shape {text.shape}",
    )
    try:
        info = json.loads(str(text))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path!s}: {_META} is not valid JSON ({exc})") from None
    _expect(path, isinstance(info, dict), _META, "a JSON object", info)
    for key in ("epoch", "history", "meta", "rng"):
        _expect(path, key in info, _META, f"an object with the key {key!r}", sorted(info))
    epoch, history = info["epoch"], info["history"]
    _expect(path, _is_int(epoch) and epoch >= 0, _at("epoch"), "a non-negative integer", epoch)
    _expect(path, isinstance(history, list), _at("history"), "a list of objects", history)
    for i, record in enumerate(history):
        _expect(path, isinstance(record, dict), _at("history", i), "an object of numbers", record)
        for key, value in record.items():
            _expect(
                path,
                _is_int(value) or isinstance(value, float),
                _at("history", i, key),
                "a number",
                value,
            )
    _expect(path, isinstance(info["meta"], dict), _at("meta"), "an object", info["meta"])
    _expect(
        path,
        _is_rng_state(info["rng"]),
        _at("rng"),
        "a generator state from backend.get_rng_state()",
        info["rng"],
    )
    if "optimizer" in info:
        _check_optimizer(path, info["optimizer"])
    if "scheduler_epoch" in info:
        _expect(
            path,
            _is_int(info["scheduler_epoch"]),
            _at("scheduler_epoch"),
            "an integer",
            info["scheduler_epoch"],
        )
    return info


def _check_optimizer(path, optimizer) -> None:
    _expect(
        path,
        isinstance(optimizer, dict) and {"param_groups", "scalars"} <= optimizer.keys(),
        _at("optimizer"),
        "an object with 'param_groups' and 'scalars'",
        optimizer,
    )
    groups, scalars = optimizer["param_groups"], optimizer["scalars"]
    _expect(
        path,
        isinstance(groups, list),
        _at("optimizer", "param_groups"),
        "a list of objects",
        groups,
    )
    for i, group in enumerate(groups):
        _expect(
            path, isinstance(group, dict), _at("optimizer", "param_groups", i), "an object", group
        )
    _expect(path, isinstance(scalars, dict), _at("optimizer", "scalars"), "an object", scalars)
    for index, entry in scalars.items():
        _expect(
            path,
            re.fullmatch("[0-9]+", index),
            _at("optimizer", "scalars"),
            "keyed by parameter indices",
            index,
        )
        _expect(
            path, isinstance(entry, dict), _at("optimizer", "scalars", index), "an object", entry
        )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_rng_state(rng) -> bool:
    """Whether ``backend.set_rng_state(rng)`` would accept it (tried on a spare generator)."""
    if not (isinstance(rng, dict) and rng.keys() >= {"seed", "numpy"}):
        return False
    if not (rng["seed"] is None or _is_int(rng["seed"])):
        return False
    try:
        np.random.default_rng(0).bit_generator.state = rng["numpy"]
    except (TypeError, ValueError, KeyError, OverflowError):
        return False
    return True


def _at(*keys) -> str:
    """Where a value sits in the JSON info, e.g. ``meta.json['history'][2]['loss']``."""
    return _META + "".join(f"[{key!r}]" for key in keys)


def _expect(path, ok, where: str, expected: str, seen) -> None:
    if not ok:
        shown = repr(seen) if len(repr(seen)) <= 60 else repr(seen)[:57] + "..."
        raise ValueError(f"{path!s}: {where} must be {expected}, got {shown}")


def load_checkpoint(path, model, optimizer=None, scheduler=None) -> dict:
    """Restore a checkpoint into ``model`` (and optimizer, scheduler, RNG); return its info
    (``epoch``, ``history``, ``meta``)."""
    model_state, optimizer_state, info = read_checkpoint(path)
    model.load_state_dict(model_state)
    if optimizer is not None and optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    if scheduler is not None and "scheduler_epoch" in info:
        scheduler.last_epoch = info["scheduler_epoch"]
    backend.set_rng_state(info["rng"])
    return info
