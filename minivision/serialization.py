"""Saving and loading named arrays as ``.npz``: no pickle, and never a half-written file.

``save`` writes to a temporary file beside the target and renames it over the target
only once the write has finished, so an interrupted save leaves the old file intact.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from collections import OrderedDict

import numpy as np

from minivision.backend import to_device, to_numpy
from minivision.tensor import Tensor


def _default_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``:
    readers see the old file or the whole new one, never half of it."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_file_mode())  # mkstemp makes it private (0600); give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save(obj, path) -> None:
    """Write a mapping of names to Tensors, arrays or numbers (e.g. a ``state_dict()``)."""
    if not hasattr(obj, "items"):
        raise TypeError(f"save expects a mapping of names to tensors (e.g. model.state_dict()), got {type(obj).__name__}")
    arrays = {}
    for name, value in obj.items():
        if not isinstance(name, str):
            raise TypeError(f"save: keys must be strings, got {name!r}")
        array = to_numpy(value.data if isinstance(value, Tensor) else value)
        if array.dtype == object:
            raise TypeError(f"save: value of {name!r} is not numeric (dtype object); only arrays can be saved")
        arrays[name] = array
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path, device="cpu") -> "OrderedDict[str, Tensor]":
    """Read what ``save`` wrote: an ordered mapping of names to Tensors on ``device``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = [(name, archive[name]) for name in archive.files]  # each entry read from the zip once
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"load: {path!r} is not a readable minivision .npz file ({exc})") from None
    # numbers go to ``device``; text (a checkpoint's meta.json) stays on the host, CuPy has no strings
    return OrderedDict((name, Tensor(to_device(a, device) if a.dtype.kind in "biuf" else a)) for name, a in arrays)
