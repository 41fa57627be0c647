"""Hybrid reinforcement learning of SkipNet gates, with a per-sample price of computation.

The gates' decisions are sampled; the network is trained with the cross-entropy of the
path it took, and the gates with REINFORCE on a reward that pays, per sample, for the
FLOPs its skipped blocks did not cost and charges its classification loss at the end
(the paper's hybrid RL, section 3.3).

Why policies collapse to one path for every input, and what this module does about it:

- **Gate input.** A recurrent gate fed raw pooled activations sees inputs that differ
  little from sample to sample next to their mean; its logits hardly vary and the
  policy gradient can only move the bias. Build the network with ``gate_norm=True``
  (:class:`~vj_dynamic.gates.RNNGate` standardises the pooled channels).
- **Reward baseline.** With the batch-mean baseline of the paper, the advantage of a
  sample is dominated by how hard the sample is (its loss whatever the path), not by
  what the path did to it: hard samples push every action they took down, easy ones
  up. ``baseline="greedy"`` (self-critical) compares each sampled path with the path
  the current policy would take on the same sample, so the advantage is what the
  sampled decisions changed, for that input.
- **Reward scale.** Loss and price of computation differ in scale from batch to batch;
  ``normalize_advantage`` divides the advantages by their standard deviation so that
  the gates' steps stay the same size as training proceeds.
- **Exploration.** Once a gate's probability saturates, the sampled path equals the
  greedy one and nothing is learnt. ``explore`` mixes a uniform coin into every
  sampled decision (epsilon-exploration), so every path keeps being tried.

:func:`fine_tune_on_policy` then trains the body alone on the paths the learned policy
takes (hard decisions, gates frozen), which recovers most of the accuracy that sampling
costs.

References
----------
X. Wang, F. Yu, Z.-Y. Dou, T. Darrell, J. E. Gonzalez. "SkipNet: Learning Dynamic
Routing in Convolutional Networks". ECCV 2018.
S. J. Rennie, E. Marcheret, Y. Mroueh, J. Ross, V. Goel. "Self-critical Sequence
Training for Image Captioning". CVPR 2017.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from vj_dynamic.skipnet import SkipResNet, sampling_probability
from vj_dynamic.skipnet_loop import TrainConfig, train_loop

__all__ = [
    "BASELINES",
    "block_costs",
    "fine_tune_on_policy",
    "policy_returns",
    "reinforce_loss",
    "train_hybrid_rl",
]

BASELINES = ("greedy", "batch_mean")


def block_costs(model: SkipResNet, height: int, width: int) -> torch.Tensor:
    """Share of the skippable FLOPs in each gated block, ``(n_gates,)``, summing to 1.

    A skipped block still costs its shortcut (a 1x1 projection at a down-sampling
    block); the share counts what skipping saves.
    """
    breakdown = model.flop_breakdown(height, width)
    saved = np.asarray(breakdown.blocks[1:], np.float64) - np.asarray(breakdown.shortcuts[1:])
    return torch.from_numpy(saved / saved.sum()).float()


def policy_returns(
    actions: torch.Tensor,
    sample_loss: torch.Tensor,
    *,
    alpha: float,
    gamma: float = 0.99,
    costs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Discounted return of every gate decision, ``(N, G)``.

    Gate ``i`` earns ``alpha * costs[i]`` when it skips its block; the episode ends
    with ``-sample_loss``. ``costs`` defaults to ``1 / G`` per gate (the paper's reward);
    :func:`block_costs` gives each sample's real FLOP saving.
    """
    actions = actions.detach()
    n_gates = actions.shape[1]
    if costs is None:
        costs = torch.full((n_gates,), 1.0 / n_gates)
    rewards = (1.0 - actions) * (alpha * costs.to(actions.dtype))
    returns = torch.empty_like(rewards)
    running = -sample_loss.detach()
    for i in range(n_gates - 1, -1, -1):
        running = rewards[:, i] + gamma * running
        returns[:, i] = running
    return returns


