"""minivision's worker threads: how work is split, and that splitting changes no result."""

import threading

import numpy as np
import pytest

import minivision as mv
import minivision.functional as F
from minivision import threads
from minivision.functional import conv as conv_module


@pytest.fixture
def three_threads(monkeypatch):
    """Three workers, and every array, however small, worth splitting."""
    previous = mv.get_num_threads()
    monkeypatch.setattr(threads, "MIN_PART_BYTES", 1)
    mv.set_num_threads(3)
    yield
    mv.set_num_threads(previous)


@pytest.mark.parametrize("count, parts", [(10, 3), (2, 3), (7, 1), (0, 2), (9, 9)])
def test_split_covers_the_range_in_near_equal_contiguous_slices(count, parts):
    slices = threads.split(count, parts)
    assert len(slices) == max(1, min(parts, count))
    assert slices[0].start == 0 and slices[-1].stop == count
    assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))
    sizes = [s.stop - s.start for s in slices]
    assert max(sizes) - min(sizes) <= 1


def test_batch_parts_keeps_small_arrays_and_respects_max_parts(three_threads, monkeypatch):
    assert len(threads.batch_parts(np.zeros((6, 4)))) == 3
    assert len(threads.batch_parts(np.zeros((6, 4)), max_parts=2)) == 2
    monkeypatch.setattr(threads, "MIN_PART_BYTES", 64 * 2**10)
    assert threads.batch_parts(np.zeros((6, 4))) == [slice(0, 6)]  # 192 bytes: not worth a thread


def test_batch_parts_gives_one_part_for_arrays_that_are_not_numpy(three_threads):
    class DeviceArray:  # stands for a CuPy array: the GPU parallelises on its own
        shape = (8, 4)

    assert threads.batch_parts(DeviceArray()) == [slice(0, 8)]


def test_parallel_map_keeps_order_and_uses_the_workers(three_threads):
    names = threads.parallel_map(lambda k: (k, threading.current_thread().name), range(6))
    assert [k for k, _ in names] == list(range(6))
    assert all(name.startswith("minivision") for _, name in names)


def test_a_nested_parallel_map_runs_serially_inside_its_worker(three_threads):
    def outer(k):
        here = threading.current_thread().name
        return threads.parallel_map(lambda j: threading.current_thread().name == here, range(4))

    assert all(all(same) for same in threads.parallel_map(outer, range(3)))


def test_one_thread_runs_everything_on_the_calling_thread():
    previous = mv.get_num_threads()
    mv.set_num_threads(1)
    try:
        here = threading.current_thread().name
        assert (
            threads.parallel_map(lambda k: threading.current_thread().name, range(4)) == [here] * 4
        )
    finally:
        mv.set_num_threads(previous)


