"""Inference runtime for a trained :class:`~vj_dynamic.skipnet.SkipResNet` that saves time on a CPU.

The module's own ``"skip"`` execution already avoids the FLOPs of closed blocks, but on
a CPU at small batch sizes the time of a block is only partly its arithmetic: each
PyTorch operator costs microseconds of dispatch, and the recurrent gate is a dozen tiny
operators. This runtime removes what does not scale with the work skipped, and gives
the dense baseline the same treatment so that the comparison stays fair:

- batch-norm is folded into the preceding convolution (dense and dynamic alike);
- activations are kept channels-last, the layout oneDNN convolves without reordering
  and whose per-sample cost does not jump with the batch size (NCHW does, past ~32);
- the recurrent gate (pool, embed, LSTM step, read-out, threshold) is one Numba call
  that reads the activation in place (:mod:`vj_dynamic.skipnet_gate_kernel`);
- in a batch, a block runs on the gathered open samples and its output is scattered
  back in place (``batching="scatter"``, the default), or samples are grouped by
  execution path (``batching="grouped"``): where a gate splits a group, its rows are
  copied once into two new groups, and from then on each group runs its blocks
  densely. Grouping saves the row copies of later blocks, but every extra group pays
  the per-call cost of every later convolution (tens of microseconds, whatever the
  batch) and runs at a smaller, less efficient batch; a row copy costs about 1
  microsecond against 40-70 of compute per row and block. On the benchmark's learned
  policies gather / scatter was the faster of the two (``vj-bench dynamic`` times both).

Row copies are NumPy copies on the NHWC view, so nothing is reordered. The outputs
equal the module's ``"masked"`` execution to floating-point tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from vj_dynamic.skipnet import BasicBlock, SkipResNet
from vj_dynamic.skipnet_gate_kernel import gate_bank

__all__ = ["BATCHING", "RuntimeOutput", "SkipNetClassifier", "SkipNetRuntime"]


def _fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of the convolution equivalent to ``bn(conv(x))`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return weight.detach().clone(), bias.detach().clone()


def _rows(x: torch.Tensor) -> np.ndarray:
    """A NumPy view of ``x`` whose first axis is the sample and whose rows are contiguous."""
    if x.is_contiguous():
        return x.numpy()
    # Channels-last: the NHWC permutation is the contiguous one.
    return x.permute(0, 2, 3, 1).numpy()


def _gather(x: torch.Tensor, index: np.ndarray, workspace: dict) -> torch.Tensor:
    """Rows ``index`` of ``x``, copied into a buffer reused from call to call.

    NumPy's row copies measured 1.3-3x faster here than ``torch.index_select`` /
    ``index_copy_``, whose CPU kernels index element by element; the buffer is reused
    rather than a fresh multi-megabyte array allocated for every block.
    """
    rows = _rows(x)
    key = rows.shape[1:]
    buffer = workspace.get(key)
    if buffer is None or buffer.shape[0] < index.size:
        buffer = workspace[key] = np.empty((x.shape[0], *key), dtype=rows.dtype)
    out = buffer[: index.size]
    # mode="clip": the indices are valid by construction, and the default "raise" copies
    # through a temporary buffer whenever out= is given.
    np.take(rows, index, axis=0, out=out, mode="clip")
    gathered = torch.from_numpy(out)
    return gathered if x.is_contiguous() else gathered.permute(0, 3, 1, 2)


def _scatter_(base: torch.Tensor, index: np.ndarray, rows: torch.Tensor) -> None:
    if base.is_contiguous():
        base.numpy()[index] = rows.contiguous().numpy()
    else:
        base_rows = _rows(base)
        base_rows[index] = (
            rows.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).numpy()
        )


class _FoldedConv:
    """A convolution with batch-norm folded in, called functionally to keep dispatch short."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, memory_format: torch.memory_format):
        weight, bias = _fold_conv_bn(conv, bn)
        self.weight = weight.contiguous(memory_format=memory_format)
        self.bias = bias
        self.stride = conv.stride
        self.padding = conv.padding

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


