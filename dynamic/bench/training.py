"""Training the benchmark's networks: the dense ResNet and its SkipNet version.

The SkipNet starts from the trained ResNet (the paper's protocol) with gates that
standardise their inputs; hybrid RL with a per-sample FLOP price learns the policy,
the body is then fine-tuned on the paths that policy takes, and the gate threshold is
the cheapest of a few whose validation accuracy stays within ``gate_accuracy_drop`` of
the dense network's.
"""

from __future__ import annotations

import time

import torch
from vj_dynamic.bench.config import BenchmarkConfig, Log
from vj_dynamic.bench.datasets import DatasetSplits
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.skipnet_training import (
    TrainConfig,
    evaluate,
    fine_tune_on_policy,
    train_dense,
    train_hybrid_rl,
    train_supervised_gates,
    tune_gate_threshold,
)

__all__ = ["train_skipnet"]


def _network(data: DatasetSplits, config: BenchmarkConfig) -> SkipResNet:
    return SkipResNet(
        depth=config.depth,
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        gate=config.gate,
        gate_norm=config.gate_norm,
    )


def _gated_phases(gated: SkipResNet, data: DatasetSplits, config: BenchmarkConfig) -> dict:
    x, y, seed = data.x_train, data.y_train, config.seed
    history = {}
    if config.sp_epochs:
        history["supervised"] = train_supervised_gates(
            gated,
            x,
            y,
            TrainConfig(epochs=config.sp_epochs, lr=1e-3, gate_lr_scale=10, seed=seed + 1),
        )
    history["rl"] = train_hybrid_rl(
        gated,
        x,
        y,
        TrainConfig(epochs=config.rl_epochs, lr=1e-3, gate_lr_scale=10, seed=seed + 2),
        alpha=config.alpha,
        gamma=1.0,
        explore=config.explore,
        baseline=config.baseline,
        loss_margin=config.loss_margin,
    )
    if config.ft_epochs:
        history["fine_tune"] = fine_tune_on_policy(
            gated, x, y, TrainConfig(epochs=config.ft_epochs, lr=1e-3, seed=seed + 3)
        )
    return history


def train_skipnet(
    data: DatasetSplits, config: BenchmarkConfig, log: Log
) -> tuple[SkipResNet, SkipResNet, dict]:
    """The dense ResNet and the SkipNet fine-tuned from it (both in eval mode).

    Returns
    -------
    dense, gated : SkipResNet
    history : dict
        Per-phase training histories, seconds, and the gate threshold table
        (``gate_threshold``, ``gate_table``: threshold, validation accuracy, FLOPs).
    """
    torch.manual_seed(config.seed)
    dense = _network(data, config)
    start = time.perf_counter()
    history = {
        "dense": train_dense(
            dense,
            data.x_train,
            data.y_train,
            TrainConfig(epochs=config.dense_epochs, lr=0.01, seed=config.seed),
        )
    }
    history["seconds_dense"] = time.perf_counter() - start
    log(f"dense ResNet-{config.depth}: {history['seconds_dense']:.0f} s, {history['dense'][-1]}")
    gated = _network(data, config)
    # The gates are new (and their input statistics empty): load the body only.
    gated.load_state_dict(dense.state_dict(), strict=False)
    start = time.perf_counter()
    history.update(_gated_phases(gated, data, config))
    dense_val = evaluate(dense, data.x_val, data.y_val, execution="dense").accuracy
    threshold, table = tune_gate_threshold(
        gated,
        data.x_val,
        data.y_val,
        min_accuracy=dense_val - config.gate_accuracy_drop,
        candidates=config.gate_thresholds,
    )
    history["gate_threshold"], history["gate_table"] = threshold, table
    history["seconds_skipnet"] = time.perf_counter() - start
    log(
        f"SkipNet RL + fine-tuning: {history['seconds_skipnet']:.0f} s; gate threshold "
        f"{threshold} (validation: dense {dense_val:.4f}; "
        + ", ".join(f"{t}: {a:.4f} at {f / 1e6:.1f} MFLOPs" for t, a, f in table)
        + ")"
    )
    return dense.eval(), gated.eval(), history
