"""Measuring the SkipNet against its dense ResNet: FLOPs, wall-clock time, accuracy.

FLOPs are counted with ``FlopCounterMode`` on the module's own skip execution and
checked against the analytic model; times come from :class:`SkipNetRuntime` with dense
and dynamic sweeps interleaved (:func:`~vj_dynamic.latency.compare_latency`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from vj_dynamic.bench.config import BenchmarkConfig, Log
from vj_dynamic.bench.datasets import DatasetSplits
from vj_dynamic.bench.report import short_summary
from vj_dynamic.flops import count_flops
from vj_dynamic.latency import LatencyStats, compare_latency, torch_threads
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.skipnet_policy import path_key
from vj_dynamic.skipnet_runtime import BATCHING, SkipNetRuntime

__all__ = ["engine_check", "measure_skipnet"]


def add_ratios(entry: dict) -> None:
    """Time saved per FLOP saved; ``None`` when under 1 % of the FLOPs is saved (noise)."""
    saved = entry["flops_saved"]
    for key in ("time_saved", "cpu_time_saved"):
        entry[f"{key}_per_flops_saved"] = entry[key] / saved if saved >= 0.01 else None


def per_batch(stats: LatencyStats, n_batches: int) -> LatencyStats:
    """Timings of sweeps over ``n_batches`` batches, as times per batch."""
    scale = 1.0 / n_batches
    cpu = None if stats.cpu_median_ms is None else stats.cpu_median_ms * scale
    return LatencyStats(
        stats.median_ms * scale,
        stats.p10_ms * scale,
        stats.p90_ms * scale,
        stats.min_ms * scale,
        stats.repeats,
        cpu,
    )


def batches(x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``x`` cut into consecutive batches (the last one may be short)."""
    return [x[i : i + batch_size] for i in range(0, x.shape[0], batch_size)]