def reinforce_loss(
    gate_logits: torch.Tensor,
    actions: torch.Tensor,
    sample_loss: torch.Tensor,
    *,
    alpha: float,
    gamma: float = 0.99,
    costs: torch.Tensor | None = None,
    baseline: torch.Tensor | None = None,
    explore: float = 0.0,
    normalize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE surrogate for the gate decisions of one batch.

    Each decision is credited with its discounted return (:func:`policy_returns`)
    minus a baseline: ``baseline`` (``(N, G)`` returns of a reference path for the same
    samples, e.g. the greedy one) or, by default, the batch mean of that return.

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
    costs : (G,) Tensor, optional
        Share of the price earned by skipping each gate (default ``1 / G`` each).
    baseline : (N, G) Tensor, optional
        Per-sample baseline returns.
    explore : float, optional
        The exploration the decisions were sampled with
        (:func:`~vj_dynamic.skipnet.sampling_probability`): log-probabilities are those
        of the distribution actually sampled.
    normalize : bool, optional
        Divide the advantages by their standard deviation over the batch.

    Returns
    -------
    loss : Tensor
        Scalar to minimise (its gradient is the policy gradient).
    returns : (N, G) Tensor
        Discounted returns, for logging.
    """
    actions = actions.detach()
    returns = policy_returns(actions, sample_loss, alpha=alpha, gamma=gamma, costs=costs)
    if baseline is None:
        advantage = returns - returns.mean(dim=0, keepdim=True)
    else:
        advantage = returns - baseline.detach()
    if normalize:
        advantage = advantage / (advantage.std() + 1e-6)
    if explore > 0:
        q = sampling_probability(gate_logits, explore)
        log_prob = actions * torch.log(q) + (1.0 - actions) * torch.log1p(-q)
    else:
        log_prob = actions * F.logsigmoid(gate_logits) + (1.0 - actions) * F.logsigmoid(
            -gate_logits
        )
    return -(log_prob * advantage).sum(dim=1).mean(), returns


def _check_rl_arguments(alpha, gamma, rl_weight, baseline, explore) -> None:
    if alpha < 0 or not 0 <= gamma <= 1 or rl_weight < 0:
        raise ValueError(
            f"need alpha >= 0, 0 <= gamma <= 1, rl_weight >= 0; got {alpha}, {gamma}, {rl_weight}"
        )
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if not 0.0 <= explore < 1.0:
        raise ValueError(f"explore must be in [0, 1), got {explore}")


def train_hybrid_rl(
    model: SkipResNet,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    *,
    alpha: float = 0.1,
    gamma: float = 0.99,
    rl_weight: float = 1.0,
    baseline: str = "greedy",
    explore: float = 0.1,
    normalize_advantage: bool = True,
    flop_costs: bool = True,
    loss_margin: float = 0.0,
    train_body: bool = True,
) -> list[dict[str, float]]:
    """Hybrid reinforcement learning: cross-entropy for the network, REINFORCE for the gates.

    Parameters
    ----------
    model, x, y, config
        Network (a trained dense ResNet, or after supervised gate training), training
        data, settings. Build it with ``gate_norm=True`` for input-dependent policies.
    alpha : float, optional
        Price of computation: the reward for skipping every gated block, against the
        classification loss (larger: more skipping).
    gamma : float, optional
        Discount of future rewards.
    rl_weight : float, optional
        Weight of the REINFORCE term against the cross-entropy.
    baseline : {"greedy", "batch_mean"}, optional
        ``"greedy"``: each sample's sampled path is compared with the path the current
        policy takes on it (one extra forward pass without gradients, about a third of a
        training step). ``"batch_mean"``: the paper's baseline.
    explore : float, optional
        Epsilon-exploration of the sampled decisions (0: the paper's sampling).
    normalize_advantage : bool, optional
        Scale the advantages to unit standard deviation in every batch.
    flop_costs : bool, optional
        Pay each skipped block its share of the skippable FLOPs (:func:`block_costs`),
        so that a sample's reward is its own FLOP saving; ``False``: ``alpha / G`` per
        block, as in the paper.
    loss_margin : float, optional
        The reward charges ``max(0, loss - loss_margin)`` rather than the loss: a
        sample classified with confidence to spare (cross-entropy under the margin,
        e.g. 0.5 for a probability above 0.61) is not charged for the confidence a
        shorter path costs it, so that easy inputs learn to take shorter paths than
        hard ones. The network itself is still trained on the full cross-entropy.
    train_body : bool, optional
        ``False``: only the gates learn; the body (a trained dense ResNet) keeps its
        weights and batch-norm statistics. Skipping a block then costs a hard input
        more than an easy one, as it will at inference, instead of the body learning to
        make every path about as good (which leaves the policy no reason to spend more
        on some inputs than on others); :func:`fine_tune_on_policy` adapts the body
        afterwards.

    Returns
    -------
    list of dict
        Per epoch: ``loss`` (cross-entropy of the sampled paths), ``accuracy``,
        ``execution_rate`` (sampled), ``greedy_execution_rate`` (with
        ``baseline="greedy"``), ``reward`` (mean return of the first gate).

    Notes
    -----
    ``baseline="batch_mean", explore=0, normalize_advantage=False, flop_costs=False`` is
    the paper's method; on the graded digits its policy runs the same blocks for every
    input (see the module docstring).
    """
    _check_rl_arguments(alpha, gamma, rl_weight, baseline, explore)
    if loss_margin < 0:
        raise ValueError(f"loss_margin must be >= 0, got {loss_margin}")
    costs = block_costs(model, *x.shape[2:]) if flop_costs else None
    settings = {"alpha": alpha, "gamma": gamma, "costs": costs}

    def charged(loss: torch.Tensor) -> torch.Tensor:
        return (loss.detach() - loss_margin).clamp_min(0.0)

    def step(xb: torch.Tensor, yb: torch.Tensor):
        if not train_body:
            _freeze_body(model)
        out = model(xb, execution="masked", policy="sample", explore=explore)
        sample_loss = F.cross_entropy(out.logits, yb, reduction="none")
        logs = {}
        reference = None
        if baseline == "greedy":
            with torch.no_grad():
                greedy = model(xb, execution="masked", policy="hard")
                greedy_loss = F.cross_entropy(greedy.logits, yb, reduction="none")
                reference = policy_returns(greedy.masks, charged(greedy_loss), **settings)
            logs["greedy_execution_rate"] = greedy.masks.mean().item()
        rl, returns = reinforce_loss(
            out.gate_logits,
            out.masks,
            charged(sample_loss),
            baseline=reference,
            explore=explore,
            normalize=normalize_advantage,
            **settings,
        )
        ce = sample_loss.mean()
        logs["loss"] = ce.item()
        logs["accuracy"] = (out.logits.argmax(1) == yb).float().mean().item()
        logs["execution_rate"] = out.masks.mean().item()
        logs["reward"] = returns[:, 0].mean().item()
        return (ce if train_body else 0.0) + rl_weight * rl, logs

    if train_body:
        return train_loop(model, x, y, config, step)
    body = [p for name, p in model.named_parameters() if not name.startswith("gates.")]
    flags = [p.requires_grad for p in body]
    for p in body:
        p.requires_grad_(False)
    try:
        return train_loop(model, x, y, config, step)
    finally:
        for p, flag in zip(body, flags, strict=True):
            p.requires_grad_(flag)


def _freeze_body(model: SkipResNet) -> None:
    """Batch-norm of the body in eval mode (fixed statistics); the gates keep training."""
    for name, module in model.named_children():
        if name != "gates":
            module.eval()


def fine_tune_on_policy(
    model: SkipResNet, x: torch.Tensor, y: torch.Tensor, config: TrainConfig
) -> list[dict[str, float]]:
    """Train the body on the paths the (frozen) gates choose, with hard decisions.

    Sampled decisions during reinforcement learning leave the body tuned to paths it
    will not take at inference; this phase fits it to the deterministic policy. The
    gates, their input statistics included, do not change.

    Returns
    -------
    list of dict
        Per epoch: ``loss``, ``accuracy``, ``execution_rate``.
    """
    gate_params = list(model.gates.parameters())
    flags = [p.requires_grad for p in gate_params]
    for p in gate_params:
        p.requires_grad_(False)

    def step(xb: torch.Tensor, yb: torch.Tensor):
        model.gates.eval()  # frozen running statistics of the gate inputs
        out = model(xb, execution="masked", policy="hard")
        loss = F.cross_entropy(out.logits, yb)
        logs = {"loss": loss.item(), "accuracy": (out.logits.argmax(1) == yb).float().mean()}
        logs["accuracy"] = float(logs["accuracy"])
        logs["execution_rate"] = out.masks.mean().item()
        return loss, logs

    try:
        return train_loop(model, x, y, config, step)
    finally:
        for p, flag in zip(gate_params, flags, strict=True):
            p.requires_grad_(flag)
