"""A face embedding learnt without identity labels: the backbone of face recognition.

:class:`FaceEmbedder` maps a ``32 x 32`` face crop (:func:`~vj_dynamic.face.enrolment.face_crops`)
to a 64-number unit vector. It is trained by contrastive instance discrimination
(SimCLR; Chen et al., ICML 2020): two randomly distorted copies of every face crop of a
batch (small rotation, scale, shift, mirror, contrast, noise) must be each other's
nearest neighbours among all the batch's copies. No identity labels are needed, so it
learns from the shared data's thousands of unlabelled faces (Caltech) and never sees
the people (ORL) that enrolment and recognition are measured on; telling *people* apart
is left to the TAFE-Net head (:mod:`vj_dynamic.tafe`) meta-trained on top of it.

Training is resumable: :func:`train_embedder` writes a checkpoint after every epoch and
continues from it when run again.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm
from vj_dynamic.face.verifier import standardize
from vj_dynamic.flops import conv2d_flops, linear_flops

from vj.atomic import atomic_write_bytes

__all__ = ["EMBEDDING_SIZE", "EmbedderTrainConfig", "FaceEmbedder", "augment", "train_embedder"]

#: Length of a face embedding.
EMBEDDING_SIZE = 64
_CHANNELS = (16, 32, 64, 64)


class FaceEmbedder(nn.Module):
    """Four 3 x 3 convolution blocks (batch norm, ReLU, 2 x 2 max-pool) and a linear layer.

    Parameters
    ----------
    size : int, optional
        Side of the input crops (a multiple of 16).
    dim : int, optional
        Embedding length.
    """

    def __init__(self, size: int = 32, dim: int = EMBEDDING_SIZE) -> None:
        super().__init__()
        if size % 16 or size < 16 or dim < 1:
            raise ValueError(f"size must be a multiple of 16 and dim >= 1, got {size}, {dim}")
        self.size, self.dim = int(size), int(dim)
        blocks, previous = [], 1
        for channels in _CHANNELS:
            blocks += [nn.Conv2d(previous, channels, 3, padding=1, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2)]
            previous = channels
        self.features = nn.Sequential(*blocks)
        side = size // 16
        self.fc = nn.Linear(previous * side * side, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised crops ``(N, 1, S, S)`` -> raw embeddings ``(N, dim)`` (not unit)."""
        if x.ndim != 4 or x.shape[1:] != (1, self.size, self.size):
            raise ValueError(f"input must be (N, 1, {self.size}, {self.size}), "
                             f"got {tuple(x.shape)}")
        return self.fc(self.features(x).flatten(1))

    def embed(self, crops: np.ndarray, batch_size: int = 512) -> torch.Tensor:
        """Unit embeddings ``(N, dim)`` of uint8 crops ``(N, S, S)`` (evaluation mode)."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            parts = [F.normalize(self(standardize(crops[i:i + batch_size])), dim=1)
                     for i in range(0, len(crops), batch_size)]
        self.train(was_training)
        return torch.cat(parts) if parts else torch.zeros(0, self.dim)

    def embed_views(self, crops: np.ndarray, views: int, seed: int = 0,
                    strength: float = 0.5) -> np.ndarray:
        """``(1 + views, N, dim)``: the crops' embeddings, then those of distorted copies."""
        generator = torch.Generator().manual_seed(seed)
        out = [self.embed(crops).numpy()]
        self.eval()
        with torch.no_grad():
            x = standardize(crops)
            for _ in range(views):
                out.append(F.normalize(self(augment(x, generator, strength)), dim=1).numpy())
        return np.stack(out)

    def flops(self) -> int:
        """FLOPs per crop (see :mod:`vj_dynamic.flops`)."""
        total, previous, side = 0, 1, self.size
        for channels in _CHANNELS:
            total += conv2d_flops(previous, channels, 3, side, side)
            previous, side = channels, side // 2
        return total + linear_flops(previous * side * side, self.dim)


