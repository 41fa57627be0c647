"""Training and scoring yes/no question-answering networks on a SHAPES-style set.

One loop serves the module network (:class:`~vj_dynamic.nmn.NeuralModuleNetwork`,
whose batches run grouped by layout) and its monolithic peer
(:class:`~vj_dynamic.bench.vqa_baseline.MonolithicVQA`): both answer with
``model(images, prepared, image_index)``, where ``prepared`` is what
:func:`prepare_questions` made of the questions (layouts, or word indices).
Training minimises the binary cross-entropy of the yes/no logit with Adam and keeps
the weights of the epoch with the best validation accuracy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm
from vj_dynamic.bench.shapes import ShapesSet
from vj_dynamic.nmn import NeuralModuleNetwork
from vj_dynamic.nmn_layout import parse_question

__all__ = ["VQATrainConfig", "accuracy", "predict_logits", "prepare_questions", "train_vqa"]


@dataclass(frozen=True)
class VQATrainConfig:
    """Settings of :func:`train_vqa`.

    Attributes
    ----------
    epochs : int
        Passes over the training questions.
    batch_size : int
        Questions per step.
    lr, weight_decay : float
        Adam's step size and L2 penalty.
    seed : int
        Seed of the initial weights and the batch order.
    """

    epochs: int = 12
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"need epochs, batch_size >= 1, lr > 0, weight_decay >= 0: {self}")


def prepare_questions(model: nn.Module, questions: list[str]) -> Any:
    """What ``model`` takes for ``questions``: layouts for a module network, else its own."""
    if isinstance(model, NeuralModuleNetwork):
        return [parse_question(q) for q in questions]
    return model.prepare(questions)


def _take(prepared: Any, rows: np.ndarray) -> Any:
    if isinstance(prepared, list):
        return [prepared[int(i)] for i in rows]
    return prepared[rows]


def predict_logits(model: nn.Module, data: ShapesSet, prepared: Any | None = None,
                   batch_size: int = 512) -> np.ndarray:
    """Yes/no logits ``(Q,)`` of every question of ``data`` (evaluation mode, no gradients)."""
    prepared = prepare_questions(model, data.questions) if prepared is None else prepared
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            rows = np.arange(start, min(start + batch_size, len(data)))
            images, index = np.unique(data.image_index[rows], return_inverse=True)
            out.append(model(data.images[images], _take(prepared, rows), index.ravel()).numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def accuracy(model: nn.Module, data: ShapesSet, prepared: Any | None = None) -> float:
    """Share of the questions of ``data`` answered right."""
    logits = predict_logits(model, data, prepared)
    return float(np.mean((logits > 0) == (data.answers == 1))) if len(data) else float("nan")


def train_vqa(
    model: nn.Module,
    train: ShapesSet,
    val: ShapesSet,
    config: VQATrainConfig | None = None,
    *,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> dict[str, list[float]]:
    """Train ``model`` on ``train`` and keep its best epoch on ``val`` (in place).

    Parameters
    ----------
    model : nn.Module
        A :class:`~vj_dynamic.nmn.NeuralModuleNetwork` or a model with ``prepare``.
    train, val : ShapesSet
    config : VQATrainConfig, optional
    log : callable, optional
        Receives one line per epoch.
    progress : bool, optional
        Show a tqdm bar over the epochs.

    Returns
    -------
    dict
        ``loss`` (mean training loss) and ``val_accuracy`` per epoch.
    """
    config = config or VQATrainConfig()
    if len(train) == 0 or len(val) == 0:
        raise ValueError("training and validation sets must both hold questions")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    prepared_train = prepare_questions(model, train.questions)
    prepared_val = prepare_questions(model, val.questions)
    targets = torch.from_numpy(train.answers.astype(np.float32))
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    history: dict[str, list[float]] = {"loss": [], "val_accuracy": []}
    best, best_state = -1.0, copy.deepcopy(model.state_dict())
    for epoch in tqdm(range(config.epochs), desc="epochs", disable=not progress):
        model.train()
        order, total = rng.permutation(len(train)), 0.0
        for start in range(0, len(order), config.batch_size):
            rows = order[start:start + config.batch_size]
            images, index = np.unique(train.image_index[rows], return_inverse=True)
            logits = model(train.images[images], _take(prepared_train, rows), index.ravel())
            loss = F.binary_cross_entropy_with_logits(logits, targets[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(rows)
        history["loss"].append(total / len(order))
        history["val_accuracy"].append(accuracy(model, val, prepared_val))
        if history["val_accuracy"][-1] > best:
            best, best_state = history["val_accuracy"][-1], copy.deepcopy(model.state_dict())
        if log is not None:
            log(f"epoch {epoch + 1}/{config.epochs}: loss {history['loss'][-1]:.4f}, "
                f"validation accuracy {history['val_accuracy'][-1]:.4f}")
    model.load_state_dict(best_state)
    model.eval()
    return history
