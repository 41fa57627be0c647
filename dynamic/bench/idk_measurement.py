"""The benchmark's IDK cascade: logistic regression -> small CNN -> SkipNet, against the ResNet.

The cheap stages are trained here; the last stage is the SkipNet, which reports what
each input cost. The model to match is the dense ResNet (the most accurate model of
the benchmark). Thresholds and the stages kept are chosen on the validation split
(:func:`~vj_dynamic.idk_selection.select_stages`: the cheapest cascade within ``eps``
of the ResNet's accuracy, with the safety margin ``idk_z``, in which every kept stage
answers at least ``idk_min_share`` of the inputs reaching it); the cascade is then
measured on the test split against the ResNet.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from vj_dynamic.bench.config import BenchmarkConfig, Log
from vj_dynamic.bench.datasets import DatasetSplits
from vj_dynamic.flops import linear_flops
from vj_dynamic.idk import (
    IDKCascade,
    MaxProbRule,
    Stage,
    sklearn_predict_proba,
    torch_predict_proba,
)
from vj_dynamic.idk_selection import answer_shares, select_stages
from vj_dynamic.idk_tuning import cost_accuracy_frontier, plot_frontier, tune_thresholds
from vj_dynamic.latency import compare_latency, torch_threads
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.skipnet_runtime import SkipNetClassifier
from vj_dynamic.small_models import SmallCNN, pooled_pixels, train_classifier

__all__ = ["build_stages", "measure_idk"]

_POOL = 8


def build_stages(gated: SkipResNet, data: DatasetSplits, config: BenchmarkConfig) -> list[Stage]:
    """Train the cheap stages and return the three candidate stages, cheapest first."""
    logreg = LogisticRegression(C=1.0, max_iter=2000).fit(
        pooled_pixels(data.x_train, _POOL).numpy(), data.y_train.numpy()
    )
    logreg_flops = linear_flops(_POOL * _POOL * data.in_channels, data.num_classes)
    torch.manual_seed(config.seed)
    cnn = SmallCNN(data.in_channels, data.num_classes, data.image_size, widths=config.cnn_widths)
    train_classifier(cnn, data.x_train, data.y_train, epochs=config.cnn_epochs, seed=config.seed)
    size = data.x_val.shape[2:]
    rule = MaxProbRule()
    return [
        Stage(
            f"logreg-{_POOL}x{_POOL}",
            sklearn_predict_proba(logreg, lambda x: pooled_pixels(x, _POOL).numpy()),
            float(logreg_flops),
            rule,
        ),
        Stage("small-cnn", torch_predict_proba(cnn), float(cnn.flops()), rule),
        # A CostReporter: each input is charged the FLOPs of the blocks it ran.
        Stage(
            "skipnet", SkipNetClassifier(gated), float(gated.flop_breakdown(*size).dense()), rule
        ),
    ]


def _stage_outputs(stages: list[Stage], x: torch.Tensor, y: np.ndarray):
    """Probabilities, correctness and per-input costs of every stage on every input."""
    probs, costs = [], []
    for s in stages:
        probs.append(np.asarray(s.predict_proba(x)))
        costs.append(s.costs(len(y)))
    return probs, [p.argmax(1) == y for p in probs], costs


def _stage_rows(stages, kept, result, test_correct) -> list[dict]:
    """Every candidate stage on test: what it did in the cascade (nothing if dropped)."""
    done = dict(zip(kept, result.stats.stages, strict=True))
    rows = []
    for i, (s, c) in enumerate(zip(stages, test_correct, strict=True)):
        st = done.get(i)
        inputs, answered = (st.inputs, st.answered) if st else (0, 0)
        rows.append(
            {
                "name": s.name,
                "kept": st is not None,
                "cost": s.cost,
                "inputs": inputs,
                "answered": answered,
                "idk_rate": st.idk_rate if st else 0.0,
                "answer_share": answered / inputs if inputs else 0.0,
                "ms": st.ms if st else 0.0,
                "acc_alone_test": float(c.mean()),
            }
        )
    return rows


def _cascade(stages: list[Stage], kept: tuple[int, ...], thresholds) -> IDKCascade:
    chosen = [stages[i] for i in kept]
    return IDKCascade(chosen).with_thresholds(list(thresholds)[: len(chosen) - 1])


def _time(best, cascade: IDKCascade, x: torch.Tensor, config) -> dict:
    with torch_threads(config.timing_threads):
        return compare_latency(
            {"best": lambda: best(x), "cascade": lambda: cascade.predict(x)},
            warmup=config.warmup,
            repeats=config.repeats,
        )


def _plot(path, stages, confidences, correct, costs, point, reference, log) -> None:
    frontier = cost_accuracy_frontier(confidences, correct, costs)
    singles = [
        (s.name, float(np.mean(c)), float(k.mean()))
        for s, c, k in zip(stages, costs, correct, strict=True)
    ]
    singles.append(("resnet (dense)", reference[0], float(reference[1].mean())))
    plot_frontier(frontier, path, singles=singles, chosen=point)
    log(f"frontier plot written to {path}")


def _choose(confidences, correct, costs, config, z: float, reference: np.ndarray):
    return select_stages(
        confidences,
        correct,
        costs,
        eps=config.eps,
        z=z,
        min_share=config.idk_min_share,
        reference=reference,
    )


def _unselected(stages, val, reference, config, x_test, y_test) -> dict:
    """Thresholds tuned for every stage, none dropped: the cascade without the share rule."""
    confidences = val[0]
    tuned = tune_thresholds(*val, eps=config.eps, z=config.idk_z, reference=reference)
    result = _cascade(stages, tuple(range(len(stages))), tuned.point.thresholds).predict(x_test)
    return {
        "thresholds": list(tuned.point.thresholds),
        "val_shares": answer_shares(confidences, tuned.point.thresholds).tolist(),
        "cost_cascade": result.stats.cost_per_input,
        "acc_cascade": result.accuracy(y_test),
    }


def _reference(dense: SkipResNet, data: DatasetSplits):
    """The dense ResNet: its classifier, cost, and correctness on validation and test."""
    model = SkipNetClassifier(dense, dynamic=False)
    right = [
        model.predict_proba(x).argmax(1) == y.numpy()
        for x, y in ((data.x_val, data.y_val), (data.x_test, data.y_test))
    ]
    return model, float(dense.flop_breakdown(*data.x_val.shape[2:]).dense()), right


def measure_idk(
    dense: SkipResNet,
    gated: SkipResNet,
    data: DatasetSplits,
    config: BenchmarkConfig,
    log: Log,
    plot: str | None,
) -> dict:
    """Choose stages and thresholds on validation, measure on test; optionally plot."""
    stages = build_stages(gated, data, config)
    resnet, resnet_cost, (ref_val, ref_test) = _reference(dense, data)
    val_probs, val_correct, val_costs = _stage_outputs(stages, data.x_val, data.y_val.numpy())
    val = ([MaxProbRule().confidence(p) for p in val_probs], val_correct, val_costs)
    chosen = _choose(*val, config, config.idk_z, ref_val)
    plain = _choose(*val, config, 0.0, ref_val)
    cascade = _cascade(stages, chosen.kept, chosen.tuning.point.thresholds)
    x_test, y_test = data.x_test, data.y_test.numpy()
    _, test_correct, _ = _stage_outputs(stages, x_test, y_test)
    result = cascade.predict(x_test)
    plain_result = _cascade(stages, plain.kept, plain.tuning.point.thresholds).predict(x_test)
    lat = _time(resnet.predict_proba, cascade, x_test, config)
    if plot:
        _plot(plot, stages, *val, chosen.tuning.point, (resnet_cost, ref_val), log)
    log("IDK cascade on test:\n" + result.stats.table())
    return {
        "cost_best": resnet_cost,
        "cost_cascade": result.stats.cost_per_input,
        "acc_best": float(ref_test.mean()),
        "acc_cascade": result.accuracy(y_test),
        "cost_unit": "flops",
        "best_stage": f"resnet{config.depth}",
        "ms_best": lat["best"].median_ms,
        "ms_cascade": lat["cascade"].median_ms,
        "test_samples": int(len(y_test)),
        "eps": config.eps,
        "z": config.idk_z,
        "min_share": config.idk_min_share,
        "kept": [stages[i].name for i in chosen.kept],
        "dropped": [stages[i].name for i in chosen.dropped],
        "thresholds": list(chosen.tuning.point.thresholds),
        "val_feasible": chosen.feasible,
        "val_acc_cascade": chosen.tuning.point.accuracy,
        "val_cost_cascade": chosen.tuning.point.cost,
        "val_shares": list(chosen.shares),
        "val_acc_best": float(ref_val.mean()),
        "plain_constraint": {
            "kept": [stages[i].name for i in plain.kept],
            "thresholds": list(plain.tuning.point.thresholds),
            "val_acc_cascade": plain.tuning.point.accuracy,
            "cost_cascade": plain_result.stats.cost_per_input,
            "acc_cascade": plain_result.accuracy(y_test),
        },
        "no_stage_selection": _unselected(stages, val, ref_val, config, x_test, y_test),
        "stages": _stage_rows(stages, chosen.kept, result, test_correct),
        "frontier_val": [[p.cost, p.accuracy] for p in cost_accuracy_frontier(*val)],
    }
