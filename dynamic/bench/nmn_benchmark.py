"""Neural module networks on SHAPES: accuracy against a monolithic peer, and batched execution.

:func:`run_nmn_benchmark` draws a SHAPES-style set (:mod:`vj_dynamic.bench.shapes`),
trains a :class:`~vj_dynamic.nmn.NeuralModuleNetwork` and a
:class:`~vj_dynamic.bench.vqa_baseline.MonolithicVQA` of the same parameter budget with
the same settings, and reports their test accuracy, overall and per question template.
It then times answering ``timed_questions`` test questions three ways, interleaved: the
module network with questions grouped by layout (one batch per layout structure), the
module network one question at a time, and the monolithic network in one batch; and
counts the FLOPs each executed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from vj_dynamic.bench.shapes import ShapesSet, make_shapes_splits
from vj_dynamic.bench.vqa_baseline import budget_matched_baseline, parameter_count
from vj_dynamic.flops import count_flops
from vj_dynamic.latency import compare_latency, torch_threads
from vj_dynamic.nmn import NeuralModuleNetwork, image_tensor
from vj_dynamic.nmn_layout import group_layouts, layout_to_text, parse_question
from vj_dynamic.nmn_training import VQATrainConfig, predict_logits, train_vqa

__all__ = ["NMNBenchmarkConfig", "format_nmn_report", "run_nmn_benchmark"]


@dataclass(frozen=True)
class NMNBenchmarkConfig:
    """Settings of :func:`run_nmn_benchmark` (defaults: about two minutes on 2 cores).

    Attributes
    ----------
    n_train, n_val, n_test, questions_per_image : int
        Images per part and questions per image.
    epochs, batch_size : int
    lr : float
    timed_questions, repeats, threads : int
        Questions per timed call, timed rounds, PyTorch threads while timing.
    seed : int
    """

    n_train: int = 1500
    n_val: int = 200
    n_test: int = 500
    questions_per_image: int = 4
    epochs: int = 8
    batch_size: int = 64
    lr: float = 5e-3
    timed_questions: int = 256
    repeats: int = 7
    threads: int = 1
    seed: int = 0

    @classmethod
    def quick(cls) -> NMNBenchmarkConfig:
        """Small set, two epochs: a smoke run of some seconds."""
        return cls(n_train=150, n_val=40, n_test=60, epochs=2, timed_questions=64, repeats=2)


def _per_template(logits: np.ndarray, data: ShapesSet) -> dict[str, float]:
    right = (logits > 0) == (data.answers == 1)
    templates = np.asarray(data.templates)
    return {t: float(right[templates == t].mean()) for t in sorted(set(data.templates))}


def _timing(nmn: NeuralModuleNetwork, baseline: torch.nn.Module, data: ShapesSet,
            config: NMNBenchmarkConfig) -> dict:
    n = min(config.timed_questions, len(data))
    images, index = np.unique(data.image_index[:n], return_inverse=True)
    index = index.ravel()
    pixels = image_tensor(data.images[images])
    layouts = [parse_question(q) for q in data.questions[:n]]
    tokens = baseline.prepare(data.questions[:n])
    calls: dict[str, Callable[[], object]] = {
        "nmn_batched": lambda: nmn(pixels, layouts, index),
        "nmn_one_by_one": lambda: nmn.forward_one_by_one(pixels, layouts, index),
        "monolithic_batched": lambda: baseline(pixels, tokens, index),
    }
    with torch.no_grad(), torch_threads(config.threads):
        stats = compare_latency(calls, warmup=1, repeats=config.repeats)
        flops = {name: count_flops(call)[0] for name, call in calls.items()}
    return {
        "questions": n, "images": len(images), "threads": config.threads,
        "layout_groups": len(group_layouts(layouts, nmn.words)),
        "ms": {k: s.median_ms for k, s in stats.items()},
        "questions_per_s": {k: n / (s.median_ms / 1e3) for k, s in stats.items()},
        "flops_per_question": {k: v / n for k, v in flops.items()},
    }


def run_nmn_benchmark(config: NMNBenchmarkConfig | None = None, *,
                      log: Callable[[str], None] | None = None) -> dict:
    """Train both networks, measure accuracy and throughput; returns a JSON-ready dict."""
    config = config or NMNBenchmarkConfig()
    log = log or (lambda line: None)
    load_start = os.getloadavg()[0]
    data = make_shapes_splits(config.n_train, config.n_val, config.n_test,
                              config.questions_per_image, seed=config.seed)
    log(f"SHAPES: {len(data.train)} / {len(data.val)} / {len(data.test)} questions")
    torch.manual_seed(config.seed)
    nmn = NeuralModuleNetwork()
    baseline = budget_matched_baseline(parameter_count(nmn))
    train = VQATrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                           seed=config.seed)
    results: dict = {"config": asdict(config), "models": {}}
    for name, model in (("nmn", nmn), ("monolithic", baseline)):
        history = train_vqa(model, data.train, data.val, train,
                            log=lambda line, name=name: log(f"{name} {line}"))
        logits = predict_logits(model, data.test)
        results["models"][name] = {
            "parameters": parameter_count(model),
            "test_accuracy": float(np.mean((logits > 0) == (data.test.answers == 1))),
            "test_accuracy_by_template": _per_template(logits, data.test),
            "best_val_accuracy": max(history["val_accuracy"]),
        }
    layouts = {layout_to_text(parse_question(q)) for q in data.test.questions[:1000]}
    results["example_layouts"] = sorted(layouts)[:8]
    results["timing"] = _timing(nmn, baseline, data.test, config)
    results["load"] = [load_start, os.getloadavg()[0]]
    return results


def format_nmn_report(results: dict) -> str:
    """The benchmark's figures as text."""
    m, t = results["models"], results["timing"]
    lines = [f"{'model':12s} {'params':>7s} {'test acc':>9s}  per template"]
    for name, r in m.items():
        per = ", ".join(f"{k} {v:.3f}" for k, v in r["test_accuracy_by_template"].items())
        lines.append(f"{name:12s} {r['parameters']:7d} {r['test_accuracy']:9.4f}  {per}")
    qps = t["questions_per_s"]
    lines += [
        f"{t['questions']} questions on {t['images']} images, {t['layout_groups']} layout "
        f"structures, {t['threads']} thread:",
        *(f"  {k:20s} {t['ms'][k]:9.1f} ms  {qps[k]:9.0f} questions/s  "
          f"{t['flops_per_question'][k] / 1e3:8.1f} kFLOPs/question" for k in t["ms"]),
        f"  batched / one-by-one throughput: {qps['nmn_batched'] / qps['nmn_one_by_one']:.1f}x",
        f"load average {results['load'][0]:.1f} at the start, {results['load'][1]:.1f} at the end",
    ]
    return "\n".join(lines)
