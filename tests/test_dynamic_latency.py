"""Latency helpers: interleaved repeats, medians, thread settings restored."""

import numpy as np
import pytest
import torch

from dynamic.latency import (
    LatencyStats,
    compare_latency,
    compare_latency_over_inputs,
    measure_latency,
    torch_threads,
)


def test_compare_latency_interleaves_and_summarises():
    order = []
    stats = compare_latency(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=1, repeats=4
    )
    assert order == ["a", "b"] * 5
    assert set(stats) == {"a", "b"} and stats["a"].repeats == 4
    assert stats["a"].p10_ms <= stats["a"].median_ms <= stats["a"].p90_ms


def test_stats_from_seconds():
    stats = LatencyStats.from_seconds(np.array([0.003, 0.001, 0.002]))
    assert stats.median_ms == pytest.approx(2.0) and stats.repeats == 3
    assert stats.min_ms == pytest.approx(1.0)
    with pytest.raises(ValueError):
        LatencyStats.from_seconds(np.array([]))


def test_compare_over_inputs_times_every_input_and_averages_medians(monkeypatch):
    calls = []
    clock = iter(np.arange(0.0, 1000.0, 0.001))  # every perf_counter call advances 1 ms
    monkeypatch.setattr("dynamic.latency.time.perf_counter", lambda: next(clock))
    stats = compare_latency_over_inputs(
        {"f": lambda x: calls.append(("f", x)), "g": lambda x: calls.append(("g", x))},
        [1, 2, 3],
        warmup=1,
        repeats=2,
    )
    assert calls[:6] == [("f", 1), ("g", 1), ("f", 2), ("g", 2), ("f", 3), ("g", 3)]
    assert len(calls) == 6 * 3
    assert stats["f"].median_ms == pytest.approx(1.0) and stats["g"].min_ms == pytest.approx(1.0)
    with pytest.raises(ValueError):
        compare_latency_over_inputs({"f": print}, [])


def test_torch_threads_restores():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        with torch_threads(0):
            pass


def test_bad_arguments():
    with pytest.raises(ValueError):
        compare_latency({})
    with pytest.raises(ValueError):
        measure_latency(lambda: None, repeats=0)
