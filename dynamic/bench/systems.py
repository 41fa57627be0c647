"""Does less computation mean less runtime? FLOPs saved against wall-clock saved.

For every gate threshold of the SkipNet, batch size and thread count of the sweep, the
dense network and the SkipNet at every threshold are timed in the same interleaved
rounds (:func:`~vj_dynamic.latency.compare_latency`) on the same test samples. A point
on the line ``y = x`` turns every FLOP saved into time saved; below it, part of the
saving is lost to what does not shrink with the work (operator dispatch, gate
evaluation, row copies, smaller and less efficient batches).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from vj_dynamic.bench.config import BenchmarkConfig, Log
from vj_dynamic.bench.datasets import DatasetSplits
from vj_dynamic.bench.skipnet_measurement import full_batches, time_variants
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.skipnet_runtime import SkipNetRuntime

__all__ = ["plot_systems", "systems_sweep"]


def _runtimes(gated: SkipResNet, thresholds) -> dict[float, SkipNetRuntime]:
    """One runtime per gate threshold (a runtime copies the threshold when built)."""
    kept = gated.gate_threshold
    runtimes = {}
    try:
        for t in thresholds:
            gated.gate_threshold = t
            runtimes[t] = SkipNetRuntime(gated)
    finally:
        gated.gate_threshold = kept
    return runtimes


def _sweep_point(dense_rt, runtimes, breakdown, timed, threads, config) -> list[dict]:
    dense_flops = breakdown.dense()
    fns = {"dense": lambda: [dense_rt(b, dynamic=False) for b in timed]}
    saved = {}
    for t, rt in runtimes.items():
        with torch.inference_mode():
            executed = np.concatenate([rt(b).executed for b in timed])
        saved[t] = 1.0 - float(breakdown.dynamic(executed).mean()) / dense_flops
        fns[f"t{t}"] = lambda rt=rt: [rt(b) for b in timed]
    lat = time_variants(fns, len(timed), threads=threads, warmup=1, repeats=config.sweep_repeats)
    dense = lat["dense"]
    rows = []
    for t in runtimes:
        dyn = lat[f"t{t}"]
        rows.append(
            {
                "threshold": t,
                "batch": timed[0].shape[0],
                "threads": threads,
                "flops_saved": saved[t],
                "time_saved": 1.0 - dyn.median_ms / dense.median_ms,
                "cpu_time_saved": 1.0 - dyn.cpu_median_ms / dense.cpu_median_ms,
                "ms_dense": dense.median_ms,
                "ms_dynamic": dyn.median_ms,
                "ms_dynamic_p10_p90": [dyn.p10_ms, dyn.p90_ms],
            }
        )
    return rows


def systems_sweep(
    dense: SkipResNet, gated: SkipResNet, data: DatasetSplits, config: BenchmarkConfig, log: Log
) -> list[dict]:
    """Time saved and FLOPs saved for every threshold x batch size x thread count.

    Returns
    -------
    list of dict
        One row per point: ``threshold, batch, threads, flops_saved, time_saved,
        cpu_time_saved, ms_dense, ms_dynamic, ms_dynamic_p10_p90`` (times per batch).
    """
    dense_rt = SkipNetRuntime(dense)
    runtimes = _runtimes(gated, config.sweep_thresholds)
    breakdown = gated.flop_breakdown(*data.x_test.shape[2:])
    rows = []
    for threads in config.sweep_threads:
        for batch_size in config.sweep_batch_sizes:
            n = config.timed_samples_batch1 if batch_size == 1 else config.timed_samples
            timed = full_batches(data.x_test[:n], batch_size)
            point = _sweep_point(dense_rt, runtimes, breakdown, timed, threads, config)
            rows += point
            log(
                f"sweep batch {batch_size}, {threads} thread(s): "
                + ", ".join(
                    f"t={r['threshold']}: {r['flops_saved']:.2f} FLOPs / {r['time_saved']:.2f} time"
                    for r in point
                )
            )
    return rows


def plot_systems(
    rows: list[dict], path: str | Path, *, title: str = "", floor: float = -0.5
) -> Path:
    """Save the figure: FLOPs saved (x) against wall-clock time saved (y), with ``y = x``.

    One curve per batch size and thread count, through the gate thresholds. Points
    below ``floor`` (a run that a descheduled thread stalled) are drawn on the floor
    as open triangles with their value written beside them.
    """
    if not rows:
        raise ValueError("no sweep rows to plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    top = max(max(r["flops_saved"], r["time_saved"]) for r in rows) * 1.05
    ax.plot([0, top], [0, top], "k--", lw=1, label="y = x (time follows FLOPs)")
    colors = {1: "tab:blue", 8: "tab:orange", 64: "tab:green"}
    for key in sorted({(r["batch"], r["threads"]) for r in rows}):
        part = [r for r in rows if (r["batch"], r["threads"]) == key]
        part.sort(key=lambda r: r["flops_saved"])
        batch, threads = key
        x = [r["flops_saved"] for r in part]
        y = [max(r["time_saved"], floor) for r in part]
        ax.plot(
            x,
            y,
            marker="o" if threads == 1 else "s",
            color=colors.get(batch),
            ls="-" if threads == 1 else ":",
            label=f"batch {batch}, {threads} thread{'s' if threads > 1 else ''}",
        )
        for r in part:
            if r["time_saved"] < floor:
                ax.plot([r["flops_saved"]], [floor], "v", mfc="none", color=colors.get(batch))
                ax.annotate(
                    f"{r['time_saved']:.1f}",
                    (r["flops_saved"], floor),
                    fontsize=7,
                    xytext=(4, 2),
                    textcoords="offset points",
                )
    ax.set_xlim(0, top)
    ax.set_ylim(floor - 0.03, top)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("FLOPs saved (fraction of the dense ResNet)")
    ax.set_ylabel("wall-clock time saved (median of interleaved runs)")
    ax.set_title(title or "SkipNet: FLOPs saved vs time saved, across gate thresholds", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
