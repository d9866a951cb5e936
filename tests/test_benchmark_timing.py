"""The benchmarks' shared timer: alternating blocks, each after an untimed call, and medians."""

import pytest

from tests.helpers import benchmark_module


@pytest.fixture(scope="module")
def timing():
    return benchmark_module("timing")


def test_compare_alternates_blocks_each_after_an_untimed_call(timing, monkeypatch):
    calls, clock = [], iter(range(10_000))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    durations = {"a": 1, "b": 3}

    def make(name):
        def fn():
            calls.append(name)
            for _ in range(
                durations[name] - 1
            ):  # each extra clock reading in between stretches the call
                next(clock)

        return fn

    a, b = timing.compare(make("a"), make("b"), repeats=2, rounds=3)
    assert (
        calls == (["a"] * 3 + ["b"] * 3) * 3
    )  # per round: warm-up + 2 timed calls of each, a first
    assert (a, b) == (1, 3)


def test_timed_returns_the_median_and_the_warm_up_result(timing, monkeypatch):
    readings = iter([0, 5, 10, 11, 20, 29])  # timed calls of 5, 1 and 9 ticks
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(readings))
    assert timing.timed(lambda: "result", repeats=3) == (5, "result")
