"""The dynamic-network benchmark: does computation skipped turn into time saved?

Trains, on a real offline dataset, a dense CIFAR-style ResNet and its SkipNet version,
and an IDK cascade (logistic regression -> small CNN -> the ResNet), then measures, side
by side, FLOPs per sample (counted with ``FlopCounterMode`` and checked against the
analytic model), median wall-clock latency and test accuracy. ``apps/bench_dynamic.py``
is the command-line front end.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from vj_dynamic.bench.datasets import DatasetSplits, load_digits_upsampled, load_face_crops
from vj_dynamic.flops import count_flops, linear_flops
from vj_dynamic.idk import (
    IDKCascade,
    MaxProbRule,
    Stage,
    sklearn_predict_proba,
    torch_predict_proba,
)
from vj_dynamic.idk_tuning import cost_accuracy_frontier, plot_frontier, tune_thresholds
from vj_dynamic.latency import LatencyStats, compare_latency, torch_threads
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.skipnet_runtime import SkipNetClassifier, SkipNetRuntime
from vj_dynamic.skipnet_training import (
    TrainConfig,
    evaluate,
    train_dense,
    train_hybrid_rl,
    train_supervised_gates,
)
from vj_dynamic.small_models import SmallCNN, pooled_pixels, train_classifier
from vj_dynamic.weights import save_weights

__all__ = ["BenchmarkConfig", "format_report", "load_dataset", "run_benchmark"]

Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchmarkConfig:
    """Settings of one benchmark run (defaults: the full run, about 4 minutes on 2 cores).

    Attributes
    ----------
    dataset : {"digits", "faces"}
        scikit-learn digits upsampled, or face / non-face crops from the shared data.
    data_dir : str or None
        Shared data folder for ``"faces"`` (default: ``$VJ_DATA`` or ``../shared/data``).
    image_size : int
        Side of the network inputs.
    depth, gate : int, str
        SkipNet depth (``6n + 2``) and gate kind.
    dense_epochs, sp_epochs, rl_epochs : int
        Epochs of dense training, supervised gate pre-training and hybrid RL.
    alpha : float
        RL price of computation.
    batch_sizes : tuple of int
        Batch sizes measured.
    timed_samples : int
        Test samples pushed through each timed variant per repeat at batch sizes > 1
        (whole batches only); their FLOPs are counted with ``FlopCounterMode``.
    timed_samples_batch1 : int
        The same at batch size 1 (the counter costs ~0.1 s per call there).
    warmup, repeats : int
        Untimed and timed rounds of each latency comparison.
    eps : float
        Relative accuracy loss the IDK threshold tuning may accept.
    idk_z : float
        Safety margin of the IDK threshold tuning, in standard errors (see
        :func:`~vj_dynamic.idk_tuning.tune_thresholds`); guards the test accuracy against
        thresholds that exploit a few lucky answers of the small validation set.
    cnn_epochs : int
        Epochs of the small CNN stage.
    train_threads, timing_threads : int
        PyTorch threads for training and for timing. One thread by default: on a
        shared 2-core machine a second thread mostly waits for a core, and an operator
        whose thread is descheduled stalls the whole step.
    seed : int
        Seed of data split, initialisation and training.
    subset : int or None
        Keep only this many samples of each split (smoke tests).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    image_size: int = 32
    depth: int = 38
    gate: str = "rnn"
    dense_epochs: int = 8
    sp_epochs: int = 1
    rl_epochs: int = 3
    alpha: float = 0.5
    batch_sizes: tuple[int, ...] = (1, 64)
    timed_samples: int = 192
    timed_samples_batch1: int = 64
    warmup: int = 2
    repeats: int = 9
    eps: float = 0.0
    idk_z: float = 1.645
    cnn_epochs: int = 15
    train_threads: int = 1
    timing_threads: int = 1
    seed: int = 0
    subset: int | None = None

    def __post_init__(self) -> None:
        if self.dataset not in ("digits", "faces"):
            raise ValueError(f"dataset must be 'digits' or 'faces', got {self.dataset!r}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch_sizes must be positive, got {self.batch_sizes}")
        if self.timed_samples < max(self.batch_sizes) or self.timed_samples_batch1 < 1:
            raise ValueError("timed_samples must be at least the largest batch size")
        if self.subset is not None and self.subset < max(self.batch_sizes):
            raise ValueError("subset must be at least the largest batch size")

    @classmethod
    def quick(cls, **overrides) -> BenchmarkConfig:
        """A smaller, faster run (about a minute) for smoke tests."""
        settings = dict(
            dense_epochs=3,
            sp_epochs=1,
            rl_epochs=2,
            timed_samples=64,
            warmup=1,
            repeats=3,
            cnn_epochs=5,
        )
        settings.update(overrides)
        return cls(**settings)


