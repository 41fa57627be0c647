"""TAFE-Net: task-aware feature embeddings from a meta-learner's generated weights.

Wang, Yu, Darrell & Gonzalez, "TAFE-Net: Task-Aware Feature Embeddings for Low Shot
Learning", CVPR 2019. One network serves tasks it never saw: a *task encoder* turns the
task's description into a task embedding, a *meta-learner* turns that into the weights
of the prediction network's feature layers, and the prediction network embeds inputs
for that task. Here a task is "does this input belong with these K examples?" (K = 1
and up), described by the examples' features from a fixed backbone.

- :class:`TaskEncoder`: the K examples (a set, order-free) -> task embedding ``e_t``;
- :class:`MetaLearner`: ``e_t`` -> one weight vector per generated layer, plus the
  task's score scale and bias;
- :class:`FactorizedLinear`: the paper's weight factorisation, ``theta_t = theta_s (*)
  w_t``: shared weights ``theta_s`` whose outputs the task's low-dimensional ``w_t``
  scales channel by channel, so a task costs ``out`` numbers per layer instead of
  ``in * out``;
- :class:`TafeNet`: the prediction network, ``f(x; theta_t)``, a residual correction of
  the backbone features (identity when ``w_t`` is zero), scored against the examples'
  own task-aware embeddings (a soft maximum of cosines);
- :func:`embedding_loss`: the paper's embedding loss, pulling a positive's task-aware
  embedding towards ``e_t`` and pushing negatives below a cosine margin.

Generated at initialisation as the identity, the network starts as nearest-neighbour
cosine matching and meta-training moves it from there. FLOPs per task (generating the
weights) and per query (embedding and scoring) are given analytically
(:meth:`TafeNet.task_flops`, :meth:`TafeNet.query_flops`; see :mod:`vj_dynamic.flops`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from vj_dynamic.flops import linear_flops

__all__ = [
    "FactorizedLinear",
    "MetaLearner",
    "TafeNet",
    "TaskEncoder",
    "TaskWeights",
    "embedding_loss",
]


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class FactorizedLinear(nn.Module):
    """A linear layer whose weights are shared weights times a task's factor vector.

    ``y = (x W_s^T) * w_t + b``: the paper's factorisation ``theta_t = theta_s (*) w_t``
    with one factor per output unit, applied to every input of the task.

    Parameters
    ----------
    in_features, out_features : int
        Layer sizes; the task's factor vector has ``out_features`` entries.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        _check_sizes(in_features=in_features, out_features=out_features)
        self.shared = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        """``(T, Q, in)`` inputs of ``T`` tasks, ``(T, out)`` factors -> ``(T, Q, out)``."""
        if x.ndim != 3 or factors.shape != (x.shape[0], self.shared.out_features):
            raise ValueError(f"need x (T, Q, {self.shared.in_features}) and factors "
                             f"(T, {self.shared.out_features}), got {tuple(x.shape)} and "
                             f"{tuple(factors.shape)}")
        return F.linear(x, self.shared.weight) * factors[:, None] + self.shared.bias