class _FoldedBlock:
    def __init__(self, block: BasicBlock, memory_format: torch.memory_format) -> None:
        self.conv1 = _FoldedConv(block.conv1, block.bn1, memory_format)
        self.conv2 = _FoldedConv(block.conv2, block.bn2, memory_format)
        self.downsample = None
        if block.downsample is not None:
            self.downsample = _FoldedConv(block.downsample[0], block.downsample[1], memory_format)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)

    def body(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        out = self.conv2(torch.relu_(self.conv1(x)))
        return torch.relu_(out.add_(shortcut))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x, self.shortcut(x))

    def run_where(self, x: torch.Tensor, open_: np.ndarray, workspace: dict) -> torch.Tensor:
        if x.shape[0] == 1:  # batch size 1: run the block or not, nothing to gather
            return self(x) if open_[0] else self.shortcut(x)
        n_open = int(np.count_nonzero(open_))
        if n_open == x.shape[0]:
            return self(x)
        base = self.shortcut(x)
        if n_open == 0:
            return base
        index = np.flatnonzero(open_)
        rows = _gather(x, index, workspace)
        # base has another shape than x here, hence its own buffer in the workspace
        shortcut = rows if self.downsample is None else _gather(base, index, workspace)
        # base is this runtime's own intermediate (never the caller's input), and the
        # rows it loses were copied out above, so updating it in place is safe.
        _scatter_(base, index, self.body(rows, shortcut))
        return base


@dataclass
class RuntimeOutput:
    """Logits ``(N, num_classes)`` and which gated blocks ran, ``(N, n_gates)`` bool."""

    logits: torch.Tensor
    executed: np.ndarray


BATCHING = ("scatter", "grouped")


def _take(x: torch.Tensor, index: np.ndarray) -> torch.Tensor:
    """Rows ``index`` of ``x`` as a new tensor in the same layout."""
    rows = np.take(_rows(x), index, axis=0)
    out = torch.from_numpy(rows)
    return out if x.is_contiguous() else out.permute(0, 3, 1, 2)


@dataclass
class _Group:
    """Samples that have taken the same path so far: their activations, rows, gate state."""

    x: torch.Tensor
    rows: np.ndarray
    state: Any


