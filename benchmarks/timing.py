"""What every benchmark here shares: a warmed-up median timer and writing its JSON results."""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from minivision.serialization import atomic_write  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def synchronizer(device: str):
    """A function that waits until the device has finished its queued work: GPU calls return
    before the GPU is done, so a timer must wait for both CuPy's and PyTorch's streams."""
    if device == "cpu":
        return lambda: None
    import cupy
    import torch

    def synchronize():
        cupy.cuda.Device().synchronize()
        torch.cuda.synchronize()

    return synchronize


def timed(fn, repeats: int, synchronize=lambda: None):
    """(median wall time of ``fn()`` in seconds over ``repeats`` runs, ``fn``'s result).

    The result comes from an untimed warm-up call, which also absorbs Numba compilation,
    kernel compilation, allocator growth and first-touch pages. ``synchronize`` (from
    ``synchronizer``) runs before each clock reading."""
    result = fn()
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def median_seconds(fn, repeats: int, synchronize=lambda: None) -> float:
    """Median wall time of ``fn()`` in seconds, after one untimed warm-up call."""
    return timed(fn, repeats, synchronize)[0]


def write_results(name: str, payload: dict) -> Path:
    """Write ``payload`` as ``benchmarks/results/<name>`` atomically; return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    atomic_write(path, lambda f: f.write(json.dumps(payload, indent=1).encode()))
    return path
