"""The runtime's gate evaluation: the recurrent gate as one Numba call per block.

At batch size 1 a recurrent gate step is a few microseconds of arithmetic spread over
a dozen PyTorch operators, each with its own dispatch cost. :func:`rnn_gate_kernel`
does the whole step (pool, embed, LSTM cell, read-out, threshold) in one call that
reads the activation in place; :class:`FusedRNNGate` holds the weights it needs, with
the gate's input normalisation folded into the embedding. Feed-forward gates run as
PyTorch modules (:class:`TorchGates`): their convolutions dominate their cost.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import types
from numba.extending import intrinsic
from torch import nn
from vj_dynamic.gates import RNNGate

__all__ = ["FusedRNNGate", "TorchGates", "gate_bank", "rnn_gate_kernel"]


@intrinsic
def _float32_pointer(typingctx, address):
    """Numba intrinsic: the integer ``address`` as a ``float32*`` (for ``numba.carray``)."""
    signature = types.CPointer(types.float32)(types.intp)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(sig.return_type))

    return signature, codegen


@numba.njit(cache=True, nogil=True, fastmath=True)
def rnn_gate_kernel(
    address,
    n,
    channels,
    pixels,
    channels_last,
    w_e,
    b_e,
    w_ih,
    w_hh,
    b_gates,
    w_out,
    b_out,
    threshold,
    h,
    c,
    out,
):
    """One step of the recurrent gate for every sample; updates ``h`` and ``c`` in place.

    Same arithmetic as ``RNNGate.forward``: global-average-pool the block input, embed,
    one LSTM step (PyTorch gate order i, f, g, o), linear read-out, compare the logit to
    ``threshold``. The block input is read in place from ``address``: ``n`` samples of
    ``pixels x channels`` float32 values when ``channels_last``, else ``channels x
    pixels``. At batch size 1 a gate is a few microseconds of arithmetic, and Python
    objects around it (tensor views, NumPy arrays) would cost as much again.
    """
    if channels_last:
        x = numba.carray(_float32_pointer(address), (n, pixels, channels))
    else:
        x = numba.carray(_float32_pointer(address), (n, channels, pixels))
    n_in = channels
    n_pixels = pixels
    n_embed = w_e.shape[0]
    n_hidden = w_hh.shape[1]
    ones = np.ones(n_pixels, np.float32)
    e = np.empty(n_embed, np.float32)
    z = np.empty(4 * n_hidden, np.float32)
    for s in range(n):
        # Pooling as a BLAS matrix-vector product: several times faster than a loop here.
        pooled = np.dot(ones, x[s]) if channels_last else np.dot(x[s], ones)
        for j in range(n_embed):
            acc = 0.0
            for i in range(n_in):
                acc += w_e[j, i] * pooled[i]
            e[j] = acc / n_pixels + b_e[j]
        for j in range(4 * n_hidden):
            acc = b_gates[j]
            for i in range(n_embed):
                acc += w_ih[j, i] * e[i]
            for i in range(n_hidden):
                acc += w_hh[j, i] * h[s, i]
            z[j] = acc
        logit = b_out
        for j in range(n_hidden):
            in_gate = 1.0 / (1.0 + np.exp(-z[j]))
            forget_gate = 1.0 / (1.0 + np.exp(-z[n_hidden + j]))
            candidate = np.tanh(z[2 * n_hidden + j])
            out_gate = 1.0 / (1.0 + np.exp(-z[3 * n_hidden + j]))
            cell = forget_gate * c[s, j] + in_gate * candidate
            c[s, j] = cell
            hidden = out_gate * np.tanh(cell)
            h[s, j] = hidden
            logit += w_out[j] * hidden
        out[s] = logit > threshold


class FusedRNNGate:
    """The recurrent gate bank as NumPy weights and one kernel call per block."""

    def __init__(self, gate: RNNGate, channels_last: bool) -> None:
        self.channels_last = channels_last

        def arr(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

        folded = [gate.folded_embedding(k) for k in range(len(gate))]
        self.w_e = [arr(w) for w, _ in folded]
        self.b_e = [arr(b) for _, b in folded]
        self.w_ih = arr(gate.cell.weight_ih)
        self.w_hh = arr(gate.cell.weight_hh)
        self.b_gates = arr(gate.cell.bias_ih + gate.cell.bias_hh)
        self.w_out = arr(gate.proj.weight[0])
        self.b_out = float(gate.proj.bias.detach()[0])
        self.hidden_dim = gate.hidden_dim

    def init_state(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Zero hidden and cell states."""
        zeros = np.zeros((n, self.hidden_dim), np.float32)
        return zeros, zeros.copy()

    @staticmethod
    def take_state(state, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The states of the samples ``index`` (copies, C-contiguous)."""
        return state[0][index], state[1][index]

    def decide(self, x: torch.Tensor, k: int, state, threshold: float, out: np.ndarray) -> None:
        """Write the decisions of gate ``k`` for the block input ``x`` into ``out``."""
        n, channels, height, width = x.shape
        h, c = state
        # The runtime keeps every activation in its own layout; where the two layouts
        # coincide in memory (one channel, or one pixel) either reading is right.
        rnn_gate_kernel(
            x.data_ptr(),
            n,
            channels,
            height * width,
            self.channels_last,
            self.w_e[k],
            self.b_e[k],
            self.w_ih,
            self.w_hh,
            self.b_gates,
            self.w_out,
            self.b_out,
            threshold,
            h,
            c,
            out,
        )


class TorchGates:
    """Feed-forward gates run as PyTorch modules (their convolutions dominate dispatch)."""

    def __init__(self, gates: nn.Module) -> None:
        self.gates = gates

    def init_state(self, n: int) -> None:
        """Feed-forward gates keep no state."""
        return None

    @staticmethod
    def take_state(state, index: np.ndarray) -> None:
        """Feed-forward gates keep no state."""
        return None

    def decide(self, x: torch.Tensor, k: int, state, threshold: float, out: np.ndarray) -> None:
        logit, _ = self.gates(x, k, None)
        out[:] = (logit > threshold).numpy()


def gate_bank(gates: nn.Module, channels_last: bool) -> FusedRNNGate | TorchGates:
    """The runtime form of a model's gate bank."""
    if isinstance(gates, RNNGate):
        return FusedRNNGate(gates, channels_last)
    return TorchGates(gates)
