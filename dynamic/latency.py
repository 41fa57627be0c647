"""Wall-clock latency with warm-up, interleaved repeats and medians.

Timings on a shared CPU are noisy: other processes steal cores, and a multi-threaded
operator stalls when one of its threads is descheduled. Repeats of the variants being
compared are therefore interleaved (each round runs every variant once), so that a burst
of outside load hits all of them alike, and medians are reported rather than means.

When the work is a set of inputs (e.g. 64 test images at batch size 1),
:func:`compare_latency_over_inputs` times every call on its own and takes, for each
input, the median over repeats: a call that was preempted is an outlier of its own
input, not noise spread over a long sweep. The per-input medians are then averaged, so
that every input counts once (a dynamic network's latency depends on the input).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "LatencyStats",
    "compare_latency",
    "compare_latency_over_inputs",
    "measure_latency",
    "torch_threads",
]


@dataclass(frozen=True)
class LatencyStats:
    """Summary of repeated timings of one callable, in milliseconds.

    ``min_ms`` is the best case: on a loaded machine, the time without interruptions.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    repeats: int

    @classmethod
    def from_seconds(cls, seconds: np.ndarray) -> LatencyStats:
        """Summarise an array of durations given in seconds."""
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        if ms.size == 0:
            raise ValueError("no timings to summarise")
        p10, median, p90 = np.percentile(ms, [10, 50, 90])
        return cls(float(median), float(p10), float(p90), float(ms.min()), int(ms.size))


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


def compare_latency_over_inputs(
    fns: Mapping[str, Callable[[Any], object]],
    inputs: Sequence[Any],
    *,
    warmup: int = 2,
    repeats: int = 9,
) -> dict[str, LatencyStats]:
    """Time several one-argument callables on each of several inputs, interleaved.

    Parameters
    ----------
    fns : mapping of str to callable
        Each takes one input (e.g. one batch) and does the work to be timed.
    inputs : sequence
        The inputs; every callable is timed on every input.
    warmup : int, optional
        Untimed rounds over all inputs first.
    repeats : int, optional
        Timed rounds; a round calls every callable on every input, input by input.

    Returns
    -------
    dict of str to LatencyStats
        Per callable: the mean over inputs of each input's median (and 10th / 90th
        percentile, and minimum) over repeats, in milliseconds per call.
    """
    if not fns or len(inputs) == 0:
        raise ValueError("need at least one callable and one input")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup} and {repeats}")
    names = list(fns)
    for _ in range(warmup):
        for x in inputs:
            for name in names:
                fns[name](x)
    seconds = {name: np.empty((repeats, len(inputs))) for name in names}
    for r in range(repeats):
        for i, x in enumerate(inputs):
            for name in names:
                start = time.perf_counter()
                fns[name](x)
                seconds[name][r, i] = time.perf_counter() - start
    out = {}
    for name in names:
        ms = seconds[name] * 1e3
        p10, median, p90 = np.percentile(ms, [10, 50, 90], axis=0)
        out[name] = LatencyStats(
            float(median.mean()),
            float(p10.mean()),
            float(p90.mean()),
            float(ms.min(axis=0).mean()),
            repeats,
        )
    return out