def augment(x: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Random small rotation, scale, shift, mirror, contrast and noise of crops ``(N, 1, S, S)``.

    At ``strength`` 1: up to 11 degrees, 10 % scale, 10 % shift, contrast 0.7-1.3 and
    noise of 0.1 (in standardised units).
    """
    n = x.shape[0]

    def uniform(*shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=generator) * 2 - 1) * strength

    angle, scale, shift = uniform(n) * 0.2, 1 + uniform(n) * 0.1, uniform(n, 2) * 0.1
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * mirror, -sin, shift[:, 0]], 1),
                         torch.stack([sin * mirror, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    contrast = 1 + uniform(n, 1, 1, 1) * 0.3
    return out * contrast + torch.randn(out.shape, generator=generator) * 0.1 * strength


@dataclass(frozen=True)
class EmbedderTrainConfig:
    """Settings of :func:`train_embedder`.

    Attributes
    ----------
    epochs, batch_size : int
        Passes over the crops, and crops per step (each seen twice, distorted).
    lr, weight_decay : float
        Adam's settings.
    temperature : float
        Of the contrastive loss's softmax over cosines.
    seed : int
    """

    epochs: int = 12
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-5
    temperature: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0 or self.temperature <= 0:
            raise ValueError(f"need epochs >= 1, batch_size >= 2, lr > 0, temperature > 0: "
                             f"{self}")


def _contrastive_loss(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over ``2B`` unit vectors: row ``i`` and row ``i +- B`` are the pair."""
    b = z.shape[0] // 2
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(-1e9)
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)])
    return F.cross_entropy(similarity, target)


def train_embedder(
    crops: np.ndarray,
    config: EmbedderTrainConfig | None = None,
    *,
    checkpoint: str | Path | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> FaceEmbedder:
    """Train a :class:`FaceEmbedder` on unlabelled face crops by instance discrimination.

    Parameters
    ----------
    crops : (N, S, S) uint8 ndarray
        Face crops (at least ``config.batch_size``).
    config : EmbedderTrainConfig, optional
    checkpoint : path, optional
        Saved after every epoch (weights, optimiser, epoch, random state) and resumed
        from when it exists and matches ``config``.
    progress : bool, optional
        Show a tqdm bar over the epochs.
    log : callable, optional
        Receives one line per epoch.

    Returns
    -------
    FaceEmbedder
        In evaluation mode.
    """
    config = config or EmbedderTrainConfig()
    crops = np.asarray(crops)
    if crops.ndim != 3 or crops.dtype != np.uint8 or len(crops) < config.batch_size:
        raise ValueError(f"need at least {config.batch_size} uint8 crops (N, S, S), got "
                         f"{crops.dtype} {crops.shape}")
    torch.manual_seed(config.seed)
    net = FaceEmbedder(size=crops.shape[1])
    head = nn.Sequential(nn.Linear(net.dim, net.dim), nn.ReLU(), nn.Linear(net.dim, net.dim))
    params = [*net.parameters(), *head.parameters()]
    optimiser = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    start = _resume(checkpoint, config, net, head, optimiser, generator)
    x = standardize(crops)
    for epoch in tqdm(range(start, config.epochs), desc="embedder epochs", disable=not progress,
                      initial=start, total=config.epochs):
        net.train()
        order, total, steps = torch.randperm(len(x), generator=generator), 0.0, 0
        for first in range(0, len(x) - config.batch_size + 1, config.batch_size):
            batch = x[order[first:first + config.batch_size]]
            views = torch.cat([augment(batch, generator), augment(batch, generator)])
            loss = _contrastive_loss(F.normalize(head(net(views)), dim=1), config.temperature)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, steps = total + float(loss.detach()), steps + 1
        if log is not None:
            log(f"epoch {epoch + 1}/{config.epochs}: contrastive loss {total / steps:.4f}")
        if checkpoint is not None:
            _save_checkpoint(checkpoint, config, epoch + 1, net, head, optimiser, generator)
    return net.eval()


def _save_checkpoint(path: str | Path, config: EmbedderTrainConfig, epoch: int, net: nn.Module,
                     head: nn.Module, optimiser: torch.optim.Optimizer,
                     generator: torch.Generator) -> None:
    state = {"config": asdict(config), "epoch": epoch, "net": net.state_dict(),
             "head": head.state_dict(), "optimiser": optimiser.state_dict(),
             "generator": generator.get_state()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _resume(path: str | Path | None, config: EmbedderTrainConfig, net: nn.Module,
            head: nn.Module, optimiser: torch.optim.Optimizer,
            generator: torch.Generator) -> int:
    """Load a checkpoint of the same settings into the training state; returns its epoch."""
    if path is None or not Path(path).is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("config") != asdict(config):
        raise ValueError(f"checkpoint {path} was made with other settings; remove it to "
                         "start again")
    net.load_state_dict(state["net"])
    head.load_state_dict(state["head"])
    optimiser.load_state_dict(state["optimiser"])
    generator.set_state(state["generator"])
    return int(state["epoch"])
