"""Training checkpoints: model weights, optimizer and schedule state, history and RNG state
in one ``.npz`` (written atomically by ``mv.save``, read without pickle).

Arrays go under ``model/<name>`` and ``optimizer/<param index>/<key>``; everything else
(epoch, history, hyper-parameters, RNG state, the caller's ``meta``) is one JSON string.
"""
from __future__ import annotations

import json

import numpy as np

from minivision import backend
from minivision.serialization import load, save

_META = "meta.json"


def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch: int = 0, history=(), meta=None) -> None:
    """Write everything needed to resume training after ``epoch`` epochs."""
    arrays = {f"model/{name}": t for name, t in model.state_dict().items()}
    info = {"epoch": int(epoch), "history": list(history), "meta": meta or {}, "rng": backend.get_rng_state()}
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


def read_checkpoint(path) -> tuple[dict, dict, dict]:
    """(model state, optimizer state in ``Optimizer.state_dict`` form or None, info dict)."""
    arrays = load(path)
    if _META not in arrays:
        raise ValueError(f"{path!s} is a .npz file but not a minivision checkpoint (no {_META!r} entry)")
    info = json.loads(str(arrays.pop(_META).numpy()))
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    optimizer_state = None
    if "optimizer" in info:
        per_param: dict = {}
        for key, value in arrays.items():
            if key.startswith("optimizer/"):
                _, index, name = key.split("/", 2)
                per_param.setdefault(int(index), {})[name] = value.data
        for index, scalars in info["optimizer"]["scalars"].items():
            per_param.setdefault(int(index), {}).update(scalars)
        optimizer_state = {"param_groups": info["optimizer"]["param_groups"], "state": per_param}
    return model_state, optimizer_state, info


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
