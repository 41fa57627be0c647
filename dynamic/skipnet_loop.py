"""The training loop shared by SkipNet's training phases, and its settings.

:func:`train_loop` runs any per-batch loss (dense training, supervised gates, hybrid
reinforcement learning) with AdamW or SGD, a one-cycle schedule, a separate learning
rate for the gates and random shifts of the images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from vj_dynamic.skipnet import SkipResNet

__all__ = ["TrainConfig", "check_data", "random_shift", "train_loop"]


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


def check_data(x: torch.Tensor, y: torch.Tensor) -> None:
    """ValueError unless ``x`` is ``(N, C, H, W)`` and ``y`` is ``(N,)`` with ``N >= 1``."""
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


def train_loop(
    model: SkipResNet,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    step: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]],
) -> list[dict[str, float]]:
    """The SGD loop every training phase shares.

    Parameters
    ----------
    model : SkipResNet
        Trained in place (NCHW, train mode; eval mode on return).
    x, y : Tensor
        Training inputs ``(N, C, H, W)`` and labels ``(N,)``.
    config : TrainConfig
        Epochs, batch size, optimiser, learning rates (the gates at
        ``lr * gate_lr_scale``), augmentation, seed.
    step : callable
        ``step(x_batch, y_batch) -> (loss, logs)``: the loss to minimise and numbers to
        log; the loop averages the logs over each epoch.

    Returns
    -------
    list of dict
        The averaged logs of every epoch.
    """
    check_data(x, y)
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
    # Plain NCHW. Channels-last made a CPU training step about twice as fast with oneDNN,
    # but on a CPU with AVX2 and no AVX-512, PyTorch 2.13.0's channels-last convolution
    # backward corrupts the heap (glibc aborts "corrupted size vs. prev_size" inside
    # loss.backward, with one thread too, on the tests' tiny networks).
    model.to(memory_format=torch.contiguous_format)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        totals: dict[str, float] = {}
        for start in range(0, x.shape[0], config.batch_size):
            index = order[start : start + config.batch_size]
            if index.numel() < 2:  # batch-norm needs two samples
                continue
            xb = random_shift(x[index], config.max_shift, generator).contiguous()
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
