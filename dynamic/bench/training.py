"""Training the benchmark's networks: the dense ResNet and its SkipNet version."""

from __future__ import annotations

import copy
import time

import torch
from vj_dynamic.bench.config import BenchmarkConfig, Log
from vj_dynamic.bench.datasets import DatasetSplits
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.skipnet_training import (
    TrainConfig,
    train_dense,
    train_hybrid_rl,
    train_supervised_gates,
)

__all__ = ["train_skipnet"]


def train_skipnet(
    data: DatasetSplits, config: BenchmarkConfig, log: Log
) -> tuple[SkipResNet, SkipResNet, dict]:
    """The dense ResNet and the SkipNet fine-tuned from it (both in eval mode).

    Returns
    -------
    dense, gated : SkipResNet
    history : dict
        Per-phase training histories (``dense``, ``supervised``, ``rl``).
    """
    torch.manual_seed(config.seed)
    dense = SkipResNet(
        depth=config.depth,
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        gate=config.gate,
    )
    start = time.perf_counter()
    history = {
        "dense": train_dense(
            dense,
            data.x_train,
            data.y_train,
            TrainConfig(epochs=config.dense_epochs, lr=0.01, seed=config.seed),
        )
    }
    log(f"dense ResNet-{config.depth}: {time.perf_counter() - start:.0f} s, {history['dense'][-1]}")
    # SkipNet starts from the trained ResNet (the paper's protocol); its gates learn faster
    # than the body, which is only fine-tuned.
    gated = copy.deepcopy(dense)
    start = time.perf_counter()
    history["supervised"] = train_supervised_gates(
        gated,
        data.x_train,
        data.y_train,
        TrainConfig(epochs=config.sp_epochs, lr=1e-3, gate_lr_scale=10, seed=config.seed + 1),
    )
    history["rl"] = train_hybrid_rl(
        gated,
        data.x_train,
        data.y_train,
        TrainConfig(epochs=config.rl_epochs, lr=1e-3, gate_lr_scale=30, seed=config.seed + 2),
        alpha=config.alpha,
    )
    log(f"SkipNet SP + RL: {time.perf_counter() - start:.0f} s, {history['rl'][-1]}")
    return dense.eval(), gated.eval(), history