class SkipNetRuntime:
    """Fast CPU inference for a trained SkipNet, dynamic or dense.

    Parameters
    ----------
    model : SkipResNet
        A trained network. Its weights are copied (batch-norm folded) when the runtime
        is built; later changes to ``model`` (its gate threshold included) are not seen.
    channels_last : bool, optional
        Keep activations channels-last (faster with oneDNN on CPUs).
    batching : {"scatter", "grouped"}, optional
        How a batch whose samples take different paths runs (see the module
        docstring): gather / scatter in every partly run block, or groups by path.
    min_group : int, optional
        With grouped batching, a gate splits a group only when both parts hold at
        least this many samples; a smaller minority stays in the group and is gathered
        and scattered for that block. Every convolution call costs tens of
        microseconds whatever its batch, so groups of a few samples cost more in
        calls than their row copies would.

    Examples
    --------
    >>> import torch
    >>> from vj_dynamic.skipnet import skipnet38
    >>> runtime = SkipNetRuntime(skipnet38(num_classes=10, in_channels=1).eval())
    >>> out = runtime(torch.zeros(4, 1, 32, 32))
    >>> out.logits.shape, out.executed.shape
    (torch.Size([4, 10]), (4, 17))
    """

    def __init__(
        self,
        model: SkipResNet,
        *,
        channels_last: bool = True,
        batching: str = "scatter",
        min_group: int = 16,
    ) -> None:
        if not isinstance(model, SkipResNet):
            raise ValueError(f"model must be a SkipResNet, got {type(model).__name__}")
        if model.training:
            raise ValueError("model must be in eval mode (batch-norm is folded); call .eval()")
        if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in model.parameters()):
            raise ValueError("the runtime runs float32 models on the CPU; call .float().cpu()")
        if batching not in BATCHING:
            raise ValueError(f"batching must be one of {BATCHING}, got {batching!r}")
        if min_group < 1:
            raise ValueError(f"min_group must be >= 1, got {min_group}")
        self.min_group = int(min_group)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model
        self.memory_format = fmt
        self.batching = batching
        self.in_channels = model.in_channels
        self.num_gates = model.num_gates
        self.threshold = model.gate_logit_threshold
        # Gather buffers by activation shape, reused between blocks and calls; a runtime
        # therefore serves one thread at a time.
        self._workspace: dict = {}
        with torch.no_grad():
            self._stem = _FoldedConv(model.stem, model.stem_bn, fmt)
            self._blocks = [_FoldedBlock(b, fmt) for b in model.blocks]
            self._fc_weight = model.fc.weight.detach().clone()
            self._fc_bias = model.fc.bias.detach().clone()
            self._gates = gate_bank(model.gates, channels_last)

    def _check(self, x: torch.Tensor, dynamic: bool, decisions) -> np.ndarray | None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
            raise ValueError("input must be a float tensor of shape (N, C, H, W)")
        if x.shape[1] != self.in_channels or x.shape[0] < 1 or x.device.type != "cpu":
            raise ValueError(
                f"input must be a CPU tensor of shape (N >= 1, {self.in_channels}, H, W), "
                f"got {tuple(x.shape)} on {x.device}"
            )
        if decisions is None:
            return None
        n = x.shape[0]
        decisions = np.asarray(decisions, dtype=bool)
        if not dynamic or decisions.shape != (n, self.num_gates):
            raise ValueError(
                f"decisions must have shape ({n}, {self.num_gates}), with dynamic=True"
            )
        # Gate-major, so that each gate's decisions are one contiguous row.
        return np.ascontiguousarray(decisions.T)

    def __call__(
        self, x: torch.Tensor, *, dynamic: bool = True, decisions: np.ndarray | None = None
    ) -> RuntimeOutput:
        """Classify ``x`` of shape ``(N, in_channels, H, W)``.

        Parameters
        ----------
        x : Tensor
            Float CPU input batch.
        dynamic : bool, optional
            ``True``: gated execution, closed blocks skipped. ``False``: the dense
            ResNet (every block, no gate), the baseline.
        decisions : (N, n_gates) bool array, optional
            Use these decisions instead of evaluating the gates (an oracle or replayed
            policy; the gates' cost is then not paid). Only with ``dynamic=True``.

        Returns
        -------
        RuntimeOutput
        """
        replay = self._check(x, dynamic, decisions)
        n = x.shape[0]
        # Gate by gate rows, so that each gate writes its decisions in place.
        executed = np.ones((self.num_gates, n), dtype=bool)
        with torch.inference_mode():
            x = x.to(torch.float32).contiguous(memory_format=self.memory_format)
            # With one input channel the layouts coincide and the stem's output comes
            # back NCHW; convert it once rather than in every later convolution.
            x = torch.relu_(self._stem(x)).contiguous(memory_format=self.memory_format)
            x = self._blocks[0](x)
            if not dynamic:
                for block in self._blocks[1:]:
                    x = block(x)
                logits = self._head(x)
            elif n == 1:
                logits = self._head(self._run_single(x, executed[:, 0], replay))
            elif self.batching == "grouped":
                logits = self._run_grouped(x, executed, replay)
            else:
                logits = self._head(self._run_scatter(x, executed, replay))
        return RuntimeOutput(logits, executed.T)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.mean(dim=(2, 3)), self._fc_weight, self._fc_bias)

    def _run_single(self, x: torch.Tensor, executed: np.ndarray, replay) -> torch.Tensor:
        """One sample: each block runs or not; nothing to gather."""
        gates, threshold = self._gates, self.threshold
        state = gates.init_state(1)
        for k, block in enumerate(self._blocks[1:]):
            open_ = executed[k : k + 1]
            if replay is None:
                gates.decide(x, k, state, threshold, open_)
            else:
                open_[0] = replay[k, 0]
            x = block(x) if open_[0] else block.shortcut(x)
        return x

    def _run_scatter(self, x: torch.Tensor, executed: np.ndarray, replay) -> torch.Tensor:
        """The whole batch through every block; partly open blocks gather and scatter."""
        state = self._gates.init_state(x.shape[0])
        for k, block in enumerate(self._blocks[1:]):
            open_ = executed[k]
            if replay is None:
                self._gates.decide(x, k, state, self.threshold, open_)
            else:
                open_[:] = replay[k]
            x = block.run_where(x, open_, self._workspace)
        return x

    def _run_grouped(self, x: torch.Tensor, executed: np.ndarray, replay) -> torch.Tensor:
        """Samples grouped by path: a group splits where its gate splits it, once."""
        gates = self._gates
        groups = [_Group(x, np.arange(x.shape[0]), gates.init_state(x.shape[0]))]
        decided = np.empty(x.shape[0], dtype=bool)
        for k, block in enumerate(self._blocks[1:]):
            next_groups = []
            for g in groups:
                open_ = decided[: g.rows.size]
                if replay is None:
                    gates.decide(g.x, k, g.state, self.threshold, open_)
                else:
                    np.take(replay[k], g.rows, out=open_)
                executed[k, g.rows] = open_
                n_open = int(np.count_nonzero(open_))
                if n_open == g.rows.size:
                    g.x = block(g.x)
                elif n_open == 0:
                    g.x = block.shortcut(g.x)
                elif min(n_open, g.rows.size - n_open) >= self.min_group:
                    next_groups.append(self._split_off(g, open_, block))
                else:  # too few rows for a group of their own: gather and scatter them
                    g.x = block.run_where(g.x, open_, self._workspace)
                next_groups.append(g)
            groups = next_groups
        logits = torch.empty(x.shape[0], self._fc_weight.shape[0])
        for g in groups:
            logits[torch.from_numpy(g.rows)] = self._head(g.x)
        return logits

    def _split_off(self, g: _Group, open_: np.ndarray, block: _FoldedBlock) -> _Group:
        """Run ``block`` on the open rows of ``g`` as a new group; ``g`` keeps the rest."""
        ran, skipped = np.flatnonzero(open_), np.flatnonzero(~open_)
        take_state = self._gates.take_state
        opened = _Group(block(_take(g.x, ran)), g.rows[ran], take_state(g.state, ran))
        g.x = block.shortcut(_take(g.x, skipped))
        g.rows, g.state = g.rows[skipped], take_state(g.state, skipped)
        return opened

    def flops_per_sample(self, executed: np.ndarray | None, height: int, width: int) -> np.ndarray:
        """Analytic FLOPs per sample of what ran (``executed=None``: the dense network)."""
        breakdown = self.model.flop_breakdown(height, width)
        if executed is None:
            return np.array([breakdown.dense()], dtype=np.int64)
        return breakdown.dynamic(executed)


