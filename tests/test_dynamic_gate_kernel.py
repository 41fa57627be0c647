"""The runtime's fused recurrent-gate kernel against a plain NumPy step, on random inputs."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from vj_dynamic.gates import RNNGate
from vj_dynamic.skipnet_gate_kernel import FusedRNNGate, rnn_gate_kernel


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def reference_gate_step(x, w_e, b_e, w_ih, w_hh, b_gates, w_out, b_out, h, c):
    """One recurrent gate step, from the definitions: pool, embed, LSTM cell, read-out.

    ``x`` is ``(N, C, H, W)``; returns logits ``(N,)`` and the new ``h``, ``c``.
    """
    pooled = x.astype(np.float64).mean(axis=(2, 3))
    e = pooled @ w_e.T + b_e
    z = e @ w_ih.T + h @ w_hh.T + b_gates
    i, f, g, o = np.split(z, 4, axis=1)  # PyTorch's gate order
    c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h_new = _sigmoid(o) * np.tanh(c_new)
    return h_new @ w_out + b_out, h_new, c_new


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 5),
    channels=st.integers(1, 6),
    side=st.integers(1, 5),
    hidden=st.integers(1, 4),
    channels_last=st.booleans(),
    threshold=st.floats(-1.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_kernel_matches_the_numpy_step(n, channels, side, hidden, channels_last, threshold, seed):
    rng = np.random.default_rng(seed)
    f32 = np.float32
    embed = 3
    x = rng.normal(0, 2, (n, channels, side, side)).astype(f32)
    w_e, b_e = rng.normal(0, 1, (embed, channels)).astype(f32), rng.normal(0, 1, embed).astype(f32)
    w_ih = rng.normal(0, 1, (4 * hidden, embed)).astype(f32)
    w_hh = rng.normal(0, 1, (4 * hidden, hidden)).astype(f32)
    b_gates = rng.normal(0, 1, 4 * hidden).astype(f32)
    w_out, b_out = rng.normal(0, 1, hidden).astype(f32), float(rng.normal())
    h0, c0 = rng.normal(0, 1, (n, hidden)).astype(f32), rng.normal(0, 1, (n, hidden)).astype(f32)
    logits, h_ref, c_ref = reference_gate_step(
        x, w_e, b_e, w_ih, w_hh, b_gates, w_out, b_out, h0, c0
    )
    layout = x.transpose(0, 2, 3, 1) if channels_last else x
    buffer = np.ascontiguousarray(layout)
    h, c, out = h0.copy(), c0.copy(), np.zeros(n, bool)
    rnn_gate_kernel(
        buffer.ctypes.data,
        n,
        channels,
        side * side,
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
    )
    np.testing.assert_allclose(h, h_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(c, c_ref, rtol=1e-4, atol=1e-4)
    clear = np.abs(logits - threshold) > 1e-3  # decisions at the threshold may round either way
    np.testing.assert_array_equal(out[clear], (logits > threshold)[clear])


def test_fused_gate_folds_the_input_normalisation():
    torch.manual_seed(0)
    gate = RNNGate([4, 6], normalize=True).eval()
    with torch.no_grad():
        for norm in gate.norms:
            norm.running_mean.normal_(0, 1)
            norm.running_var.uniform_(0.2, 3.0)
        gate.proj.bias.zero_()
    fused = FusedRNNGate(gate, channels_last=True)
    x = torch.randn(7, 4, 3, 3).contiguous(memory_format=torch.channels_last)
    state = gate.init_state(7, x.device, x.dtype)
    with torch.no_grad():
        logits, _ = gate(x, 0, state)
    out = np.zeros(7, bool)
    fused.decide(x, 0, fused.init_state(7), 0.0, out)
    clear = logits.abs().numpy() > 1e-3
    np.testing.assert_array_equal(out[clear], (logits.numpy() > 0)[clear])
