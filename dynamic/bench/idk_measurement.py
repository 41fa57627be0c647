"""The benchmark's IDK cascade: logistic regression -> small CNN -> the ResNet.

The cheap stages are trained here, the thresholds tuned on the validation split, and
the cascade measured on the test split against the best single model.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from vj_dynamic.bench.config import BenchmarkConfig, Log
from vj_dynamic.bench.datasets import DatasetSplits
from vj_dynamic.flops import count_flops, linear_flops
from vj_dynamic.idk import (
    IDKCascade,
    MaxProbRule,
    Stage,
    sklearn_predict_proba,
    torch_predict_proba,
)
from vj_dynamic.idk_tuning import cost_accuracy_frontier, plot_frontier, tune_thresholds
from vj_dynamic.latency import compare_latency, torch_threads
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.skipnet_runtime import SkipNetClassifier
from vj_dynamic.small_models import SmallCNN, pooled_pixels, train_classifier

__all__ = ["build_stages", "measure_idk"]

_POOL = 8


def build_stages(dense: SkipResNet, data: DatasetSplits, config: BenchmarkConfig) -> list[Stage]:
    """Train the cheap stages and return the three stages, cheapest first."""
    logreg = LogisticRegression(C=1.0, max_iter=2000).fit(
        pooled_pixels(data.x_train, _POOL).numpy(), data.y_train.numpy()
    )
    logreg_flops = linear_flops(_POOL * _POOL * data.in_channels, data.num_classes)
    torch.manual_seed(config.seed)
    cnn = SmallCNN(data.in_channels, data.num_classes, data.image_size)
    train_classifier(cnn, data.x_train, data.y_train, epochs=config.cnn_epochs, seed=config.seed)
    with torch.inference_mode():
        cnn_flops = count_flops(cnn, data.x_val[:1])[0]
    resnet = SkipNetClassifier(dense, dynamic=False)
    resnet_flops = float(dense.flop_breakdown(*data.x_val.shape[2:]).dense())
    return [
        Stage(
            f"logreg-{_POOL}x{_POOL}",
            sklearn_predict_proba(logreg, lambda x: pooled_pixels(x, _POOL).numpy()),
            float(logreg_flops),
            MaxProbRule(),
        ),
        Stage("small-cnn", torch_predict_proba(cnn), float(cnn_flops), MaxProbRule()),
        Stage(f"resnet{config.depth}", resnet, resnet_flops),
    ]


def _stage_outputs(stages: list[Stage], x: torch.Tensor, y: np.ndarray):
    probs = [s.predict_proba(x) for s in stages]
    return probs, [p.argmax(1) == y for p in probs]


def _stage_rows(stages, result, test_correct) -> list[dict]:
    return [
        {
            "name": s.name,
            "cost": s.cost,
            "inputs": st.inputs,
            "answered": st.answered,
            "idk_rate": st.idk_rate,
            "ms": st.ms,
            "acc_alone_test": float(c.mean()),
        }
        for s, st, c in zip(stages, result.stats.stages, test_correct, strict=True)
    ]


def measure_idk(
    dense: SkipResNet, data: DatasetSplits, config: BenchmarkConfig, log: Log, plot: str | None
) -> dict:
    """Tune the cascade on validation, measure it on test; optionally plot the frontier."""
    stages = build_stages(dense, data, config)
    val_probs, val_correct = _stage_outputs(stages, data.x_val, data.y_val.numpy())
    confidences = [MaxProbRule().confidence(p) for p in val_probs]
    costs = [s.cost for s in stages]
    tuned = tune_thresholds(confidences, val_correct, costs, eps=config.eps, z=config.idk_z)
    plain = tune_thresholds(confidences, val_correct, costs, eps=config.eps)
    deferring = len(stages) - 1
    cascade = IDKCascade(stages).with_thresholds(tuned.point.thresholds[:deferring])
    y_test = data.y_test.numpy()
    _, test_correct = _stage_outputs(stages, data.x_test, y_test)
    best = tuned.best_single_stage
    result = cascade.predict(data.x_test)
    plain_result = IDKCascade(stages).with_thresholds(plain.point.thresholds[:deferring])
    plain_result = plain_result.predict(data.x_test)
    with torch_threads(config.timing_threads):
        lat = compare_latency(
            {
                "best": lambda: stages[best].predict_proba(data.x_test),
                "cascade": lambda: cascade.predict(data.x_test),
            },
            warmup=config.warmup,
            repeats=config.repeats,
        )
    frontier = cost_accuracy_frontier(confidences, val_correct, costs)
    if plot:
        singles = [
            (s.name, s.cost, float(c.mean())) for s, c in zip(stages, val_correct, strict=True)
        ]
        plot_frontier(frontier, plot, singles=singles, chosen=tuned.point)
        log(f"frontier plot written to {plot}")
    log("IDK cascade on test:\n" + result.stats.table())
    return {
        "cost_best": stages[best].cost,
        "cost_cascade": result.stats.cost_per_input,
        "acc_best": float(test_correct[best].mean()),
        "acc_cascade": result.accuracy(y_test),
        "cost_unit": "flops",
        "best_stage": stages[best].name,
        "ms_best": lat["best"].median_ms,
        "ms_cascade": lat["cascade"].median_ms,
        "test_samples": int(len(y_test)),
        "eps": config.eps,
        "z": config.idk_z,
        "thresholds": list(tuned.point.thresholds),
        "val_feasible": tuned.feasible,
        "val_acc_cascade": tuned.point.accuracy,
        "val_acc_best": tuned.best_single_accuracy,
        "plain_constraint": {
            "thresholds": list(plain.point.thresholds),
            "val_acc_cascade": plain.point.accuracy,
            "cost_cascade": plain_result.stats.cost_per_input,
            "acc_cascade": plain_result.accuracy(y_test),
        },
        "stages": _stage_rows(stages, result, test_correct),
        "frontier_val": [[p.cost, p.accuracy] for p in frontier],
    }
