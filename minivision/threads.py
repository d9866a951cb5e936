"""minivision's worker threads: the CPU ops split their batch over them.

Two cores help only if threads never wait for one another. OpenBLAS and Numba's OpenMP layer
each keep a pool whose threads busy-wait after every call, and two such pools in one process
fight for the cores: here a parallel Numba max pool ran slower on two threads than on one
while OpenBLAS's threads were up, and a tiny-YOLO training step took 187 ms at default
threads against 120 ms with everything on one thread. So minivision keeps one pool of its
own, plain Python threads that sleep when idle, runs BLAS and its Numba kernels
single-threaded inside each worker, and gives each worker a share of the work; matrix
multiplies, NumPy copies and the ``nogil`` Numba kernels run without the GIL.

``set_num_threads(n)`` chooses n (default: the cores this process may use, or the
``MINIVISION_NUM_THREADS`` environment variable), like ``torch.set_num_threads``. At
minivision's first op that splits its work, BLAS is limited to one thread for the whole
process (through threadpoolctl), since minivision's own products are already split over
the workers; without threadpoolctl everything stays on one thread. Importing minivision
changes nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

log = logging.getLogger(__name__)

# Below this many bytes a part, handing work to another thread costs more than it saves.
MIN_PART_BYTES = 64 * 2**10

_requested: int | None = None  # set_num_threads' value; None: the environment's or the cores
_executor: ThreadPoolExecutor | None = None
_blas_limited: bool | None = None  # None: not tried yet; False: threadpoolctl is missing
_inside = threading.local()  # set in a worker: a nested parallel_map runs serially there


def _default_threads() -> int:
    value = os.environ.get("MINIVISION_NUM_THREADS")
    if value:
        try:
            return _checked(int(value), "MINIVISION_NUM_THREADS")
        except ValueError as exc:
            raise ValueError(
                f"MINIVISION_NUM_THREADS must be a positive integer, got {value!r}"
            ) from exc
    cores = (
        os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    )
    return max(1, len(cores))


def _checked(n, name: str = "num_threads") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return n


def set_num_threads(num_threads: int) -> None:
    """Use ``num_threads`` threads for minivision's CPU ops (1: everything on the calling thread)."""
    global _requested, _executor
    num_threads = _checked(num_threads)
    if _executor is not None and num_threads != get_num_threads():
        _executor.shutdown()
        _executor = None
    _requested = num_threads


def get_num_threads() -> int:
    """The number of threads minivision's CPU ops use."""
    return _requested if _requested is not None else _default_threads()


def _limit_blas() -> bool:
    """Limit BLAS to one thread for the process (tried once); False when threadpoolctl is missing."""
    global _blas_limited
    if _blas_limited is None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            log.warning("threadpoolctl is not installed: minivision runs its ops on one thread")
            _blas_limited = False
        else:
            threadpool_limits(limits=1, user_api="blas")
            log.debug(
                "BLAS limited to one thread; minivision splits its work over %d threads",
                get_num_threads(),
            )
            _blas_limited = True
    return _blas_limited


def _mark_worker():
    _inside.active = True


def _pool() -> ThreadPoolExecutor | None:
    """The running pool, started on first use; None when the work should stay serial."""
    global _executor
    if not _limit_blas() or get_num_threads() == 1 or getattr(_inside, "active", False):
        return None
    if _executor is None:
        _executor = ThreadPoolExecutor(
            get_num_threads(), thread_name_prefix="minivision", initializer=_mark_worker
        )
    return _executor


def parallel_map(fn, items) -> list:
    """[fn(item) for item in items], the items run on the worker threads. ``fn`` must only
    write to places no other item writes to. Inside a worker, or with one thread, serial."""
    items = list(items)
    pool = _pool()  # also limits BLAS, with one thread too
    if pool is None or len(items) < 2:
        return [fn(item) for item in items]
    return list(pool.map(fn, items))


def split(count: int, parts: int | None = None) -> list[slice]:
    """``range(count)`` in ``parts`` (default ``get_num_threads()``, at most ``count``)
    contiguous slices of near-equal size."""
    parts = max(1, min(get_num_threads() if parts is None else parts, count))
    bounds = [count * k // parts for k in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def batch_parts(array, max_parts: int | None = None, axis: int = 0) -> list[slice]:
    """Slices of ``array``'s ``axis`` (the batch by default), one per worker thread (at most
    ``max_parts``), for a NumPy array of at least ``MIN_PART_BYTES`` a part; one slice for
    a small or GPU array."""
    count = array.shape[axis]
    if not isinstance(array, np.ndarray):
        return [slice(0, count)]
    parts = min(
        get_num_threads(),
        max(1, array.nbytes // MIN_PART_BYTES),
        count if max_parts is None else max_parts,
    )
    return split(count, parts)


def over_batch(array, work, max_parts: int | None = None) -> list:
    """[work(share, shares)] for each worker's share (a slice of ``array``'s first axis, from
    ``batch_parts``), on the worker threads; ``shares`` is their number, for dividing a
    memory budget between them."""
    parts = batch_parts(array, max_parts)
    return parallel_map(lambda share: work(share, len(parts)), parts)
