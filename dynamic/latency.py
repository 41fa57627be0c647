"""Wall-clock latency with warm-up, interleaved repeats and medians.

Timings on a shared CPU are noisy: other processes steal cores, and a multi-threaded
operator stalls when one of its threads is descheduled. Repeats of the variants being
compared are therefore interleaved (each round runs every variant once), so that a burst
of outside load hits all of them alike, and the median is reported rather than the mean.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["LatencyStats", "compare_latency", "measure_latency", "torch_threads"]


@dataclass(frozen=True)
class LatencyStats:
    """Summary of repeated timings of one callable, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int

    @classmethod
    def from_seconds(cls, seconds: np.ndarray) -> LatencyStats:
        """Summarise an array of durations given in seconds."""
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        if ms.size == 0:
            raise ValueError("no timings to summarise")
        p10, median, p90 = np.percentile(ms, [10, 50, 90])
        return cls(float(median), float(p10), float(p90), int(ms.size))


@contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """Temporarily set ``torch.set_num_threads``; restores the previous value on exit."""
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def compare_latency(
    fns: Mapping[str, Callable[[], object]], *, warmup: int = 3, repeats: int = 20
) -> dict[str, LatencyStats]:
    """Time several callables with interleaved repeats.

    Parameters
    ----------
    fns : mapping of str to callable
        Zero-argument callables, each doing one unit of work (e.g. one batch).
    warmup : int, optional
        Untimed rounds first: they fill caches and let oneDNN build its kernels.
    repeats : int, optional
        Timed rounds; each round calls every callable once, in turn.

    Returns
    -------
    dict of str to LatencyStats
        One summary per key of ``fns``.
    """
    if not fns:
        raise ValueError("fns is empty: nothing to time")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup} and {repeats}")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    seconds = {name: np.empty(repeats) for name in names}
    for r in range(repeats):
        for name in names:
            start = time.perf_counter()
            fns[name]()
            seconds[name][r] = time.perf_counter() - start
    return {name: LatencyStats.from_seconds(seconds[name]) for name in names}


def measure_latency(
    fn: Callable[[], object], *, warmup: int = 3, repeats: int = 20
) -> LatencyStats:
    """Time one zero-argument callable; see :func:`compare_latency`."""
    return compare_latency({"fn": fn}, warmup=warmup, repeats=repeats)["fn"]
