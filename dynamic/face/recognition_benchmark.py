"""Few-shot face verification on unseen people: TAFE-Net against two baselines, and its cost.

:func:`run_recognition_benchmark` runs the protocol of :mod:`vj_dynamic.face.few_shot` on
the ORL people, fold by fold: a TAFE-Net head is meta-trained on the fold's training
people (on the fixed backbone of the given model), then TAFE-Net, nearest-neighbour
cosine and a logistic regression score the same episodes of the fold's unseen people.
It then times what the webcam does per frame: identify ``timing_faces`` faces among
``timing_people`` people enrolled with K = 5 crops each, TAFE-Net against
nearest-neighbour cosine (the backbone's cost included in both), and counts FLOPs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from vj_dynamic.face.few_shot import (
    best_threshold,
    logistic_regression_scores,
    nearest_neighbour_scores,
    person_folds,
    sample_episodes,
    tafe_scores,
    verification_metrics,
)
from vj_dynamic.face.identity import FaceIdentityModel, IdentitySet
from vj_dynamic.face.identity_training import train_head
from vj_dynamic.latency import compare_latency, torch_threads
from vj_dynamic.tafe_training import TafeTrainConfig

__all__ = ["METHODS", "RecognitionBenchmarkConfig", "format_recognition_report",
           "run_recognition_benchmark"]

#: The methods compared, in report order.
METHODS = ("tafe", "nearest_neighbour", "logistic_regression")


@dataclass(frozen=True)
class RecognitionBenchmarkConfig:
    """Settings of :func:`run_recognition_benchmark`.

    Attributes
    ----------
    folds, n_val : int
        Person folds (each tests ``n_people // folds`` people) and validation people.
    shots : tuple of int
        Enrolment sizes K measured.
    episodes_per_person : int
        Episodes per person and K (each: K crops, 5 positive and 5 negative questions).
    steps : int
        Meta-training steps of each fold's head.
    timing_faces, timing_people, repeats, threads : int
        The timed frame (faces found, people enrolled), timed rounds, PyTorch threads.
    seed : int
    """

    folds: int = 4
    n_val: int = 5
    shots: tuple[int, ...] = (1, 3, 5)
    episodes_per_person: int = 10
    steps: int = 800
    timing_faces: int = 8
    timing_people: int = 10
    repeats: int = 30
    threads: int = 1
    seed: int = 0

    @classmethod
    def quick(cls) -> RecognitionBenchmarkConfig:
        """Two folds, fewer episodes and steps: a smoke run of well under a minute."""
        return cls(folds=2, episodes_per_person=3, steps=150, repeats=5)


def _fold(model: FaceIdentityModel, identities: IdentitySet, features: np.ndarray,
          parts: tuple[np.ndarray, np.ndarray, np.ndarray], config: RecognitionBenchmarkConfig,
          fold: int) -> dict:
    train, val, test = parts
    head = train_head(model.embedder, identities, train,
                      TafeTrainConfig(steps=config.steps, seed=config.seed + fold))
    background = features[identities.of(train)]
    scorers: dict[str, Callable] = {
        "tafe": lambda eps: tafe_scores(head, features, eps),
        "nearest_neighbour": lambda eps: nearest_neighbour_scores(features, eps),
        "logistic_regression": lambda eps: logistic_regression_scores(features, eps, background),
    }
    rng = np.random.default_rng(config.seed + 100 * fold)
    out: dict[str, dict] = {}
    for k in config.shots:
        val_eps = sample_episodes(identities.person, val, k, config.episodes_per_person, rng)
        test_eps = sample_episodes(identities.person, test, k, config.episodes_per_person, rng)
        val_labels = np.concatenate([e.labels for e in val_eps])
        test_labels = np.concatenate([e.labels for e in test_eps])
        out[str(k)] = {}
        for name, score in scorers.items():
            threshold = best_threshold(score(val_eps), val_labels)
            out[str(k)][name] = verification_metrics(score(test_eps), test_labels, threshold)
    return out


def _summarise(folds: list[dict], shots: tuple[int, ...]) -> dict:
    summary: dict[str, dict] = {}
    for k in map(str, shots):
        summary[k] = {}
        for name in METHODS:
            auc = [f[k][name]["auc"] for f in folds]
            acc = [f[k][name]["accuracy"] for f in folds]
            summary[k][name] = {"auc": float(np.mean(auc)), "accuracy": float(np.mean(acc)),
                                "auc_per_fold": auc}
    return summary


def _timing(model: FaceIdentityModel, identities: IdentitySet,
            config: RecognitionBenchmarkConfig) -> dict:
    """Identify a frame's faces among enrolled people: TAFE-Net vs nearest neighbour."""
    rng = np.random.default_rng(config.seed)
    people = rng.choice(len(identities.names), config.timing_people, replace=False)
    enrolled = [identities.crops[rng.choice(np.flatnonzero(identities.person == p), 5,
                                            replace=False)] for p in people]
    faces = identities.crops[rng.choice(len(identities.crops), config.timing_faces)]
    tasks = model.tasks(enrolled)
    gallery = model.embed(np.concatenate(enrolled))
    owner = np.repeat(np.arange(len(enrolled)), 5)

    def tafe() -> np.ndarray:
        return model.scores(model.embed(faces), tasks)

    def nearest() -> np.ndarray:
        cosines = (model.embed(faces) @ gallery.T).numpy()
        return np.stack([cosines[:, owner == i].max(1) for i in range(len(enrolled))], 1)

    with torch_threads(config.threads):
        stats = compare_latency({"tafe": tafe, "nearest_neighbour": nearest}, warmup=3,
                                repeats=config.repeats)
    head, d = model.head, model.embedder.dim
    pairs = config.timing_faces * config.timing_people
    backbone = config.timing_faces * model.embedder.flops()
    return {
        "faces": config.timing_faces, "people": config.timing_people, "k": 5,
        "threads": config.threads,
        "ms": {name: s.median_ms for name, s in stats.items()},
        "cpu_ms": {name: s.cpu_median_ms for name, s in stats.items()},
        "flops": {"tafe": backbone + pairs * head.query_flops(5),
                  "nearest_neighbour": backbone + pairs * 2 * d * 5},
        "flops_backbone_per_face": model.embedder.flops(),
        "flops_enrol_per_person": 5 * model.embedder.flops() + head.task_flops(5),
    }


def run_recognition_benchmark(
    model: FaceIdentityModel,
    identities: IdentitySet,
    config: RecognitionBenchmarkConfig | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Measure few-shot verification on unseen people and the cost of recognition.

    Parameters
    ----------
    model : FaceIdentityModel
        Its backbone is used as is; its head only for the timing (each fold trains its own).
    identities : IdentitySet
        Identity-labelled crops (:func:`~vj_dynamic.face.identity.orl_identities`).
    config : RecognitionBenchmarkConfig, optional
    log : callable, optional
        Receives progress lines.

    Returns
    -------
    dict
        ``config``, ``folds`` (per fold, K and method: ``auc``, ``accuracy``),
        ``summary`` (means over folds), ``timing`` and ``load`` (the 1-minute load average
        at the start and the end).
    """
    config = config or RecognitionBenchmarkConfig()
    log = log or (lambda line: None)
    load_start = os.getloadavg()[0]
    features = model.embed(identities.crops).numpy()
    folds = []
    for f, parts in enumerate(person_folds(len(identities.names), config.folds, config.n_val,
                                           config.seed)):
        folds.append(_fold(model, identities, features, parts, config, f))
        log(f"fold {f + 1}/{config.folds}: " + ", ".join(
            f"K={k} AUC tafe {r['tafe']['auc']:.3f} nn {r['nearest_neighbour']['auc']:.3f} "
            f"lr {r['logistic_regression']['auc']:.3f}" for k, r in folds[-1].items()))
    timing = _timing(model, identities, config)
    return {"config": asdict(config), "people": len(identities.names), "folds": folds,
            "summary": _summarise(folds, config.shots), "timing": timing,
            "load": [load_start, os.getloadavg()[0]]}


def format_recognition_report(results: dict) -> str:
    """The benchmark's figures as a text table."""
    names = {"tafe": "TAFE-Net", "nearest_neighbour": "nearest-neighbour cosine",
             "logistic_regression": "logistic regression on K crops"}
    c = results["config"]
    lines = [f"few-shot verification on unseen ORL people ({c['folds']} folds, "
             f"{c['episodes_per_person']} episodes per person and K)",
             f"{'K':>2}  {'method':32s} {'ROC AUC':>8s} {'accuracy':>9s}"]
    for k, methods in results["summary"].items():
        for name in METHODS:
            m = methods[name]
            lines.append(f"{k:>2}  {names[name]:32s} {m['auc']:8.4f} {m['accuracy']:9.4f}")
    t = results["timing"]
    lines += [
        f"identify {t['faces']} faces among {t['people']} people enrolled with K={t['k']} "
        f"({t['threads']} thread):",
        f"  TAFE-Net {t['ms']['tafe']:.2f} ms, nearest neighbour "
        f"{t['ms']['nearest_neighbour']:.2f} ms "
        f"(ratio {t['ms']['tafe'] / t['ms']['nearest_neighbour']:.2f}); "
        f"MFLOPs {t['flops']['tafe'] / 1e6:.2f} vs {t['flops']['nearest_neighbour'] / 1e6:.2f}",
        f"  enrolling one person (5 crops): {t['flops_enrol_per_person'] / 1e6:.2f} MFLOPs",
        f"load average {results['load'][0]:.1f} at the start, {results['load'][1]:.1f} at the end",
    ]
    return "\n".join(lines)