@pytest.mark.parametrize("count", [1, 3])
def test_the_first_op_limits_blas_to_one_thread_whatever_the_count(count, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    previous = mv.get_num_threads()
    monkeypatch.setattr(threads, "_blas_limited", None)  # as in a fresh process
    threadpoolctl.threadpool_limits(limits=2, user_api="blas")
    mv.set_num_threads(count)
    try:
        threads.parallel_map(lambda k: k, range(1))
    finally:
        mv.set_num_threads(previous)
    blas = [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    assert blas and all(lib["num_threads"] == 1 for lib in blas)


def test_without_threadpoolctl_everything_runs_serially_with_one_warning(
    three_threads, monkeypatch, caplog
):
    monkeypatch.setattr(threads, "_blas_limited", None)
    monkeypatch.setitem(
        __import__("sys").modules, "threadpoolctl", None
    )  # import raises ImportError
    here = threading.current_thread().name
    for _ in range(2):
        assert (
            threads.parallel_map(lambda k: threading.current_thread().name, range(3)) == [here] * 3
        )
    warnings = [r for r in caplog.records if "threadpoolctl is not installed" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_set_num_threads_rejects_what_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match=r"num_threads must be a positive int, got"):
        mv.set_num_threads(bad)


def test_a_bad_environment_value_is_named(monkeypatch):
    monkeypatch.setattr(threads, "_requested", None)
    monkeypatch.setenv("MINIVISION_NUM_THREADS", "many")
    with pytest.raises(
        ValueError, match="MINIVISION_NUM_THREADS must be a positive integer, got 'many'"
    ):
        mv.get_num_threads()
    monkeypatch.setenv("MINIVISION_NUM_THREADS", "2")
    assert mv.get_num_threads() == 2


def _forward_and_gradients(fn, arrays, seed=0):
    """fn's output and every input's gradient under one fixed random upstream gradient."""
    inputs = [mv.Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*inputs)
    out.backward(np.random.default_rng(seed).standard_normal(out.shape))
    return [out.numpy()] + [t.grad.numpy() for t in inputs]


def _unpool_round_trip(x):
    pooled, switches = F.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    return F.max_unpool2d(pooled * 2.0, switches, 3, stride=2, padding=1, output_size=x.shape[2:])


CASES = {
    "3x3 conv (Winograd)": (lambda x, w: F.conv2d(x, w, padding=1), [(5, 3, 9, 8), (4, 3, 3, 3)]),
    "3x3/2 conv (im2col, col2im)": (
        lambda x, w: F.conv2d(x, w, stride=2, padding=1),
        [(5, 3, 9, 8), (4, 3, 3, 3)],
    ),
    "5x5 conv (flipped adjoint)": (
        lambda x, w: F.conv2d(x, w, padding=2),
        [(5, 3, 9, 8), (4, 3, 5, 5)],
    ),
    "4x4/2 transposed conv (phases)": (
        lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1),
        [(5, 3, 6, 7), (3, 4, 4, 4)],
    ),
    "max pool and unpool": (_unpool_round_trip, [(5, 3, 9, 8)]),
    "bilinear upsampling (planes split)": (
        lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
        [(5, 3, 9, 8)],
    ),
    "leaky relu (elements split)": (lambda x: F.leaky_relu(x, 0.1), [(5, 3, 9, 8)]),
    "batch norm (channels split)": (
        lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
        [(5, 4, 6, 7), (4,), (4,)],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("budget", [None, 16 * 2**10], ids=["whole-samples", "row-bands"])
def test_ops_split_over_threads_give_the_one_thread_result(name, budget, three_threads, rng):
    fn, shapes = CASES[name]
    arrays = [rng.standard_normal(s) for s in shapes]
    previous_budget = conv_module.get_workspace_budget()
    try:
        if budget is not None:  # pieces of a few output rows of one sample
            conv_module.set_workspace_budget(budget)
        split = _forward_and_gradients(fn, arrays)
        mv.set_num_threads(1)
        serial = _forward_and_gradients(fn, arrays)
    finally:
        conv_module.set_workspace_budget(previous_budget)
    for what, a, b in zip(
        ["output"] + [f"gradient {i}" for i in range(len(arrays))], split, serial
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=what)


@pytest.mark.parametrize("name", list(CASES))
def test_float16_takes_the_array_path_and_agrees_with_float32(name, rng):
    """Numba does not compute in float16: such arrays take each op's array (xp) path. Values
    a shuffled grid in [-2, 2), spaced wider than float16's rounding there: no new ties."""
    fn, shapes = CASES[name]
    arrays = [
        (rng.permutation(int(np.prod(s))) * (4 / np.prod(s)) - 2).reshape(s).astype(np.float32)
        for s in shapes
    ]
    half = _forward_and_gradients(fn, [a.astype(np.float16) for a in arrays])
    single = _forward_and_gradients(fn, arrays)
    for what, a, b in zip(["output"] + [f"gradient {i}" for i in range(len(arrays))], half, single):
        assert a.dtype == np.float16, what
        np.testing.assert_allclose(
            a.astype(np.float32), b, rtol=2e-2, atol=5e-2 * max(1.0, np.abs(b).max()), err_msg=what
        )
