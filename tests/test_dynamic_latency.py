"""Latency helpers: interleaved repeats, medians, thread settings restored."""

import numpy as np
import pytest
import torch
from vj_dynamic.latency import LatencyStats, compare_latency, measure_latency, torch_threads


def test_compare_latency_interleaves_and_summarises():
    order = []
    stats = compare_latency(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=1, repeats=4
    )
    assert order == ["a", "b"] * 5
    assert set(stats) == {"a", "b"} and stats["a"].repeats == 4
    assert stats["a"].p10_ms <= stats["a"].median_ms <= stats["a"].p90_ms
    assert stats["a"].min_ms <= stats["a"].median_ms and stats["a"].cpu_median_ms >= 0


def test_stats_from_seconds():
    stats = LatencyStats.from_seconds(np.array([0.003, 0.001, 0.002]))
    assert stats.median_ms == pytest.approx(2.0) and stats.repeats == 3
    assert stats.min_ms == pytest.approx(1.0) and stats.cpu_median_ms is None
    with_cpu = LatencyStats.from_seconds(np.array([0.003, 0.001]), np.array([0.002, 0.004]))
    assert with_cpu.cpu_median_ms == pytest.approx(3.0)
    with pytest.raises(ValueError):
        LatencyStats.from_seconds(np.array([]))


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
