"""What every benchmark here shares: a warmed-up median timer and writing its JSON results."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parent.parent)
)  # run from a checkout without installing

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


def _block(fn, repeats: int, synchronize):
    """(wall times of ``repeats`` calls of ``fn()`` in seconds, the result of an untimed call
    made first). ``synchronize`` (from ``synchronizer``) runs before each clock reading."""
    result = fn()
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return times, result


def timed(fn, repeats: int, synchronize=lambda: None):
    """(median wall time of ``fn()`` in seconds over ``repeats`` runs, ``fn``'s result).

    The result comes from an untimed warm-up call, which also absorbs Numba compilation,
    kernel compilation, allocator growth and first-touch pages."""
    times, result = _block(fn, repeats, synchronize)
    return statistics.median(times), result


def median_seconds(fn, repeats: int, synchronize=lambda: None) -> float:
    """Median wall time of ``fn()`` in seconds, after one untimed warm-up call."""
    return timed(fn, repeats, synchronize)[0]


def compare(
    fn_a, fn_b, repeats: int, synchronize=lambda: None, rounds: int = 3
) -> tuple[float, float]:
    """(median seconds of ``fn_a()``, of ``fn_b()``) from ``rounds`` alternating blocks of
    ``repeats`` timed calls each, every block after an untimed call.

    Alternating blocks spread a slow spell of a shared machine over both sides instead of
    one; calls are not interleaved one by one because PyTorch's OpenMP threads keep
    spinning for a while after each call and would slow the other side's next call (a 3x3
    conv forward here: 20 ms in a block, 29-33 ms right after each PyTorch call)."""
    times_a, times_b = [], []
    for _ in range(rounds):
        times_a += _block(fn_a, repeats, synchronize)[0]
        times_b += _block(fn_b, repeats, synchronize)[0]
    return statistics.median(times_a), statistics.median(times_b)


def write_results(name: str, payload: dict) -> Path:
    """Write ``payload`` as ``benchmarks/results/<name>`` atomically; return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    atomic_write(path, lambda f: f.write(json.dumps(payload, indent=1).encode()))
    return path
