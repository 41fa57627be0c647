"""FLOP accounting: measured with ``FlopCounterMode`` and predicted analytically.

Convention (the one ``torch.utils.flop_counter`` uses): a FLOP count is twice the number
of multiply-accumulates performed by convolutions and matrix products. Biases,
batch-norm, activations, pooling and element-wise arithmetic are not counted; they are
memory-bound and small next to the products on the networks measured here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "FlopBreakdown",
    "conv2d_flops",
    "conv2d_output_size",
    "count_flops",
    "linear_flops",
    "lstm_cell_flops",
]


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def conv2d_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial output size of a 2-D convolution or pooling along one axis.

    Parameters
    ----------
    size : int
        Input size along the axis.
    kernel_size, stride, padding : int
        Window geometry (dilation 1).

    Returns
    -------
    int
        ``(size + 2 * padding - kernel_size) // stride + 1``.
    """
    _check_positive(size=size, kernel_size=kernel_size, stride=stride)
    out = (size + 2 * padding - kernel_size) // stride + 1
    if out < 1:
        raise ValueError(
            f"kernel_size={kernel_size} with padding={padding} does not fit an input of size {size}"
        )
    return out


def conv2d_flops(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    out_height: int,
    out_width: int,
    groups: int = 1,
) -> int:
    """FLOPs of one 2-D convolution applied to a single sample.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    kernel_size : int
        Square kernel side.
    out_height, out_width : int
        Spatial size of the output.
    groups : int, optional
        Convolution groups; ``in_channels`` must be divisible by it.

    Returns
    -------
    int
        ``2 * out_channels * (in_channels / groups) * kernel_size**2 * out_height * out_width``.
    """
    _check_positive(
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernel_size,
        out_height=out_height,
        out_width=out_width,
        groups=groups,
    )
    if in_channels % groups:
        raise ValueError(f"in_channels={in_channels} is not divisible by groups={groups}")
    return 2 * out_channels * (in_channels // groups) * kernel_size**2 * out_height * out_width


def linear_flops(in_features: int, out_features: int) -> int:
    """FLOPs of one fully connected layer applied to a single sample (``2 * in * out``)."""
    _check_positive(in_features=in_features, out_features=out_features)
    return 2 * in_features * out_features


def lstm_cell_flops(input_size: int, hidden_size: int) -> int:
    """FLOPs of one LSTM cell step for a single sample.

    The four gates are two matrix products, ``W_ih x`` and ``W_hh h``, each with
    ``4 * hidden_size`` outputs; the gate non-linearities are element-wise and not counted.
    """
    _check_positive(input_size=input_size, hidden_size=hidden_size)
    return linear_flops(input_size, 4 * hidden_size) + linear_flops(hidden_size, 4 * hidden_size)


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, Any]:
    """Run ``fn(*args, **kwargs)`` under ``FlopCounterMode`` and count what it executed.

    Parameters
    ----------
    fn : callable
        Anything that runs PyTorch operators. Work done outside PyTorch (NumPy, Numba)
        is invisible to the counter.
    *args, **kwargs
        Passed to ``fn``.

    Returns
    -------
    flops : int
        Total FLOPs over the whole call (not per sample).
    result : object
        What ``fn`` returned.
    """
    with FlopCounterMode(display=False) as counter:
        result = fn(*args, **kwargs)
    return int(counter.get_total_flops()), result


@dataclass(frozen=True)
class FlopBreakdown:
    """Per-sample FLOPs of each part of a :class:`~vj_dynamic.skipnet.SkipResNet`, one input size.

    Attributes
    ----------
    stem, head : int
        First convolution; final linear classifier.
    blocks : tuple of int
        Each residual block when it runs (shortcut included), in order.
    shortcuts : tuple of int
        Each block's shortcut alone: what a skipped block still costs (0 or a 1x1 conv).
    gates : tuple of int
        Each gate, for gated blocks ``1 .. len(blocks) - 1``.
    """

    stem: int
    blocks: tuple[int, ...]
    shortcuts: tuple[int, ...]
    gates: tuple[int, ...]
    head: int

    def dense(self) -> int:
        """FLOPs of the plain ResNet: every block, no gate."""
        return self.stem + sum(self.blocks) + self.head

    def dynamic(self, executed: np.ndarray) -> np.ndarray:
        """Per-sample FLOPs of gated execution.

        Parameters
        ----------
        executed : (N, n_gates) array of bool
            Whether each gated block ran for each sample.

        Returns
        -------
        (N,) ndarray of int64
            Stem, first block, every gate, each gated block that ran (or its shortcut
            when it did not), and the head.
        """
        executed = np.asarray(executed, dtype=bool)
        if executed.ndim != 2 or executed.shape[1] != len(self.gates):
            raise ValueError(
                f"executed must have shape (N, {len(self.gates)}), got {executed.shape}"
            )
        ran = np.asarray(self.blocks[1:], dtype=np.int64)
        skipped = np.asarray(self.shortcuts[1:], dtype=np.int64)
        fixed = self.stem + self.blocks[0] + sum(self.gates) + self.head
        return fixed + np.where(executed, ran, skipped).sum(axis=1, dtype=np.int64)