def full_batches(x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """The whole batches of ``batch_size`` in ``x``; ValueError when there is none."""
    out = [b for b in batches(x, batch_size) if b.shape[0] == batch_size]
    if not out:
        raise ValueError(f"the test set holds fewer than {batch_size} samples")
    return out


def time_variants(
    fns: dict[str, Callable[[], object]],
    n_batches: int,
    *,
    threads: int,
    warmup: int,
    repeats: int,
) -> dict[str, LatencyStats]:
    """Interleaved timings of sweeps over ``n_batches`` batches, per batch."""
    with torch_threads(threads), torch.inference_mode():
        lat = compare_latency(fns, warmup=warmup, repeats=repeats)
    return {k: per_batch(v, n_batches) for k, v in lat.items()}


def latency_fields(lat: dict[str, LatencyStats], name: str, key: str) -> dict:
    """``ms_<name>``, ``ms_<name>_p10_p90`` and ``cpu_ms_<name>`` of variant ``key``."""
    stats = lat[key]
    return {
        f"ms_{name}": stats.median_ms,
        f"ms_{name}_p10_p90": [stats.p10_ms, stats.p90_ms],
        f"cpu_ms_{name}": stats.cpu_median_ms,
    }


def policy_fields(breakdown, executed: np.ndarray) -> dict:
    """Per-sample FLOPs percentiles and distinct execution paths of ``executed``."""
    flops = breakdown.dynamic(executed)
    return {
        "flops_per_sample_p10": float(np.percentile(flops, 10)),
        "flops_per_sample_p90": float(np.percentile(flops, 90)),
        "paths": int(len(np.unique(path_key(executed)))),
    }


def add_savings(entry: dict) -> dict:
    """Add FLOPs / time / CPU time saved and their ratios to an entry."""
    entry["flops_saved"] = 1.0 - entry["flops_dynamic"] / entry["flops_dense"]
    entry["time_saved"] = 1.0 - entry["ms_dynamic"] / entry["ms_dense"]
    entry["cpu_time_saved"] = 1.0 - entry["cpu_ms_dynamic"] / entry["cpu_ms_dense"]
    add_ratios(entry)
    return entry


def _counted_flops(dense: SkipResNet, gated: SkipResNet, timed: list[torch.Tensor]):
    """FLOPs of dense and skip execution over ``timed``, and the decisions taken.

    Counted on the module's own skip execution (the runtime's fused gate kernel is
    invisible to the counter).
    """
    flops_dyn = 0
    executed = []
    with torch.inference_mode():
        for b in timed:
            f, out = count_flops(gated, b, execution="skip")
            flops_dyn += f
            executed.append(out.executed)
        flops_dense = count_flops(dense, timed[0], execution="dense")[0] * len(timed)
    return flops_dense, flops_dyn, np.concatenate(executed)


def _timed_variants(runtimes: dict[str, SkipNetRuntime], timed, batch_size: int) -> dict:
    fns = {"dense": lambda t=timed, rt=runtimes["dense"]: [rt(b, dynamic=False) for b in t]}
    for name, rt in runtimes.items():
        if name != "dense" and (batch_size > 1 or name == "dynamic"):
            fns[name] = lambda t=timed, rt=rt: [rt(b) for b in t]
    return fns


def _skipnet_entry(
    dense: SkipResNet,
    gated: SkipResNet,
    runtimes: dict[str, SkipNetRuntime],
    data: DatasetSplits,
    config: BenchmarkConfig,
    batch_size: int,
) -> dict:
    x_test, y_test = data.x_test, data.y_test.numpy()
    breakdown = gated.flop_breakdown(*x_test.shape[2:])
    with torch.inference_mode():
        parts = batches(x_test, batch_size)
        dense_rt = runtimes["dense"]
        dense_pred = np.concatenate([dense_rt(b, dynamic=False).logits.argmax(1) for b in parts])
        outs = [runtimes["dynamic"](b) for b in parts]
    executed = np.concatenate([o.executed for o in outs])
    gated_pred = np.concatenate([o.logits.argmax(1) for o in outs])

    n_timed = config.timed_samples_batch1 if batch_size == 1 else config.timed_samples
    timed = full_batches(x_test[:n_timed], batch_size)
    n_timed = len(timed) * batch_size
    flops_dense, flops_dyn, counted = _counted_flops(dense, gated, timed)
    lat = time_variants(
        _timed_variants(runtimes, timed, batch_size),
        len(timed),
        threads=config.timing_threads,
        warmup=config.warmup,
        repeats=config.repeats,
    )
    entry = {
        "flops_dense": flops_dense / n_timed,
        "flops_dynamic": flops_dyn / n_timed,
        "flops_dynamic_analytic": float(breakdown.dynamic(counted).mean()),
        "flops_dense_analytic": float(breakdown.dense()),
        "flops_dynamic_test_set": float(breakdown.dynamic(executed).mean()),
        **policy_fields(breakdown, executed),
        **latency_fields(lat, "dense", "dense"),
        **latency_fields(lat, "dynamic", "dynamic"),
        "acc_dense": float((dense_pred == y_test).mean()),
        "acc_dynamic": float((gated_pred == y_test).mean()),
        "gate_decisions_agree": float((counted == executed[:n_timed]).mean()),
        "samples_timed": n_timed,
        "test_samples": int(x_test.shape[0]),
        "batching": runtimes["dynamic"].batching,
    }
    add_savings(entry)
    for name in lat.keys() - {"dense", "dynamic"}:
        other = latency_fields(lat, name, name)
        other[f"time_saved_{name}"] = 1.0 - lat[name].median_ms / lat["dense"].median_ms
        entry[name] = other
    return entry


def measure_skipnet(
    dense: SkipResNet, gated: SkipResNet, data: DatasetSplits, config: BenchmarkConfig, log: Log
) -> dict[str, dict[str, float]]:
    """FLOPs, latency and accuracy of dense and gated execution, per batch size.

    Returns
    -------
    dict
        ``{str(batch size): entry}``; see ``BENCHMARKS.md`` for the keys.
    """
    runtimes = {
        "dense": SkipNetRuntime(dense),
        "dynamic": SkipNetRuntime(gated),
        "grouped": SkipNetRuntime(gated, batching="grouped"),
    }
    results = {}
    for batch_size in config.batch_sizes:
        entry = _skipnet_entry(dense, gated, runtimes, data, config, batch_size)
        results[str(batch_size)] = entry
        log(f"SkipNet batch {batch_size}: {short_summary(entry)}")
    return results


def _replay_entry(dense, gated, data, config, masks, timed) -> dict:
    batch_size = timed[0].shape[0]
    dense_rt = SkipNetRuntime(dense)
    replays = {b: SkipNetRuntime(gated, batching=b) for b in BATCHING}
    items = [(b, m.T) for b, m in zip(timed, masks, strict=True)]

    def run_dense(item, rt=dense_rt):
        return rt(item[0], dynamic=False)

    def run_replay(item, rt=replays["scatter"]):
        return rt(item[0], decisions=item[1])

    with torch.inference_mode():
        flops_dyn = sum(count_flops(run_replay, item)[0] for item in items)
        flops_dense = count_flops(run_dense, items[0])[0] * len(items)
    breakdown = gated.flop_breakdown(*data.x_test.shape[2:])
    # Replayed decisions skip the gates; charge their FLOPs (not their time).
    gate_flops = sum(breakdown.gates)
    n = len(timed) * batch_size
    fns = {"dense": lambda items=items: [run_dense(item) for item in items]}
    for name, rt in replays.items():
        fns[name] = lambda items=items, rt=rt: [rt(b, decisions=d) for b, d in items]
    lat = time_variants(
        fns, len(items), threads=config.timing_threads, warmup=config.warmup, repeats=config.repeats
    )
    entry = {
        "execution_rate": float(masks.mean()),
        "flops_dense": flops_dense / n,
        "flops_dynamic": flops_dyn / n + gate_flops,
        "flops_dynamic_analytic": float(
            breakdown.dynamic(masks.transpose(0, 2, 1).reshape(n, -1)).mean()
        ),
        **latency_fields(lat, "dense", "dense"),
        **latency_fields(lat, "dynamic", "scatter"),
        "grouped": latency_fields(lat, "dynamic", "grouped"),
    }
    add_savings(entry)
    entry["grouped"]["time_saved"] = 1.0 - lat["grouped"].median_ms / lat["dense"].median_ms
    return entry


def engine_check(
    dense: SkipResNet,
    gated: SkipResNet,
    data: DatasetSplits,
    config: BenchmarkConfig,
    rate: float,
    log: Log,
) -> dict[str, dict[str, float]]:
    """Batched skip execution with per-sample random decisions at the policy's rate.

    The worst case for batched skipping: coin flips, independent per sample and per
    block, so that every block runs on a different subset and the paths are as many
    as the samples. Both batchings of the runtime are timed (gather / scatter as
    ``ms_dynamic``, grouped under ``grouped``).
    """
    results = {}
    rng = np.random.default_rng(config.seed)
    for batch_size in [b for b in config.batch_sizes if b > 1][-1:]:
        timed = full_batches(data.x_test[: config.timed_samples], batch_size)
        masks = rng.random((len(timed), gated.num_gates, batch_size)) < rate
        entry = _replay_entry(dense, gated, data, config, masks, timed)
        results[str(batch_size)] = entry
        log(f"engine check, random per-sample gates, batch {batch_size}: {short_summary(entry)}")
    return results
