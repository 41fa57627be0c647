"""SkipNet: a CIFAR-style ResNet whose residual blocks each sit behind a learned gate.

Three ways to execute the same weights:

``"dense"``
    Every block runs, no gate is evaluated: the plain ResNet, the baseline.
``"masked"``
    Every block runs for every sample and the gate decision blends block output and
    shortcut afterwards. This is how the published SkipNet code works; it is what
    training needs (gradients reach the gates) and it saves nothing.
``"skip"``
    Each block runs only on the samples whose gate is open (gather, compute, scatter);
    at batch size 1 a closed gate means the block is not called at all. Inference only.

The first block always runs (it has no gate), as in the paper. A skipped block's output
is its shortcut: the identity, or the 1x1 projection of a down-sampling block.

References
----------
X. Wang, F. Yu, Z.-Y. Dou, T. Darrell, J. E. Gonzalez. "SkipNet: Learning Dynamic
Routing in Convolutional Networks". ECCV 2018.
K. He, X. Zhang, S. Ren, J. Sun. "Deep Residual Learning for Image Recognition". CVPR 2016.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from vj_dynamic.flops import FlopBreakdown, conv2d_flops, conv2d_output_size, linear_flops
from vj_dynamic.gates import make_gates

__all__ = [
    "EXECUTIONS",
    "POLICIES",
    "BasicBlock",
    "FlopBreakdown",
    "SkipNetOutput",
    "SkipResNet",
    "sampling_probability",
    "skipnet38",
    "skipnet74",
    "skipnet110",
]

EXECUTIONS = ("dense", "masked", "skip")
POLICIES = ("hard", "sample")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch-norm, plus a shortcut (identity or 1x1 projection).

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts of the block input and output.
    stride : int, optional
        Stride of the first convolution (2 at the start of a stage).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """The block's shortcut path; also its output when the gate skips it."""
        return x if self.downsample is None else self.downsample(x)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch, before the addition and final ReLU."""
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(residual(x) + shortcut(x))``."""
        return F.relu(self.residual(x) + self.shortcut(x))

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the output for an input of ``height x width``."""
        return (
            conv2d_output_size(height, 3, self.stride, 1),
            conv2d_output_size(width, 3, self.stride, 1),
        )

    def flops(self, height: int, width: int) -> tuple[int, int]:
        """FLOPs per sample: ``(whole block, shortcut alone)`` for an input of that size."""
        oh, ow = self.output_size(height, width)
        cin, cout = self.in_channels, self.out_channels
        body = conv2d_flops(cin, cout, 3, oh, ow) + conv2d_flops(cout, cout, 3, oh, ow)
        shortcut = 0 if self.downsample is None else conv2d_flops(cin, cout, 1, oh, ow)
        return body + shortcut, shortcut


@dataclass
class SkipNetOutput:
    """What :meth:`SkipResNet.forward` returns.

    Attributes
    ----------
    logits : (N, num_classes) Tensor
        Class scores.
    gate_logits : (N, n_gates) Tensor or None
        Gate logits (``None`` for dense execution and replayed decisions, where no
        gate runs).
    masks : (N, n_gates) Tensor
        1 where the gated block ran, 0 where it was skipped. Under the ``"hard"`` policy
        in masked execution it carries the straight-through gradient of the gate.
    """

    logits: torch.Tensor
    gate_logits: torch.Tensor | None
    masks: torch.Tensor

    @property
    def executed(self) -> np.ndarray:
        """``masks`` as an ``(N, n_gates)`` boolean NumPy array."""
        return self.masks.detach().cpu().numpy() > 0.5


class SkipResNet(nn.Module):
    """CIFAR-style ResNet (3 stages, depth ``6n + 2``) with a gate before every block but the first.

    Parameters
    ----------
    depth : int, optional
        ``6n + 2`` layers: ``n`` basic blocks per stage. 38, 74 and 110 are the paper's.
    num_classes : int, optional
        Output classes.
    in_channels : int, optional
        Input image channels.
    widths : sequence of 3 int, optional
        Channels of the three stages; stages 2 and 3 halve the resolution.
    gate : {"rnn", "ff1", "ff2"}, optional
        Gate kind: the shared LSTM gate, FFGate-I or FFGate-II.
    gate_threshold : float, optional
        A block runs when its gate probability exceeds this (0.5 in the paper).
    embed_dim, hidden_dim : int, optional
        Sizes of the recurrent gate.
    gate_norm : bool, optional
        Standardise the recurrent gate's pooled inputs (see
        :class:`~vj_dynamic.gates.RNNGate`): needed for input-dependent policies.

    Examples
    --------
    >>> import torch
    >>> net = skipnet38(num_classes=10, in_channels=1).eval()
    >>> out = net(torch.zeros(2, 1, 32, 32), execution="skip")
    >>> tuple(out.logits.shape), tuple(out.masks.shape)
    ((2, 10), (2, 17))
    """

    def __init__(
        self,
        depth: int = 38,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64),
        gate: str = "rnn",
        gate_threshold: float = 0.5,
        embed_dim: int = 10,
        hidden_dim: int = 10,
        gate_norm: bool = False,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (e.g. 38, 74, 110), got {depth}")
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be 3 positive channel counts, got {tuple(widths)}")
        if num_classes < 2 or in_channels < 1:
            raise ValueError(
                f"need num_classes >= 2 and in_channels >= 1, got {num_classes}, {in_channels}"
            )
        self.depth, self.num_classes, self.in_channels = depth, num_classes, in_channels
        self.widths = tuple(int(w) for w in widths)
        self.gate_kind = gate
        self.gate_threshold = gate_threshold
        per_stage = (depth - 2) // 6

        self.stem = nn.Conv2d(in_channels, self.widths[0], 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(self.widths[0])
        blocks = []
        channels = self.widths[0]
        for stage, width in enumerate(self.widths):
            for i in range(per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
        self.blocks = nn.ModuleList(blocks)
        self.gates = make_gates(
            gate,
            [b.in_channels for b in blocks[1:]],
            embed_dim=embed_dim,
            hidden_dim=hidden_dim,
            normalize=gate_norm,
        )
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero-initialised last batch-norm of each block: every block starts as the
        # identity, which makes deep nets train quickly and skipping cheap to learn.
        for block in self.blocks:
            nn.init.zeros_(block.bn2.weight)

    @property
    def gate_threshold(self) -> float:
        """Gate probability above which a block runs."""
        return self._gate_threshold

    @gate_threshold.setter
    def gate_threshold(self, value: float) -> None:
        if not 0.0 < value < 1.0:
            raise ValueError(f"gate_threshold must be in (0, 1), got {value}")
        self._gate_threshold = float(value)

    @property
    def gate_logit_threshold(self) -> float:
        """The threshold as a logit: a block runs when its gate logit exceeds this."""
        t = self._gate_threshold
        return math.log(t / (1.0 - t))

    @property
    def num_gates(self) -> int:
        """Number of gated blocks (all but the first)."""
        return len(self.blocks) - 1

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
            raise ValueError(
                "input must be a float tensor of shape (N, C, H, W), got "
                f"{getattr(x, 'dtype', type(x))} of shape {tuple(getattr(x, 'shape', ()))}"
            )
        if x.shape[1] != self.in_channels or x.shape[0] < 1 or min(x.shape[2:]) < 4:
            raise ValueError(
                f"input must have shape (N >= 1, {self.in_channels}, H >= 4, W >= 4), "
                f"got {tuple(x.shape)}"
            )

    def _decide(self, logit: torch.Tensor, policy: str, explore: float = 0.0) -> torch.Tensor:
        with torch.no_grad():
            if policy == "sample":
                return torch.bernoulli(sampling_probability(logit, explore))
            return (logit > self.gate_logit_threshold).to(logit.dtype)

    def forward(
        self,
        x: torch.Tensor,
        *,
        execution: str = "masked",
        policy: str = "hard",
        decisions: torch.Tensor | None = None,
        explore: float = 0.0,
    ) -> SkipNetOutput:
        """Classify ``x`` of shape ``(N, in_channels, H, W)``.

        Parameters
        ----------
        x : Tensor
            Float input batch.
        execution : {"dense", "masked", "skip"}, optional
            See the module docstring. ``"skip"`` needs eval mode: in training mode
            batch-norm statistics depend on which samples share a batch.
        policy : {"hard", "sample"}, optional
            ``"hard"``: a block runs when its gate probability exceeds the threshold; in
            masked execution the mask carries a straight-through gradient (hard forward,
            sigmoid backward). ``"sample"``: decisions drawn from ``Bernoulli(p)``, no
            gradient through them (REINFORCE training).
        decisions : (N, n_gates) Tensor, optional
            Run these decisions (1 = run the block) instead of asking the gates, which
            are then not evaluated (``gate_logits`` is ``None``): stochastic depth, or
            a replayed policy. Not with dense execution.
        explore : float, optional
            With the ``"sample"`` policy, draw each decision from
            ``(1 - explore) * p + explore / 2`` rather than the gate's probability ``p``
            (see :func:`sampling_probability`): every path keeps being tried.

        Returns
        -------
        SkipNetOutput
        """
        if execution not in EXECUTIONS:
            raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if not 0.0 <= explore < 1.0:
            raise ValueError(f"explore must be in [0, 1), got {explore}")
        if execution == "skip" and self.training:
            raise ValueError("skip execution needs eval mode; call .eval() first")
        self._check_input(x)
        n = x.shape[0]
        if decisions is not None:
            if execution == "dense" or tuple(decisions.shape) != (n, self.num_gates):
                raise ValueError(
                    f"decisions must have shape ({n}, {self.num_gates}), with masked or "
                    "skip execution"
                )
            decisions = decisions.to(x.dtype)
        x = F.relu(self.stem_bn(self.stem(x)))
        x = self.blocks[0](x)
        if execution == "dense":
            for block in self.blocks[1:]:
                x = block(x)
            ones = torch.ones(n, self.num_gates, device=x.device, dtype=x.dtype)
            return SkipNetOutput(self._head(x), None, ones)

        state = self.gates.init_state(n, x.device, x.dtype)
        gate_logits, masks = [], []
        for k, block in enumerate(self.blocks[1:]):
            if decisions is None:
                logit, state = self.gates(x, k, state)
                decision = self._decide(logit, policy, explore)
                gate_logits.append(logit)
            else:
                decision, policy = decisions[:, k], "sample"  # no gradient to pass on
            if execution == "skip":
                masks.append(decision)
                x = _run_where_open(block, x, decision > 0.5)
                continue
            mask = decision
            if policy == "hard":
                prob = torch.sigmoid(logit)
                mask = decision + prob - prob.detach()
            masks.append(mask)
            shortcut = block.shortcut(x)
            full = F.relu(block.residual(x) + shortcut)
            m = mask.view(-1, 1, 1, 1)
            x = m * full + (1.0 - m) * shortcut
        logits = torch.stack(gate_logits, 1) if gate_logits else None
        return SkipNetOutput(self._head(x), logits, torch.stack(masks, 1))

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))

    def flop_breakdown(self, height: int, width: int) -> FlopBreakdown:
        """Analytic per-sample FLOPs of every part for inputs of ``height x width``."""
        stem = conv2d_flops(self.in_channels, self.widths[0], 3, height, width)
        blocks, shortcuts, sizes = [], [], []
        h, w = height, width
        for block in self.blocks:
            sizes.append((h, w))
            full, shortcut = block.flops(h, w)
            blocks.append(full)
            shortcuts.append(shortcut)
            h, w = block.output_size(h, w)
        gates = tuple(self.gates.flops(k, *sizes[k + 1]) for k in range(self.num_gates))
        head = linear_flops(self.widths[-1], self.num_classes)
        return FlopBreakdown(stem, tuple(blocks), tuple(shortcuts), gates, head)


def sampling_probability(gate_logits: torch.Tensor, explore: float = 0.0) -> torch.Tensor:
    """Probability of running each block when decisions are sampled.

    ``(1 - explore) * sigmoid(gate_logits) + explore / 2``: with ``explore > 0`` no
    decision becomes certain, so that a policy whose gates saturate keeps trying the
    other path and can still learn from it (epsilon-exploration).
    """
    return (1.0 - explore) * torch.sigmoid(gate_logits) + 0.5 * explore


def _run_where_open(block: BasicBlock, x: torch.Tensor, open_: torch.Tensor) -> torch.Tensor:
    """Run ``block`` only on the samples where ``open_`` is true; shortcut for the rest."""
    index = open_.nonzero().squeeze(1)
    n_open = index.numel()
    if n_open == x.shape[0]:
        return block(x)
    base = block.shortcut(x)
    if n_open == 0:
        return base
    out = F.relu(block.residual(x.index_select(0, index)) + base.index_select(0, index))
    return base.index_copy(0, index, out)


def skipnet38(**kwargs) -> SkipResNet:
    """SkipNet-38: 6 gated basic blocks per stage. Keyword arguments go to :class:`SkipResNet`."""
    return SkipResNet(depth=38, **kwargs)


def skipnet74(**kwargs) -> SkipResNet:
    """SkipNet-74: 12 basic blocks per stage. Keyword arguments go to :class:`SkipResNet`."""
    return SkipResNet(depth=74, **kwargs)


def skipnet110(**kwargs) -> SkipResNet:
    """SkipNet-110: 18 basic blocks per stage. Keyword arguments go to :class:`SkipResNet`."""
    return SkipResNet(depth=110, **kwargs)
