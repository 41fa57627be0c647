"""Meta-training TAFE-Net on labelled features: many small tasks drawn from few classes.

A training step draws ``tasks_per_step`` tasks. A task picks a class, K of its samples
as the task's description (K drawn from ``1..max_k`` per step, the same K for the whole
step) and ``queries`` other samples, half of the class and half of other classes. The
loss is the binary cross-entropy of the task's logits plus ``embedding_weight`` times
the TAFE-Net embedding loss (:func:`~vj_dynamic.tafe.embedding_loss`).

Features come as ``(V, N, d)``: ``V`` views of each of ``N`` samples (e.g. the backbone's
features of augmented copies); every use of a sample picks one of its views at random,
so the head never sees the same numbers twice in a row and overfits the few classes
less. Meta-training runs on precomputed features and takes seconds to a minute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from vj_dynamic.tafe import TafeNet, embedding_loss

__all__ = ["TafeTrainConfig", "sample_tasks", "train_tafe"]


@dataclass(frozen=True)
class TafeTrainConfig:
    """Settings of :func:`train_tafe`.

    Attributes
    ----------
    steps : int
        Optimiser steps (a fixed number: there are too few classes to spare some for
        early stopping).
    tasks_per_step, queries : int
        Tasks per step and queries per task (half positive, half negative).
    max_k : int
        Largest number of examples describing a task.
    lr, weight_decay : float
        Adam's step size and L2 penalty.
    embedding_weight, margin : float
        Weight of the embedding loss and its negative margin.
    seed : int
        Seed of the tasks drawn and the initial weights.
    """

    steps: int = 800
    tasks_per_step: int = 16
    queries: int = 10
    max_k: int = 5
    lr: float = 1e-3
    weight_decay: float = 1e-4
    embedding_weight: float = 0.5
    margin: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.steps, self.tasks_per_step, self.max_k) < 1 or self.queries < 2:
            raise ValueError(f"need steps, tasks_per_step, max_k >= 1 and queries >= 2: {self}")
        if self.lr <= 0 or self.weight_decay < 0 or self.embedding_weight < 0:
            raise ValueError(f"need lr > 0, weight_decay >= 0, embedding_weight >= 0: {self}")


def sample_tasks(
    features: np.ndarray, labels: np.ndarray, n_tasks: int, k: int, queries: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``n_tasks`` training tasks of ``k`` examples and ``queries`` queries each.

    Parameters
    ----------
    features : (V, N, d) float ndarray
        ``V`` views of ``N`` samples.
    labels : (N,) int ndarray
        Class of each sample; a class needs more than ``k`` samples to be drawn.
    n_tasks, k, queries : int
    rng : numpy Generator

    Returns
    -------
    support : (n_tasks, k, d) Tensor
    query : (n_tasks, queries, d) Tensor
    target : (n_tasks, queries) float Tensor
        1 for a query of the task's class (the first ``queries // 2``), else 0.
    """
    labels = np.asarray(labels)
    members = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    classes = [c for c, m in members.items() if len(m) > k]
    if not classes or len(members) < 2:
        raise ValueError(f"need two classes or more, one of more than k={k} samples")
    n_pos = queries // 2
    views = features.shape[0]
    support, query, target = [], [], []
    for c in rng.choice(classes, n_tasks):
        order = rng.permutation(members[c])
        others = np.flatnonzero(labels != c)
        rest = order[k:]  # distinct positives while there are enough
        pos = rest[np.arange(n_pos) % len(rest)]
        chosen = np.concatenate([pos, rng.choice(others, queries - n_pos, replace=False)])
        support.append(features[rng.integers(0, views, k), order[:k]])
        query.append(features[rng.integers(0, views, queries), chosen])
        target.append(np.r_[np.ones(n_pos), np.zeros(queries - n_pos)])
    return (torch.from_numpy(np.stack(support).astype(np.float32)),
            torch.from_numpy(np.stack(query).astype(np.float32)),
            torch.from_numpy(np.stack(target).astype(np.float32)))


def train_tafe(
    net: TafeNet,
    features: np.ndarray,
    labels: np.ndarray,
    config: TafeTrainConfig | None = None,
    *,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[float]:
    """Meta-train ``net`` (in place) on tasks drawn from labelled features.

    Parameters
    ----------
    net : TafeNet
    features : (V, N, d) or (N, d) float ndarray
        Sample features, optionally in several views.
    labels : (N,) int ndarray
    config : TafeTrainConfig, optional
    progress : bool, optional
        Show a tqdm bar.
    log : callable, optional
        Receives the mean loss every 100 steps.

    Returns
    -------
    list of float
        The loss of every step.
    """
    config = config or TafeTrainConfig()
    features = np.asarray(features, np.float32)
    if features.ndim == 2:
        features = features[None]
    if features.ndim != 3 or features.shape[1] != len(labels):
        raise ValueError(f"features must be (V, N, d) with N = {len(labels)} labels, "
                         f"got {features.shape}")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    losses: list[float] = []
    net.train()
    for step in tqdm(range(config.steps), desc="meta-training", disable=not progress):
        k = int(rng.integers(1, config.max_k + 1))
        support, query, target = sample_tasks(features, labels, config.tasks_per_step, k,
                                              config.queries, rng)
        weights = net.task(support)
        logits, embedded = net(query, weights)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        loss = loss + config.embedding_weight * embedding_loss(
            embedded, weights.embedding, target, config.margin)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        if log is not None and (step + 1) % 100 == 0:
            log(f"step {step + 1}/{config.steps}: loss {np.mean(losses[-100:]):.4f}")
    net.eval()
    return losses
