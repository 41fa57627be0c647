"""SkipNet gates: small modules that decide, per sample, whether to run a residual block.

A gate looks at the input of residual block ``k`` (the output of block ``k - 1``) and
returns one logit per sample; the block runs when ``sigmoid(logit)`` exceeds the gate
threshold (0.5 in the paper). A single logit is equivalent to the paper's two-way
softmax (``softmax([a, b])[1] == sigmoid(b - a)``) and halves the output layer.

Every gate bank exposes the same interface, so the network does not care which it has::

    state = gates.init_state(batch_size, device, dtype)
    logit, state = gates(x, k, state)      # decision for gated block k

References
----------
X. Wang, F. Yu, Z.-Y. Dou, T. Darrell, J. E. Gonzalez. "SkipNet: Learning Dynamic
Routing in Convolutional Networks". ECCV 2018. Section 3.2 and Figure 3.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from vj_dynamic.flops import conv2d_flops, conv2d_output_size, linear_flops, lstm_cell_flops

__all__ = ["FFGateI", "FFGateII", "FeedForwardGates", "RNNGate", "GATE_KINDS", "make_gates"]

GATE_KINDS = ("rnn", "ff1", "ff2")

# Gates start open (sigmoid(2) ~ 0.88) so that a network initialised from a trained
# ResNet begins by computing what that ResNet computes.
_OPEN_BIAS = 2.0


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class FFGateI(nn.Module):
    """Feed-forward gate I: max-pool, two 3x3 convolutions (stride 1 then 2), pool, linear.

    Parameters
    ----------
    channels : int
        Channels of the block input the gate looks at.

    Notes
    -----
    The most expressive and most expensive gate: about 5/32 of a basic block's FLOPs.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.pool = nn.MaxPool2d(2)
        self.conv1 = _conv3x3(channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels, stride=2)
        self.bn2 = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, 1)
        nn.init.constant_(self.fc.bias, _OPEN_BIAS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return gate logits, shape ``(N,)``, for block inputs ``x`` of shape ``(N, C, H, W)``."""
        x = self.pool(x)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3))).squeeze(1)

    def flops(self, height: int, width: int) -> int:
        """FLOPs per sample for an input of spatial size ``height x width``."""
        h, w = height // 2, width // 2
        h2, w2 = conv2d_output_size(h, 3, 2, 1), conv2d_output_size(w, 3, 2, 1)
        c = self.channels
        return conv2d_flops(c, c, 3, h, w) + conv2d_flops(c, c, 3, h2, w2) + linear_flops(c, 1)


class FFGateII(nn.Module):
    """Feed-forward gate II: one strided 3x3 convolution, pool, linear.

    Parameters
    ----------
    channels : int
        Channels of the block input the gate looks at.

    Notes
    -----
    About 1/8 of a basic block's FLOPs.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv = _conv3x3(channels, channels, stride=2)
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, 1)
        nn.init.constant_(self.fc.bias, _OPEN_BIAS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return gate logits, shape ``(N,)``, for block inputs ``x`` of shape ``(N, C, H, W)``."""
        x = F.relu(self.bn(self.conv(x)))
        return self.fc(x.mean(dim=(2, 3))).squeeze(1)

    def flops(self, height: int, width: int) -> int:
        """FLOPs per sample for an input of spatial size ``height x width``."""
        h, w = conv2d_output_size(height, 3, 2, 1), conv2d_output_size(width, 3, 2, 1)
        return conv2d_flops(self.channels, self.channels, 3, h, w) + linear_flops(self.channels, 1)


class FeedForwardGates(nn.Module):
    """A bank of independent feed-forward gates, one per gated block.

    Parameters
    ----------
    channels : sequence of int
        Input channels of each gated block, in order.
    kind : {"ff1", "ff2"}
        ``"ff1"`` for :class:`FFGateI`, ``"ff2"`` for :class:`FFGateII`.
    """

    def __init__(self, channels: Sequence[int], kind: str = "ff2") -> None:
        super().__init__()
        gate_cls = {"ff1": FFGateI, "ff2": FFGateII}.get(kind)
        if gate_cls is None:
            raise ValueError(f"kind must be 'ff1' or 'ff2', got {kind!r}")
        self.kind = kind
        self.gates = nn.ModuleList(gate_cls(c) for c in channels)

    def __len__(self) -> int:
        return len(self.gates)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> None:
        """Feed-forward gates keep no state between blocks."""
        return None

    def forward(self, x: torch.Tensor, index: int, state: None = None) -> tuple[torch.Tensor, None]:
        """Logits ``(N,)`` of gate ``index`` for block input ``x``; the state stays ``None``."""
        return self.gates[index](x), None

    def flops(self, index: int, height: int, width: int) -> int:
        """FLOPs per sample of gate ``index`` on an input of size ``height x width``."""
        return self.gates[index].flops(height, width)


class RNNGate(nn.Module):
    """Recurrent gate: one LSTM shared by all blocks, fed a pooled embedding of each input.

    For gated block ``k`` the block input is global-average-pooled, projected to
    ``embed_dim`` by a per-block linear map (the paper's 1x1 convolution), and fed as one
    time step to the shared LSTM; a linear read-out of the hidden state gives the logit.

    Parameters
    ----------
    channels : sequence of int
        Input channels of each gated block, in order.
    embed_dim, hidden_dim : int, optional
        Embedding and LSTM sizes; the paper uses 10 and 10.
    normalize : bool, optional
        Standardise each pooled channel with running statistics (a batch-norm without
        scale and shift) before the embedding. Without it, the pooled activations of a
        trained network differ little from input to input next to their mean, the
        gate's logits hardly vary (a spread of about 0.01-0.1 against a mean of 2-7 on
        the graded digits), and reinforcement learning can only move the bias: the
        policy becomes the same for every input. Off by default so that gates saved
        without it still load.

    Notes
    -----
    The cost is negligible next to a block (a few hundred FLOPs), which is why the paper
    prefers it; on a CPU its latency is dominated by operator dispatch, which the
    inference runtime (:mod:`vj_dynamic.skipnet_runtime`) avoids with a fused kernel.
    """

    def __init__(
        self,
        channels: Sequence[int],
        embed_dim: int = 10,
        hidden_dim: int = 10,
        *,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if embed_dim < 1 or hidden_dim < 1:
            raise ValueError(
                f"embed_dim and hidden_dim must be >= 1, got {embed_dim}, {hidden_dim}"
            )
        self.channels = tuple(int(c) for c in channels)
        self.embed_dim = embed_dim
        self.hidden_dim = hidden_dim
        self.normalize = normalize
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(c, affine=False) for c in (self.channels if normalize else ())
        )
        self.embed = nn.ModuleList(nn.Linear(c, embed_dim) for c in self.channels)
        self.cell = nn.LSTMCell(embed_dim, hidden_dim)
        self.proj = nn.Linear(hidden_dim, 1)
        nn.init.constant_(self.proj.bias, _OPEN_BIAS)

    def __len__(self) -> int:
        return len(self.embed)

    def init_state(
        self, batch_size: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero hidden and cell states, each ``(batch_size, hidden_dim)``."""
        zeros = torch.zeros(batch_size, self.hidden_dim, device=device, dtype=dtype)
        return zeros, zeros.clone()

    def forward(
        self, x: torch.Tensor, index: int, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Logits ``(N,)`` for gated block ``index`` and the updated ``(h, c)`` state."""
        pooled = x.mean(dim=(2, 3))
        if self.normalize:
            pooled = self.norms[index](pooled)
        h, c = self.cell(self.embed[index](pooled), state)
        return self.proj(h).squeeze(1), (h, c)

    def folded_embedding(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of embedding ``index`` with the input normalisation folded in.

        In eval mode ``embed(norm(p)) == p @ weight.T + bias`` for pooled inputs ``p``.
        """
        linear = self.embed[index]
        weight, bias = linear.weight.detach(), linear.bias.detach()
        if not self.normalize:
            return weight.clone(), bias.clone()
        norm = self.norms[index]
        scale = torch.rsqrt(norm.running_var + norm.eps)
        return weight * scale, bias - (weight * scale) @ norm.running_mean

    def flops(self, index: int, height: int, width: int) -> int:
        """FLOPs per sample of one gate step (pooling is not counted)."""
        return (
            linear_flops(self.channels[index], self.embed_dim)
            + lstm_cell_flops(self.embed_dim, self.hidden_dim)
            + linear_flops(self.hidden_dim, 1)
        )


def make_gates(
    kind: str,
    channels: Sequence[int],
    embed_dim: int = 10,
    hidden_dim: int = 10,
    *,
    normalize: bool = False,
):
    """Build the gate bank ``kind`` (one of :data:`GATE_KINDS`) for blocks with ``channels``.

    ``normalize`` applies to the recurrent gate (see :class:`RNNGate`); the feed-forward
    gates normalise inside their convolutions already.
    """
    if kind == "rnn":
        return RNNGate(channels, embed_dim=embed_dim, hidden_dim=hidden_dim, normalize=normalize)
    if kind in ("ff1", "ff2"):
        return FeedForwardGates(channels, kind=kind)
    raise ValueError(f"gate kind must be one of {GATE_KINDS}, got {kind!r}")
