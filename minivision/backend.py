"""NumPy/CuPy dispatch: one code path for the CPU and the GPU.

Every op asks ``xp = get_array_module(*arrays)`` and writes ``xp.`` calls, so the same
source runs on NumPy arrays (device ``"cpu"``) and CuPy arrays (device ``"cuda"``).
CuPy is optional: it is imported only when a CUDA device is asked for or a CuPy array
is seen, and its absence is reported with an error that says how to install it.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np

DEVICES = ("cpu", "cuda")

_cupy = None


def _load_cupy():
    """Import CuPy on first use; raise a clear error when it is missing or has no GPU."""
    global _cupy
    if _cupy is None:
        try:
            _cupy = importlib.import_module("cupy")
        except ImportError as exc:
            raise RuntimeError(
                "device 'cuda' needs CuPy, which is not installed; install it with "
                "pip install 'minivision[gpu]' (CUDA 12) or 'minivision[gpu13]' (CUDA 13)"
            ) from exc
    return _cupy


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    try:
        cp = _load_cupy()
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: all mean "no GPU here"
        return False


def _is_cupy_array(array) -> bool:
    # Look CuPy up in sys.modules rather than importing it: a CuPy array can only exist
    # once CuPy has been imported by someone.
    cp = sys.modules.get("cupy")
    return cp is not None and isinstance(array, cp.ndarray)


def device_of(array) -> str:
    """The device name, ``"cpu"`` or ``"cuda"``, of a NumPy/CuPy array or a Python scalar."""
    return "cuda" if _is_cupy_array(array) else "cpu"


def check_device(device) -> str:
    """Normalise a device argument (``"cpu"``, ``"cuda"``, ``"cuda:0"``) to ``"cpu"``/``"cuda"``."""
    name = str(device).split(":")[0] if device is not None else "cpu"
    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    return name


def get_array_module(*arrays):
    """Return ``numpy`` or ``cupy``, whichever module the arrays belong to.

    Non-array arguments (Python scalars, None) are ignored. Mixing NumPy and CuPy arrays
    raises a ValueError naming both devices instead of failing deep inside an op.
    """
    devices = {device_of(a) for a in arrays if a is not None and hasattr(a, "shape")}
    if len(devices) > 1:
        raise ValueError(
            "arrays are on different devices: got both 'cpu' and 'cuda'; "
            "move them to one device first (tensor.to('cpu') or tensor.to('cuda'))"
        )
    if devices == {"cuda"}:
        return sys.modules["cupy"]
    return np


def xp_for_device(device):
    """The array module for a device name."""
    return _load_cupy() if check_device(device) == "cuda" else np


def to_device(array, device):
    """Return ``array`` on ``device`` (a copy only when it has to move)."""
    target = check_device(device)
    if device_of(array) == target:
        return array
    if target == "cuda":
        return _load_cupy().asarray(array)
    return array.get()


def to_numpy(array) -> np.ndarray:
    """Always a NumPy array, whatever device ``array`` lives on."""
    return array.get() if _is_cupy_array(array) else np.asarray(array)


_generator = None
_seed: int | None = None


def manual_seed(seed: int) -> None:
    """Seed the random numbers minivision draws (dropout, initialisation) on every device."""
    global _seed, _generator
    _seed = int(seed)
    _generator = None


def random_generator() -> np.random.Generator:
    """The module-wide NumPy ``Generator``, seeded by ``manual_seed``. Random numbers for the
    GPU are drawn here too and then moved there: one seed gives the same dropout masks and
    initial weights on either device, and a checkpoint's generator state resumes a GPU run
    bit for bit (CuPy's own generator state cannot be saved)."""
    global _generator
    if _generator is None:
        _generator = np.random.default_rng(_seed)
    return _generator


def get_rng_state() -> dict:
    """The NumPy generator's state (JSON-able), for checkpoints that resume bit for bit."""
    return {"seed": _seed, "numpy": random_generator().bit_generator.state}


def set_rng_state(state: dict) -> None:
    """Restore what ``get_rng_state`` returned."""
    global _seed
    _seed = state["seed"]
    random_generator().bit_generator.state = state["numpy"]