class SkipNetClassifier:
    """A SkipNet as a probabilistic classifier, usable as a stage of an IDK cascade.

    It is a :class:`~vj_dynamic.idk.CostReporter`: ``Stage(name, classifier, cost)``
    charges each input the FLOPs of the blocks it ran (``last_cost``).

    Parameters
    ----------
    model : SkipResNet
        Trained network (eval mode).
    dynamic : bool, optional
        Skip closed blocks (``True``) or run the dense ResNet (``False``).
    channels_last : bool, optional
        See :class:`SkipNetRuntime`.

    Attributes
    ----------
    last_cost : (N,) ndarray of float or None
        FLOPs per sample of what ran in the most recent call.
    """

    def __init__(
        self, model: SkipResNet, *, dynamic: bool = True, channels_last: bool = True
    ) -> None:
        self.runtime = SkipNetRuntime(model, channels_last=channels_last)
        self.dynamic = dynamic
        self.last_cost: np.ndarray | None = None
        self.last_executed: np.ndarray | None = None

    def predict_proba(self, x: torch.Tensor) -> np.ndarray:
        """Class probabilities ``(N, num_classes)`` for ``x`` of shape ``(N, C, H, W)``."""
        out = self.runtime(x, dynamic=self.dynamic)
        h, w = x.shape[2:]
        flops = self.runtime.flops_per_sample(out.executed if self.dynamic else None, h, w)
        self.last_cost = np.broadcast_to(flops, (x.shape[0],)).astype(np.float64)
        self.last_executed = out.executed
        return torch.softmax(out.logits, dim=1).numpy()

    __call__ = predict_proba
