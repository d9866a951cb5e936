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


def timed(fn, repeats: int):
    """(median wall time of ``fn()`` in seconds over ``repeats`` runs, ``fn``'s result).

    The result comes from an untimed warm-up call, which also absorbs Numba compilation,
    allocator growth and first-touch pages."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds, after one untimed warm-up call."""
    return timed(fn, repeats)[0]


def write_results(name: str, payload: dict) -> Path:
    """Write ``payload`` as ``benchmarks/results/<name>`` atomically; return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    atomic_write(path, lambda f: f.write(json.dumps(payload, indent=1).encode()))
    return path