def load_dataset(config: BenchmarkConfig) -> DatasetSplits:
    """The dataset named by ``config`` (cut to ``config.subset`` samples per split)."""
    if config.dataset == "digits":
        data = load_digits_upsampled(config.image_size, seed=config.seed)
    else:
        data = load_face_crops(
            config.data_dir, config.image_size, seed=config.seed, max_per_class=2000
        )
    if config.subset is None:
        return data
    cut = slice(0, config.subset)
    return replace(
        data,
        x_train=data.x_train[cut],
        y_train=data.y_train[cut],
        x_val=data.x_val[cut],
        y_val=data.y_val[cut],
        x_test=data.x_test[cut],
        y_test=data.y_test[cut],
    )


def _train_skipnet(data: DatasetSplits, config: BenchmarkConfig, log: Log):
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


def _add_ratios(entry: dict) -> None:
    """Time saved per FLOP saved; ``None`` when under 1 % of the FLOPs is saved (noise)."""
    saved = entry["flops_saved"]
    for key in ("time_saved", "cpu_time_saved"):
        entry[f"{key}_per_flops_saved"] = entry[key] / saved if saved >= 0.01 else None


def _per_batch(stats: LatencyStats, n_batches: int) -> LatencyStats:
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


def _batches(x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    return [x[i : i + batch_size] for i in range(0, x.shape[0], batch_size)]


def _measure_skipnet(
    dense: SkipResNet, gated: SkipResNet, data: DatasetSplits, config: BenchmarkConfig, log: Log
) -> dict[str, dict[str, float]]:
    dense_rt = SkipNetRuntime(dense)
    gated_rt = SkipNetRuntime(gated)
    x_test, y_test = data.x_test, data.y_test.numpy()
    breakdown = gated.flop_breakdown(*x_test.shape[2:])
    results = {}
    for batch_size in config.batch_sizes:
        batches = _batches(x_test, batch_size)
        with torch.inference_mode():
            dense_pred = np.concatenate(
                [dense_rt(b, dynamic=False).logits.argmax(1) for b in batches]
            )
            outs = [gated_rt(b) for b in batches]
        executed = np.concatenate([o.executed for o in outs])
        gated_pred = np.concatenate([o.logits.argmax(1) for o in outs])

        n_timed = config.timed_samples_batch1 if batch_size == 1 else config.timed_samples
        timed = [b for b in _batches(x_test[:n_timed], batch_size) if b.shape[0] == batch_size]
        if not timed:
            raise ValueError(f"the test set holds fewer than {batch_size} samples")
        n_timed = len(timed) * batch_size
        # FLOPs of what ran on the timed samples, counted on the module's own skip
        # execution (the runtime's fused gate kernel is invisible to the counter); the
        # runtime must have taken the same decisions.
        flops_dyn = flops_dense = 0
        counted_executed = []
        with torch.inference_mode():
            for b in timed:
                f, out = count_flops(gated, b, execution="skip")
                flops_dyn += f
                counted_executed.append(out.executed)
            flops_dense = count_flops(dense, timed[0], execution="dense")[0] * len(timed)
        counted_executed = np.concatenate(counted_executed)
        agree = float((counted_executed == executed[:n_timed]).mean())

        with torch_threads(config.timing_threads), torch.inference_mode():
            lat = compare_latency(
                {
                    "dense": lambda t=timed: [dense_rt(b, dynamic=False) for b in t],
                    "dynamic": lambda t=timed: [gated_rt(b) for b in t],
                },
                warmup=config.warmup,
                repeats=config.repeats,
            )
        lat = {k: _per_batch(v, len(timed)) for k, v in lat.items()}
        entry = {
            "flops_dense": flops_dense / n_timed,
            "flops_dynamic": flops_dyn / n_timed,
            "flops_dynamic_analytic": float(breakdown.dynamic(counted_executed).mean()),
            "flops_dense_analytic": float(breakdown.dense()),
            "flops_dynamic_test_set": float(breakdown.dynamic(executed).mean()),
            "ms_dense": lat["dense"].median_ms,
            "ms_dynamic": lat["dynamic"].median_ms,
            "ms_dense_p10_p90": [lat["dense"].p10_ms, lat["dense"].p90_ms],
            "ms_dynamic_p10_p90": [lat["dynamic"].p10_ms, lat["dynamic"].p90_ms],
            "cpu_ms_dense": lat["dense"].cpu_median_ms,
            "cpu_ms_dynamic": lat["dynamic"].cpu_median_ms,
            "acc_dense": float((dense_pred == y_test).mean()),
            "acc_dynamic": float((gated_pred == y_test).mean()),
            "gate_decisions_agree": agree,
            "samples_timed": n_timed,
            "test_samples": int(x_test.shape[0]),
        }
        entry["flops_saved"] = 1.0 - entry["flops_dynamic"] / entry["flops_dense"]
        entry["time_saved"] = 1.0 - entry["ms_dynamic"] / entry["ms_dense"]
        entry["cpu_time_saved"] = 1.0 - entry["cpu_ms_dynamic"] / entry["cpu_ms_dense"]
        _add_ratios(entry)
        results[str(batch_size)] = entry
        log(f"SkipNet batch {batch_size}: {_short(entry)}")
    return results


def _engine_check(
    dense: SkipResNet,
    gated: SkipResNet,
    data: DatasetSplits,
    config: BenchmarkConfig,
    rate: float,
    log: Log,
) -> dict[str, dict[str, float]]:
    """Batched skip execution with per-sample random decisions at the policy's rate.

    The learned policy can be input-independent (the same blocks skipped for every
    sample), which never exercises the gather / compute / scatter path; this check
    replays coin flips instead, so that every block runs on a different subset.
    """
    results = {}
    rng = np.random.default_rng(config.seed)
    for batch_size in (b for b in config.batch_sizes if b > 1):
        timed = _batches(data.x_test[: config.timed_samples], batch_size)
        timed = [b for b in timed if b.shape[0] == batch_size]
        masks = rng.random((len(timed), gated.num_gates, batch_size)) < rate
        dense_rt = SkipNetRuntime(dense)
        gated_rt = SkipNetRuntime(gated)
        items = [(b, m.T) for b, m in zip(timed, masks, strict=True)]

        def run_dense(item, rt=dense_rt):
            return rt(item[0], dynamic=False)

        def run_replay(item, rt=gated_rt):
            return rt(item[0], decisions=item[1])

        with torch.inference_mode():
            flops_dyn = sum(count_flops(run_replay, item)[0] for item in items)
            flops_dense = count_flops(run_dense, items[0])[0] * len(items)
        breakdown = gated.flop_breakdown(*data.x_test.shape[2:])
        # Replayed decisions skip the gates; charge their FLOPs (not their time, which
        # the learned-gate measurement above includes: about 1 % of a batch of 64).
        gate_flops = sum(breakdown.gates)
        n = len(timed) * batch_size
        with torch_threads(config.timing_threads), torch.inference_mode():
            lat = compare_latency(
                {
                    "dense": lambda items=items: [run_dense(item) for item in items],
                    "dynamic": lambda items=items: [run_replay(item) for item in items],
                },
                warmup=config.warmup,
                repeats=config.repeats,
            )
        lat = {k: _per_batch(v, len(items)) for k, v in lat.items()}
        entry = {
            "execution_rate": float(masks.mean()),
            "flops_dense": flops_dense / n,
            "flops_dynamic": flops_dyn / n + gate_flops,
            "flops_dynamic_analytic": float(
                breakdown.dynamic(masks.transpose(0, 2, 1).reshape(n, -1)).mean()
            ),
            "ms_dense": lat["dense"].median_ms,
            "ms_dynamic": lat["dynamic"].median_ms,
            "cpu_ms_dense": lat["dense"].cpu_median_ms,
            "cpu_ms_dynamic": lat["dynamic"].cpu_median_ms,
        }
        saved = 1.0 - entry["flops_dynamic"] / entry["flops_dense"]
        entry["flops_saved"] = saved
        entry["time_saved"] = 1.0 - entry["ms_dynamic"] / entry["ms_dense"]
        entry["cpu_time_saved"] = 1.0 - entry["cpu_ms_dynamic"] / entry["cpu_ms_dense"]
        _add_ratios(entry)
        results[str(batch_size)] = entry
        log(f"engine check, random per-sample gates, batch {batch_size}: {_short(entry)}")
    return results


def _short(entry: dict) -> str:
    keys = ("flops_saved", "time_saved", "acc_dense", "acc_dynamic", "ms_dense", "ms_dynamic")
    return ", ".join(f"{k}={entry[k]:.4g}" for k in keys if k in entry)


def _run_idk(
    dense: SkipResNet, data: DatasetSplits, config: BenchmarkConfig, log: Log, plot: str | None
) -> dict:
    pool = 8
    logreg = LogisticRegression(C=1.0, max_iter=2000).fit(
        pooled_pixels(data.x_train, pool).numpy(), data.y_train.numpy()
    )
    logreg_flops = linear_flops(pool * pool * data.in_channels, data.num_classes)
    torch.manual_seed(config.seed)
    cnn = SmallCNN(data.in_channels, data.num_classes, data.image_size)
    train_classifier(cnn, data.x_train, data.y_train, epochs=config.cnn_epochs, seed=config.seed)
    with torch.inference_mode():
        cnn_flops = count_flops(cnn, data.x_val[:1])[0]
    resnet = SkipNetClassifier(dense, dynamic=False)
    resnet_flops = float(dense.flop_breakdown(*data.x_val.shape[2:]).dense())
    stages = [
        Stage(
            "logreg-8x8",
            sklearn_predict_proba(logreg, lambda x: pooled_pixels(x, pool).numpy()),
            float(logreg_flops),
            MaxProbRule(),
        ),
        Stage("small-cnn", torch_predict_proba(cnn), float(cnn_flops), MaxProbRule()),
        Stage(f"resnet{config.depth}", resnet, resnet_flops),
    ]

    def stage_outputs(x: torch.Tensor, y: np.ndarray):
        probs = [s.predict_proba(x) for s in stages]
        return probs, [p.argmax(1) == y for p in probs]

    val_probs, val_correct = stage_outputs(data.x_val, data.y_val.numpy())
    rule = MaxProbRule()
    confidences = [rule.confidence(p) for p in val_probs]
    costs = [s.cost for s in stages]
    tuned = tune_thresholds(confidences, val_correct, costs, eps=config.eps, z=config.idk_z)
    plain = tune_thresholds(confidences, val_correct, costs, eps=config.eps)
    deferring = len(stages) - 1
    cascade = IDKCascade(stages).with_thresholds(tuned.point.thresholds[:deferring])
    frontier = cost_accuracy_frontier(confidences, val_correct, costs)

    y_test = data.y_test.numpy()
    _, test_correct = stage_outputs(data.x_test, y_test)
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
    if plot:
        singles = [
            (s.name, s.cost, float(c.mean())) for s, c in zip(stages, val_correct, strict=True)
        ]
        plot_frontier(frontier, plot, singles=singles, chosen=tuned.point)
        log(f"frontier plot written to {plot}")
    out = {
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
        "stages": [
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
        ],
        "frontier_val": [[p.cost, p.accuracy] for p in frontier],
    }
    log("IDK cascade on test:\n" + result.stats.table())
    return out


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
        dense, gated, history = _train_skipnet(data, config, log)
        if weights_dir is not None:
            save_weights(dense, Path(weights_dir) / "resnet.pt")
            save_weights(gated, Path(weights_dir) / "skipnet.pt")
        val = evaluate(gated, data.x_val, data.y_val)
        val_dense = evaluate(dense, data.x_val, data.y_val, execution="dense")
        log(
            f"validation: dense {val_dense.accuracy:.4f}, SkipNet {val.accuracy:.4f} "
            f"at execution rate {val.execution_rate:.3f}"
        )
        skipnet = _measure_skipnet(dense, gated, data, config, log)
        rate = float(evaluate(gated, data.x_test, data.y_test).executed.mean())
        engine = _engine_check(dense, gated, data, config, rate, log)
        idk = _run_idk(dense, data, config, log, plot)
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


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def format_report(results: dict) -> str:
    """The results as readable tables."""
    lines = [
        "SkipNet (per-sample FLOPs, per-batch median ms, test accuracy; ratio = time saved /"
        " FLOPs saved, cpu ratio = the same from process CPU time)",
        f"{'batch':>6}{'MFLOPs dense':>14}{'MFLOPs dyn':>12}{'saved':>8}"
        f"{'ms dense':>10}{'ms dyn':>10}{'saved':>8}{'ratio':>7}{'cpu ratio':>10}"
        f"{'acc dense':>11}{'acc dyn':>9}",
    ]
    for batch, e in results["skipnet"].items():
        lines.append(
            f"{batch:>6}{e['flops_dense'] / 1e6:>14.2f}{e['flops_dynamic'] / 1e6:>12.2f}"
            f"{e['flops_saved']:>8.1%}{e['ms_dense']:>10.3f}{e['ms_dynamic']:>10.3f}"
            f"{e['time_saved']:>8.1%}{_ratio(e['time_saved_per_flops_saved']):>7}"
            f"{_ratio(e['cpu_time_saved_per_flops_saved']):>10}"
            f"{e['acc_dense']:>11.4f}{e['acc_dynamic']:>9.4f}"
        )
    engine = results["details"].get("engine_check_random_gates", {})
    for batch, e in engine.items():
        lines.append(
            f"{'(' + batch + ')':>6}{e['flops_dense'] / 1e6:>14.2f}"
            f"{e['flops_dynamic'] / 1e6:>12.2f}"
            f"{e['flops_saved']:>8.1%}{e['ms_dense']:>10.3f}{e['ms_dynamic']:>10.3f}"
            f"{e['time_saved']:>8.1%}{_ratio(e['time_saved_per_flops_saved']):>7}"
            f"{_ratio(e['cpu_time_saved_per_flops_saved']):>10}   random per-sample gates"
        )
    idk = results["idk"]
    lines += [
        "",
        f"IDK cascade (cost = FLOPs per input; best single model: {idk['best_stage']})",
        f"{'':>10}{'cost':>14}{'accuracy':>10}{'ms (test set)':>15}",
        f"{'best':>10}{idk['cost_best']:>14.4g}{idk['acc_best']:>10.4f}{idk['ms_best']:>15.2f}",
        f"{'cascade':>10}{idk['cost_cascade']:>14.4g}{idk['acc_cascade']:>10.4f}{idk['ms_cascade']:>15.2f}",
        f"   (plain constraint, z = 0: cost {idk['plain_constraint']['cost_cascade']:.4g}, "
        f"accuracy {idk['plain_constraint']['acc_cascade']:.4f})",
        "per-stage IDK rates: "
        + ", ".join(f"{s['name']} {s['idk_rate']:.3f} ({s['inputs']} in)" for s in idk["stages"]),
    ]
    return "\n".join(lines)


def with_overrides(config: BenchmarkConfig, **overrides) -> BenchmarkConfig:
    """``config`` with the given fields replaced (``None`` values are ignored)."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