class TaskEncoder(nn.Module):
    """The task's K examples -> a unit task embedding (order-free, any K >= 1).

    ``e_t = normalise(m + MLP(m))`` with ``m`` the mean of the examples' unit features;
    the MLP's last layer starts at zero, so ``e_t`` starts as the examples' prototype.
    """

    def __init__(self, features: int, hidden: int) -> None:
        super().__init__()
        _check_sizes(features=features, hidden=hidden)
        self.mlp = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, features))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, support: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(T, K, d)`` examples, ``(T, K)`` bool mask of real ones -> ``(T, d)``."""
        weights = mask.to(support.dtype)[..., None]
        mean = (F.normalize(support, dim=-1) * weights).sum(1) / weights.sum(1).clamp(min=1)
        mean = F.normalize(mean, dim=-1)
        return F.normalize(mean + self.mlp(mean), dim=-1)


class MetaLearner(nn.Module):
    """Task embedding -> a factor vector per generated layer and the task's score scale/bias.

    Each factor vector is ``1 + A e_t`` with ``A`` starting at zero (the shared weights
    unchanged); the scale and bias start at ``scale`` and ``bias``.
    """

    def __init__(self, task_dim: int, widths: tuple[int, ...], scale: float = 10.0,
                 bias: float = -5.0) -> None:
        super().__init__()
        _check_sizes(task_dim=task_dim, **{f"width{i}": w for i, w in enumerate(widths)})
        self.generators = nn.ModuleList(nn.Linear(task_dim, w) for w in widths)
        self.calibration = nn.Linear(task_dim, 2)
        for layer in self.generators:
            nn.init.zeros_(layer.weight)
            nn.init.ones_(layer.bias)
        nn.init.zeros_(self.calibration.weight)
        with torch.no_grad():
            self.calibration.bias.copy_(torch.tensor([scale, bias]))

    def forward(self, task: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(T, task_dim)`` -> (factor vectors ``(T, width_i)``, ``(T, 2)`` scale and bias)."""
        return [g(task) for g in self.generators], self.calibration(task)


@dataclass
class TaskWeights:
    """What the meta-learner made of ``T`` tasks: everything a query needs.

    Attributes
    ----------
    embedding : (T, d) Tensor
        Unit task embeddings ``e_t``.
    factors : list of Tensor
        Per generated layer, ``(T, width)`` factor vectors.
    calibration : (T, 2) Tensor
        Score scale and bias per task.
    support : (T, K, d) Tensor
        The examples' task-aware embeddings (unit vectors).
    mask : (T, K) bool Tensor
        Which examples are real (tasks with fewer than K examples are padded).
    """

    embedding: torch.Tensor
    factors: list[torch.Tensor]
    calibration: torch.Tensor
    support: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.embedding.shape[0])


