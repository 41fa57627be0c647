"""The dynamic-network benchmark: does computation skipped turn into time saved?

Trains, on an offline dataset with a spread of difficulty (digits at four corruption
levels, :mod:`.graded_digits`), a dense CIFAR-style ResNet and its SkipNet version, and
an IDK cascade (logistic regression -> small CNN -> the SkipNet, against the ResNet),
then measures, side
by side, FLOPs per sample (counted with ``FlopCounterMode`` and checked against the
analytic model) and their spread over the test set, the execution paths, median
wall-clock latency and test accuracy; then sweeps gate thresholds, batch sizes and
thread counts for FLOPs saved against time saved. ``vj-bench dynamic``
(:mod:`vj_apps.bench.dynamic`) is the command-line front end.

The parts: :mod:`.config` (settings, dataset), :mod:`.training` (the networks),
:mod:`.skipnet_measurement`, :mod:`.policy`, :mod:`.systems`, :mod:`.idk_measurement`
and :mod:`.report`.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from vj_dynamic.bench.config import BenchmarkConfig, Log, load_dataset, with_overrides
from vj_dynamic.bench.idk_measurement import measure_idk
from vj_dynamic.bench.policy import describe_policy
from vj_dynamic.bench.report import format_report
from vj_dynamic.bench.skipnet_measurement import engine_check, measure_skipnet
from vj_dynamic.bench.systems import plot_systems, systems_sweep
from vj_dynamic.bench.training import train_skipnet
from vj_dynamic.latency import torch_threads
from vj_dynamic.skipnet_training import evaluate
from vj_dynamic.weights import save_weights

__all__ = ["BenchmarkConfig", "format_report", "load_dataset", "run_benchmark", "with_overrides"]


def _measure(dense, gated, data, config, log, plot, figure) -> dict:
    out = {"skipnet": measure_skipnet(dense, gated, data, config, log)}
    out["policy"] = describe_policy(dense, gated, data)
    rate = float(evaluate(gated, data.x_test, data.y_test).executed.mean())
    out["engine"] = engine_check(dense, gated, data, config, rate, log)
    out["sweep"] = []
    if config.sweep_batch_sizes:
        out["sweep"] = systems_sweep(dense, gated, data, config, log)
    if figure and out["sweep"]:
        plot_systems(out["sweep"], figure)
        log(f"systems figure written to {figure}")
    out["idk"] = measure_idk(dense, gated, data, config, log, plot)
    return out


def run_benchmark(
    config: BenchmarkConfig,
    *,
    log: Log = print,
    plot: str | None = None,
    weights_dir: str | None = None,
    figure: str | None = None,
) -> dict:
    """Train, measure and return the results (see ``BENCHMARKS.md`` for the format).

    Parameters
    ----------
    config : BenchmarkConfig
        What to run.
    log : callable, optional
        Receives progress lines.
    plot : str, optional
        Where to save the IDK cost / accuracy frontier plot.
    weights_dir : str, optional
        Existing folder where the trained dense ResNet and SkipNet are saved as state
        dicts (``resnet.pt``, ``skipnet.pt``).
    figure : str, optional
        Where to save the systems figure (FLOPs saved vs time saved).

    Returns
    -------
    dict
        ``{"skipnet": {batch size: entry}, "idk": {...}, "details": {...}}``.
    """
    if weights_dir is not None and not Path(weights_dir).is_dir():
        raise ValueError(f"weights folder {weights_dir} does not exist")
    start, cpu_start, load_start = time.perf_counter(), time.process_time(), os.getloadavg()
    data = load_dataset(config)
    sizes = (len(data.y_train), len(data.y_val), len(data.y_test))
    log(f"data {data.name}: train / val / test = {sizes}")
    # Everything but the timed loops runs with train_threads (see BenchmarkConfig).
    with torch_threads(config.train_threads):
        dense, gated, history = train_skipnet(data, config, log)
        if weights_dir is not None:
            save_weights(dense, Path(weights_dir) / "resnet.pt")
            save_weights(gated, Path(weights_dir) / "skipnet.pt")
        val = evaluate(gated, data.x_val, data.y_val)
        train_seconds = time.perf_counter() - start
        measured = _measure(dense, gated, data, config, log, plot, figure)
    details = {
        "config": asdict(config),
        "dataset": data.name,
        "gate_threshold": gated.gate_threshold,
        "gate_execution_rate_val": val.executed.mean(axis=0).round(3).tolist(),
        "policy": measured["policy"],
        "systems_sweep": measured["sweep"],
        "engine_check_random_gates": measured["engine"],
        "training_history": history,
        "torch": torch.__version__,
        "seconds": time.perf_counter() - start,
        "seconds_training": train_seconds,
        "cpu_seconds": time.process_time() - cpu_start,
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
    }
    return {"skipnet": measured["skipnet"], "idk": measured["idk"], "details": details}
