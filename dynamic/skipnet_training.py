"""Training SkipNet: the dense ResNet, supervised gate pre-training, then hybrid RL.

1. :func:`train_dense` trains the plain ResNet (no gates): the baseline, and the
   initialisation of the gated network.
2. :func:`train_supervised_gates` trains the gates with the classification loss alone:
   hard decisions in the forward pass, the sigmoid's gradient in the backward pass
   (straight-through). Optional: it only teaches the gates to stay open.
3. :func:`train_hybrid_rl` (:mod:`vj_dynamic.skipnet_rl`) samples gate decisions and
   optimises the classification loss plus REINFORCE on the gates, with a reward that
   pays each sample for the FLOPs it skipped and charges its classification loss.
4. :func:`fine_tune_on_policy` fits the body to the paths the learned gates take.
5. :func:`tune_gate_threshold` sets the gate threshold on validation data.

For a policy that depends on the input, build the network with ``gate_norm=True`` and
keep :func:`train_hybrid_rl`'s defaults (greedy baseline, exploration, normalised
advantages, FLOP-priced skipping); :mod:`vj_dynamic.skipnet_rl` explains why.

Every phase uses masked execution (every block computed, then blended), the only form
in which gradients reach the gates; the saving comes at inference, with skip execution.
The loop and its settings (:class:`TrainConfig`) live in :mod:`vj_dynamic.skipnet_loop`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.skipnet_loop import TrainConfig, check_data, random_shift, train_loop
from vj_dynamic.skipnet_rl import fine_tune_on_policy, reinforce_loss, train_hybrid_rl

__all__ = [
    "EvalResult",
    "TrainConfig",
    "evaluate",
    "fine_tune_on_policy",
    "random_shift",
    "reinforce_loss",
    "train_dense",
    "train_hybrid_rl",
    "train_supervised_gates",
    "tune_gate_threshold",
]


@dataclass
class EvalResult:
    """Accuracy and gate behaviour of a network on a labelled set.

    Attributes
    ----------
    accuracy : float
        Fraction of correct predictions.
    executed : (N, n_gates) ndarray of bool
        Which gated blocks ran for each sample (all true for dense execution).
    predictions : (N,) ndarray of int
        Predicted classes.
    """

    accuracy: float
    executed: np.ndarray
    predictions: np.ndarray = field(repr=False)

    @property
    def execution_rate(self) -> float:
        """Mean fraction of gated blocks that ran."""
        return float(self.executed.mean())


def train_dense(
    model: SkipResNet, x: torch.Tensor, y: torch.Tensor, config: TrainConfig
) -> list[dict[str, float]]:
    """Train the plain ResNet (dense execution; gates unused).

    Returns
    -------
    list of dict
        Per epoch: ``loss`` (mean cross-entropy) and ``accuracy`` on the training batches.
    """

    def step(xb: torch.Tensor, yb: torch.Tensor):
        logits = model(xb, execution="dense").logits
        loss = F.cross_entropy(logits, yb)
        accuracy = (logits.argmax(1) == yb).float().mean()
        return loss, {"loss": loss.item(), "accuracy": accuracy.item()}

    return train_loop(model, x, y, config, step)


def train_supervised_gates(
    model: SkipResNet, x: torch.Tensor, y: torch.Tensor, config: TrainConfig
) -> list[dict[str, float]]:
    """Supervised pre-training of the gated network: hard forward, straight-through backward.

    Returns
    -------
    list of dict
        Per epoch: ``loss`` (cross-entropy), ``accuracy``, ``execution_rate``.
    """

    def step(xb: torch.Tensor, yb: torch.Tensor):
        out = model(xb, execution="masked", policy="hard")
        loss = F.cross_entropy(out.logits, yb)
        accuracy = (out.logits.argmax(1) == yb).float().mean()
        logs = {"loss": loss.item(), "accuracy": accuracy.item()}
        logs["execution_rate"] = out.masks.detach().mean().item()
        return loss, logs

    return train_loop(model, x, y, config, step)


@torch.no_grad()
def evaluate(
    model: SkipResNet,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    execution: str = "skip",
    batch_size: int = 256,
) -> EvalResult:
    """Accuracy and gate decisions of ``model`` (eval mode) on ``(x, y)``."""
    check_data(x, y)
    model.eval()
    predictions, executed = [], []
    for start in range(0, x.shape[0], batch_size):
        out = model(x[start : start + batch_size], execution=execution, policy="hard")
        predictions.append(out.logits.argmax(1).cpu().numpy())
        executed.append(out.executed)
    predictions_np = np.concatenate(predictions)
    accuracy = float((predictions_np == y.cpu().numpy()).mean())
    return EvalResult(accuracy, np.concatenate(executed), predictions_np)


def tune_gate_threshold(
    model: SkipResNet,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    min_accuracy: float,
    candidates: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
) -> tuple[float, list[tuple[float, float, float]]]:
    """Pick the gate threshold that skips most while keeping validation accuracy.

    Sets ``model.gate_threshold`` to the candidate with the fewest FLOPs whose accuracy
    is at least ``min_accuracy`` (the most accurate candidate when none reaches it).

    Returns
    -------
    threshold : float
        The chosen threshold.
    table : list of (threshold, accuracy, flops_per_sample)
        Every candidate tried.
    """
    if not candidates or not all(0 < t < 1 for t in candidates):
        raise ValueError(f"candidates must be thresholds in (0, 1), got {candidates}")
    breakdown = model.flop_breakdown(*x_val.shape[2:])
    table = []
    for threshold in candidates:
        model.gate_threshold = threshold
        result = evaluate(model, x_val, y_val)
        table.append((threshold, result.accuracy, float(breakdown.dynamic(result.executed).mean())))
    feasible = [row for row in table if row[1] >= min_accuracy]
    best = (
        min(feasible, key=lambda r: (r[2], -r[1])) if feasible else max(table, key=lambda r: r[1])
    )
    model.gate_threshold = best[0]
    return best[0], table
