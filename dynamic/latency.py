"""Wall-clock latency with warm-up, interleaved repeats and medians.

Timings on a shared CPU are noisy: other processes steal cores, and a multi-threaded
operator stalls when one of its threads is descheduled. Repeats of the variants being
compared are therefore interleaved (each round runs every variant once), so that a burst
of outside load hits all of them alike, and medians are reported rather than means.

Each repeat should be long enough (a sweep over many inputs, hundreds of milliseconds)
that preemptions inflate every variant in proportion to its work: a single 3 ms call is
either interrupted by a whole scheduler time slice or not at all, which adds the same
milliseconds to a fast and a slow variant and hides the difference between them.

The process CPU time of the same repeats is recorded too: with one thread it is what
the wall-clock time would be on an idle machine, and outside load barely moves it.
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
    """Summary of repeated timings of one callable, in milliseconds.

    Attributes
    ----------
    median_ms, p10_ms, p90_ms, min_ms : float
        Wall-clock time per call: median, 10th and 90th percentiles, minimum.
    cpu_median_ms : float or None
        Median process CPU time per call (all threads), when recorded.
    repeats : int
        Number of timed calls.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    repeats: int
    cpu_median_ms: float | None = None

    @classmethod
    def from_seconds(
        cls, seconds: np.ndarray, cpu_seconds: np.ndarray | None = None
    ) -> LatencyStats:
        """Summarise durations given in seconds (wall-clock, and optionally CPU time)."""
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        if ms.size == 0:
            raise ValueError("no timings to summarise")
        p10, median, p90 = np.percentile(ms, [10, 50, 90])
        cpu = None if cpu_seconds is None else float(np.median(cpu_seconds) * 1e3)
        return cls(float(median), float(p10), float(p90), float(ms.min()), int(ms.size), cpu)


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
    cpu_seconds = {name: np.empty(repeats) for name in names}
    for r in range(repeats):
        for name in names:
            cpu_start, start = time.process_time(), time.perf_counter()
            fns[name]()
            seconds[name][r] = time.perf_counter() - start
            cpu_seconds[name][r] = time.process_time() - cpu_start
    return {name: LatencyStats.from_seconds(seconds[name], cpu_seconds[name]) for name in names}


def measure_latency(
    fn: Callable[[], object], *, warmup: int = 3, repeats: int = 20
) -> LatencyStats:
    """Time one zero-argument callable; see :func:`compare_latency`."""
    return compare_latency({"fn": fn}, warmup=warmup, repeats=repeats)["fn"]