class TafeNet(nn.Module):
    """Task encoder, meta-learner and a two-layer factorised prediction network.

    Parameters
    ----------
    features : int
        Size of the backbone features (inputs and task-aware embeddings alike).
    hidden : int, optional
        Hidden width of the prediction network and the task encoder.
    temperature : float, optional
        Sharpness of the soft maximum over the examples' cosines (large: the nearest
        example decides; small: their mean).

    Examples
    --------
    >>> net = TafeNet(features=16, hidden=32)
    >>> support = torch.randn(3, 5, 16)          # 3 tasks, 5 examples each
    >>> weights = net.task(support)
    >>> logits, embeddings = net(torch.randn(3, 7, 16), weights)   # 7 queries per task
    >>> logits.shape, embeddings.shape
    (torch.Size([3, 7]), torch.Size([3, 7, 16]))
    """

    def __init__(self, features: int = 64, hidden: int = 128, temperature: float = 10.0) -> None:
        super().__init__()
        _check_sizes(features=features, hidden=hidden)
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.features, self.hidden, self.temperature = int(features), int(hidden), temperature
        self.encoder = TaskEncoder(features, hidden)
        self.meta = MetaLearner(features, (hidden, features))
        self.layer1 = FactorizedLinear(features, hidden)
        self.layer2 = FactorizedLinear(hidden, features)
        nn.init.zeros_(self.layer2.shared.weight)
        nn.init.zeros_(self.layer2.shared.bias)

    def _check(self, x: torch.Tensor, name: str) -> None:
        if x.ndim != 3 or x.shape[-1] != self.features:
            raise ValueError(f"{name} must be (T, n, {self.features}), got {tuple(x.shape)}")

    def embed(self, x: torch.Tensor, factors: list[torch.Tensor]) -> torch.Tensor:
        """Task-aware unit embeddings ``(T, Q, d)`` of inputs ``(T, Q, d)``."""
        x = F.normalize(x, dim=-1)
        hidden = F.relu(self.layer1(x, factors[0]))
        return F.normalize(x + self.layer2(hidden, factors[1]), dim=-1)

    def task(self, support: torch.Tensor, counts: torch.Tensor | None = None) -> TaskWeights:
        """Generate the weights of ``T`` tasks from their examples.

        Parameters
        ----------
        support : (T, K, d) Tensor
            Each task's examples (backbone features).
        counts : (T,) int Tensor, optional
            Real examples per task, for tasks padded to a common K (default: all K).
        """
        self._check(support, "support")
        k = support.shape[1]
        if counts is None:
            mask = torch.ones(support.shape[:2], dtype=torch.bool, device=support.device)
        else:
            counts = torch.as_tensor(counts, device=support.device)
            if counts.shape != support.shape[:1] or counts.min() < 1 or counts.max() > k:
                raise ValueError(f"counts must be (T,) within 1..{k}, got {counts.tolist()}")
            mask = torch.arange(k, device=support.device)[None] < counts[:, None]
        embedding = self.encoder(support, mask)
        factors, calibration = self.meta(embedding)
        return TaskWeights(embedding, factors, calibration, self.embed(support, factors), mask)

    def forward(self, x: torch.Tensor, weights: TaskWeights) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(T, Q)`` ("belongs to task t") and task-aware embeddings ``(T, Q, d)``.

        ``x`` is ``(T, Q, d)``: ``Q`` queries per task; the logit is the task's scale times
        a soft maximum of the query's cosines with the task's examples, plus its bias.
        """
        self._check(x, "x")
        if x.shape[0] != len(weights):
            raise ValueError(f"{x.shape[0]} query groups for {len(weights)} tasks")
        embedded = self.embed(x, weights.factors)
        cosines = torch.einsum("tqd,tkd->tqk", embedded, weights.support)
        cosines = cosines.masked_fill(~weights.mask[:, None], -math.inf)
        count = weights.mask.sum(1, keepdim=True).to(x.dtype)
        t = self.temperature
        similarity = (torch.logsumexp(cosines * t, dim=-1) - torch.log(count)) / t
        scale, bias = weights.calibration[:, 0:1], weights.calibration[:, 1:2]
        return scale * similarity + bias, embedded

    def task_flops(self, k: int) -> int:
        """FLOPs of generating one task's weights from ``k`` examples."""
        _check_sizes(k=k)
        d, h = self.features, self.hidden
        encoder = linear_flops(d, h) + linear_flops(h, d)
        meta = linear_flops(d, h) + linear_flops(d, d) + linear_flops(d, 2)
        return encoder + meta + k * self._embed_flops()

    def query_flops(self, k: int) -> int:
        """FLOPs of scoring one query against one task of ``k`` examples."""
        _check_sizes(k=k)
        return self._embed_flops() + 2 * self.features * k

    def _embed_flops(self) -> int:
        return linear_flops(self.features, self.hidden) + linear_flops(self.hidden, self.features)


def embedding_loss(embeddings: torch.Tensor, task_embedding: torch.Tensor, labels: torch.Tensor,
                   margin: float = 0.2) -> torch.Tensor:
    """The TAFE-Net embedding loss: align positives' embeddings with their task's embedding.

    A cosine embedding loss between each query's task-aware embedding and its task's
    embedding: ``1 - cos`` for a positive, ``max(0, cos - margin)`` for a negative.

    Parameters
    ----------
    embeddings : (T, Q, d) Tensor
        Task-aware embeddings of the queries (:meth:`TafeNet.forward`'s second output).
    task_embedding : (T, d) Tensor
        The tasks' embeddings (:attr:`TaskWeights.embedding`).
    labels : (T, Q) Tensor
        1 for a query of the task, 0 otherwise.
    margin : float, optional
        Cosine below which a negative costs nothing.

    Returns
    -------
    Tensor
        The mean loss (a scalar).
    """
    if embeddings.ndim != 3 or labels.shape != embeddings.shape[:2]:
        raise ValueError(f"need embeddings (T, Q, d) and labels (T, Q), got "
                         f"{tuple(embeddings.shape)} and {tuple(labels.shape)}")
    cosine = F.cosine_similarity(embeddings, task_embedding[:, None], dim=-1)
    return torch.where(labels > 0, 1 - cosine, F.relu(cosine - margin)).mean()
