"""Training SkipNet: the dense ResNet, supervised gate pre-training, then hybrid RL.

1. :func:`train_dense` trains the plain ResNet (no gates): the baseline, and the
   initialisation of the gated network.
2. :func:`train_supervised_gates` trains the gates with the classification loss alone:
   hard decisions in the forward pass, the sigmoid's gradient in the backward pass
   (straight-through).
3. :func:`train_hybrid_rl` samples gate decisions and optimises the classification loss
   plus REINFORCE on the gates, with a reward that pays ``alpha / n_gates`` for every
   block skipped and charges the sample's classification loss at the end.

All three use masked execution (every block computed, then blended), the only form in
which gradients reach the gates; the saving comes at inference, with skip execution.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from vj_dynamic.skipnet import SkipResNet

__all__ = [
    "EvalResult",
    "TrainConfig",
    "evaluate",
    "random_shift",
    "reinforce_loss",
    "train_dense",
    "train_hybrid_rl",
    "train_supervised_gates",
    "tune_gate_threshold",
]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by the training phases.

    Attributes
    ----------
    epochs : int
        Passes over the training set.
    batch_size : int
        Samples per step.
    optimizer : {"adam", "sgd"}
        AdamW, or SGD with Nesterov momentum. With the few hundred steps a short run
        affords, AdamW reaches a good ResNet much sooner than SGD.
    lr : float
        Peak learning rate (one-cycle: short warm-up, cosine decay).
    momentum, weight_decay : float
        Momentum (SGD only) and weight decay.
    gate_lr_scale : float
        The gates learn at ``lr * gate_lr_scale``: they start from scratch on top of a
        trained network and must move far in few steps.
    max_shift : int
        Random translation of each training image by up to this many pixels (0: none).
    seed : int
        Seed of shuffling, augmentation and gate sampling.
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    gate_lr_scale: float = 1.0
    max_shift: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}"
            )
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.lr <= 0 or self.gate_lr_scale <= 0 or self.max_shift < 0:
            raise ValueError(
                "need lr > 0, gate_lr_scale > 0 and max_shift >= 0, got "
                f"{self.lr}, {self.gate_lr_scale}, {self.max_shift}"
            )


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


def _check_data(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"need x of shape (N, C, H, W) and y of shape (N,), N >= 1; got {tuple(x.shape)}, "
            f"{tuple(y.shape)}"
        )


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by a random offset in ``[-max_shift, max_shift]`` (edges replicated)."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator).tolist()
    return torch.stack(
        [padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)]
    )


def _train(
    model: SkipResNet,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    step: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]],
) -> list[dict[str, float]]:
    """Shared SGD loop; ``step`` returns the loss to minimise and numbers to log."""
    _check_data(x, y)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    gate_ids = {id(p) for p in model.gates.parameters()}
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in gate_ids], "lr": config.lr},
        {"params": list(model.gates.parameters()), "lr": config.lr * config.gate_lr_scale},
    ]
    if config.optimizer == "adam":
        optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(
            groups, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True
        )
    steps_per_epoch = -(-x.shape[0] // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[g["lr"] for g in groups],
        total_steps=config.epochs * steps_per_epoch,
        pct_start=0.15,
        anneal_strategy="cos",
    )
    history = []
    # Channels-last roughly halves the time of a CPU training step with oneDNN.
    model.to(memory_format=torch.channels_last)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        totals: dict[str, float] = {}
        for start in range(0, x.shape[0], config.batch_size):
            index = order[start : start + config.batch_size]
            if index.numel() < 2:  # batch-norm needs two samples
                continue
            xb = random_shift(x[index], config.max_shift, generator)
            xb = xb.contiguous(memory_format=torch.channels_last)
            loss, logs = step(xb, y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            for key, value in logs.items():
                totals[key] = totals.get(key, 0.0) + value * index.numel()
        history.append({key: value / x.shape[0] for key, value in totals.items()})
    model.eval()
    return history


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

    return _train(model, x, y, config, step)


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

    return _train(model, x, y, config, step)


def reinforce_loss(
    gate_logits: torch.Tensor,
    actions: torch.Tensor,
    sample_loss: torch.Tensor,
    *,
    alpha: float,
    gamma: float = 0.99,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE surrogate for the gate decisions of one batch.

    The reward of gate ``i`` is ``alpha / n_gates`` if it skipped its block, and the
    episode ends with ``-sample_loss``; each decision is credited with its discounted
    return, minus the batch mean of that return (a baseline that lowers the variance).

    Parameters
    ----------
    gate_logits : (N, G) Tensor
        Logits of ``P(run block)``.
    actions : (N, G) Tensor
        Sampled decisions, 1 = ran.
    sample_loss : (N,) Tensor
        Per-sample classification loss (treated as a constant).
    alpha : float
        Price of computation: total reward for skipping every block.
    gamma : float, optional
        Discount factor.

    Returns
    -------
    loss : Tensor
        Scalar to minimise (its gradient is the policy gradient).
    returns : (N, G) Tensor
        Discounted returns, for logging.
    """
    actions = actions.detach()
    n_gates = actions.shape[1]
    rewards = (1.0 - actions) * (alpha / n_gates)
    returns = torch.empty_like(rewards)
    running = -sample_loss.detach()
    for i in range(n_gates - 1, -1, -1):
        running = rewards[:, i] + gamma * running
        returns[:, i] = running
    advantage = returns - returns.mean(dim=0, keepdim=True)
    log_prob = actions * F.logsigmoid(gate_logits) + (1.0 - actions) * F.logsigmoid(-gate_logits)
    return -(log_prob * advantage).sum(dim=1).mean(), returns


def train_hybrid_rl(
    model: SkipResNet,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    *,
    alpha: float = 0.1,
    gamma: float = 0.99,
    rl_weight: float = 1.0,
) -> list[dict[str, float]]:
    """Hybrid reinforcement learning: cross-entropy for the network, REINFORCE for the gates.

    Parameters
    ----------
    model, x, y, config
        Network (usually after :func:`train_supervised_gates`), training data, settings.
    alpha : float, optional
        Trade-off between accuracy and computation (larger: more skipping).
    gamma : float, optional
        Discount of future rewards.
    rl_weight : float, optional
        Weight of the REINFORCE term against the cross-entropy.

    Returns
    -------
    list of dict
        Per epoch: ``loss`` (cross-entropy), ``accuracy``, ``execution_rate``, ``reward``
        (mean return of the first gate).
    """
    if alpha < 0 or not 0 <= gamma <= 1 or rl_weight < 0:
        raise ValueError(
            f"need alpha >= 0, 0 <= gamma <= 1, rl_weight >= 0; got {alpha}, {gamma}, {rl_weight}"
        )

    def step(xb: torch.Tensor, yb: torch.Tensor):
        out = model(xb, execution="masked", policy="sample")
        sample_loss = F.cross_entropy(out.logits, yb, reduction="none")
        rl, returns = reinforce_loss(
            out.gate_logits, out.masks, sample_loss, alpha=alpha, gamma=gamma
        )
        ce = sample_loss.mean()
        logs = {
            "loss": ce.item(),
            "accuracy": (out.logits.argmax(1) == yb).float().mean().item(),
            "execution_rate": out.masks.mean().item(),
            "reward": returns[:, 0].mean().item(),
        }
        return ce + rl_weight * rl, logs

    return _train(model, x, y, config, step)


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
    _check_data(x, y)
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
