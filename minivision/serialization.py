"""Saving and loading named arrays as ``.npz``: no pickle, and never a half-written file.

``save`` writes to a temporary file beside the target and renames it over the target
only once the write has finished, so an interrupted save leaves the old file intact; the
temporary files of writes that were killed are removed by the next write in that folder.
``load`` reads only numeric and text arrays, and refuses, before reading any data, an
archive that would take more than ``MAX_LOAD_BYTES`` of memory (see ``_npz_guard``).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections import OrderedDict

import numpy as np

from minivision._npz_guard import read_npz
from minivision.backend import to_device, to_numpy
from minivision.tensor import Tensor

try:
    import fcntl
except ImportError:  # Windows: no flock, so temporary files are not cleaned up there
    fcntl = None

log = logging.getLogger(__name__)

MAX_LOAD_BYTES = 2 * 1024**3
"""The most memory (bytes) ``load`` lets an archive's arrays take, unless given ``max_bytes``:
far above any model trained with minivision, and low enough that a few-megabyte zip bomb
is refused instead of expanding to gigabytes."""


def _default_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``:
    readers see the old file or the whole new one, never half of it."""
    path = os.fspath(path)
    folder, suffix = os.path.dirname(os.path.abspath(path)), os.path.splitext(path)[1]
    _remove_abandoned_temp_files(folder, suffix)
    fd, tmp = _locked_temp_file(folder, suffix)
    lock = (
        os.dup(fd) if fcntl else None
    )  # shares the lock, which stays held until the rename is done
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(
            tmp, _default_file_mode()
        )  # mkstemp makes it private (0600); give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        if lock is not None:
            os.close(lock)


# Each writer holds an exclusive flock on its temporary file from creating it until it is
# renamed. The kernel drops the locks of a process that dies (kill -9 included), so a
# temporary file that nobody holds a lock on belongs to a write that will never finish.
# flock, not fcntl's record locks: those are per process, so two threads would not see
# each other's lock, and closing any descriptor of the file would drop it.


def _locked_temp_file(folder: str, suffix: str) -> tuple[int, str]:
    """(descriptor, path) of a new temporary file in ``folder`` that this process holds locked."""
    while True:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
        if fcntl is None:
            return fd, tmp
        # Another writer's cleanup may have caught the file in the instant before this lock,
        # removed it and still hold it; the lock waits for that, then the file must still be ours.
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except (
            OSError
        ):  # a file system without locks: the file stays unlocked, and nothing is cleaned up there
            return fd, tmp
        try:
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)


def _remove_abandoned_temp_files(folder: str, suffix: str) -> None:
    """Remove the temporary files (named as ``_locked_temp_file`` names them, with this
    suffix) that no live writer holds locked."""
    if fcntl is None:
        return
    pattern = re.compile(r"\.tmp-[a-z0-9_]{8}" + re.escape(suffix))  # mkstemp's 8 random characters
    for name in os.listdir(folder):
        if not pattern.fullmatch(name):
            continue
        stale = os.path.join(folder, name)
        try:
            fd = os.open(stale, os.O_RDONLY)
        except OSError:  # finished (renamed) meanwhile, or not ours to read
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(stale)  # locked: its writer is dead; a renamed file is not under this name
            log.info("removed %s, left by a write that was interrupted", stale)
        except OSError:  # held by a live writer, already gone, or on a file system without locks
            pass
        finally:
            os.close(fd)


def save(obj, path) -> None:
    """Write a mapping of names to Tensors, arrays or numbers (e.g. a ``state_dict()``)."""
    if not hasattr(obj, "items"):
        raise TypeError(
            f"save expects a mapping of names to tensors (e.g. model.state_dict()), got {type(obj).__name__}"
        )
    arrays = {}
    for name, value in obj.items():
        if not isinstance(name, str):
            raise TypeError(f"save: keys must be strings, got {name!r}")
        array = to_numpy(value.data if isinstance(value, Tensor) else value)
        if array.dtype == object:
            raise TypeError(
                f"save: value of {name!r} is not numeric (dtype object); only arrays can be saved"
            )
        arrays[name] = array
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path, device="cpu", max_bytes: int | None = None) -> "OrderedDict[str, Tensor]":
    """Read what ``save`` wrote: an ordered mapping of names to Tensors on ``device``.

    An archive whose arrays would take more than ``max_bytes`` (default ``MAX_LOAD_BYTES``)
    is refused before any of its data is read; so is anything that is not a ``.npz`` of
    numeric or text arrays, with a ValueError naming the file and what it is."""
    path = os.fspath(path)
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1
    ):
        raise ValueError(
            f"load: max_bytes must be a positive integer number of bytes, got {max_bytes!r}"
        )
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no file at {path!r}")
    try:
        arrays = read_npz(path, MAX_LOAD_BYTES if max_bytes is None else max_bytes)
    except OSError as exc:  # a folder, or a file this user may not read
        raise ValueError(
            f"load: {path!r} is not a readable minivision .npz file ({exc.strerror})"
        ) from None
    # numbers go to ``device``; text (a checkpoint's meta.json) stays on the host, CuPy has no strings
    return OrderedDict(
        (name, Tensor(to_device(a, device) if a.dtype.kind in "biuf" else a)) for name, a in arrays
    )
