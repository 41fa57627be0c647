"""The dynamic-network benchmark: does computation skipped turn into time saved?

Trains, on a real offline dataset, a dense CIFAR-style ResNet and its SkipNet version,
and an IDK cascade (logistic regression -> small CNN -> the ResNet), then measures, side
by side, FLOPs per sample (counted with ``FlopCounterMode`` and checked against the
analytic model), median wall-clock latency and test accuracy. ``vj-bench dynamic``
(:mod:`vj_apps.bench.dynamic`) is the command-line front end.

The parts: :mod:`.config` (settings, dataset), :mod:`.training` (the networks),
:mod:`.skipnet_measurement`, :mod:`.idk_measurement` and :mod:`.report`.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch
from vj_dynamic.bench.config import BenchmarkConfig, Log, load_dataset, with_overrides
from vj_dynamic.bench.idk_measurement import measure_idk
from vj_dynamic.bench.report import format_report
from vj_dynamic.bench.skipnet_measurement import engine_check, measure_skipnet
from vj_dynamic.bench.training import train_skipnet
from vj_dynamic.latency import torch_threads
from vj_dynamic.skipnet_training import evaluate
from vj_dynamic.weights import save_weights

__all__ = ["BenchmarkConfig", "format_report", "load_dataset", "run_benchmark", "with_overrides"]


def run_benchmark(
    config: BenchmarkConfig,
    *,
    log: Log = print,
    plot: str | None = None,
    weights_dir: str | None = None,
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

    Returns
    -------
    dict
        ``{"skipnet": {batch size: entry}, "idk": {...}, "details": {...}}``.
    """
    if weights_dir is not None and not Path(weights_dir).is_dir():
        raise ValueError(f"weights folder {weights_dir} does not exist")
    start = time.perf_counter()
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
        val_dense = evaluate(dense, data.x_val, data.y_val, execution="dense")
        log(
            f"validation: dense {val_dense.accuracy:.4f}, SkipNet {val.accuracy:.4f} "
            f"at execution rate {val.execution_rate:.3f}"
        )
        skipnet = measure_skipnet(dense, gated, data, config, log)
        rate = float(evaluate(gated, data.x_test, data.y_test).executed.mean())
        engine = engine_check(dense, gated, data, config, rate, log)
        idk = measure_idk(dense, data, config, log, plot)
    details = {
        "config": asdict(config),
        "dataset": data.name,
        "gate_execution_rate_val": val.executed.mean(axis=0).round(3).tolist(),
        "engine_check_random_gates": engine,
        "training_history": history,
        "torch": torch.__version__,
        "seconds": time.perf_counter() - start,
    }
    return {"skipnet": skipnet, "idk": idk, "details": details}
