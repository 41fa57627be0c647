"""SkipNet gates: output shapes, recurrent state, cost, initial openness."""

import pytest
import torch
from vj_dynamic.flops import count_flops
from vj_dynamic.gates import FeedForwardGates, FFGateI, FFGateII, RNNGate, make_gates


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("gate_cls", [FFGateI, FFGateII])
@pytest.mark.parametrize("size", [8, 9, 16])
def test_feedforward_gate_shapes_and_flops(gate_cls, size):
    gate = gate_cls(6).eval()
    x = torch.randn(5, 6, size, size)
    counted, logits = count_flops(gate, x)
    assert logits.shape == (5,)
    assert counted == 5 * gate.flops(size, size)


def test_ffgate_costs_follow_the_paper():
    # FFGate-I: conv at half resolution (1/4) + strided conv at quarter (1/16) of one
    # block convolution; FFGate-II: one strided conv (1/4). Linear read-outs aside.
    conv = 2 * 16 * 16 * 9 * 32 * 32
    assert FFGateI(16).flops(32, 32) - 2 * 16 == conv // 4 + conv // 16
    assert FFGateII(16).flops(32, 32) - 2 * 16 == conv // 4


def test_rnn_gate_shapes_state_and_flops():
    gate = RNNGate([4, 8, 8], embed_dim=10, hidden_dim=10)
    state = gate.init_state(3, torch.device("cpu"), torch.float32)
    assert state[0].shape == state[1].shape == (3, 10)
    logits0, state1 = gate(torch.randn(3, 4, 16, 16), 0, state)
    logits1, state2 = gate(torch.randn(3, 8, 8, 8), 1, state1)
    assert logits0.shape == logits1.shape == (3,)
    assert not torch.equal(state1[0], state2[0])  # the LSTM carries information forward
    counted, _ = count_flops(gate, torch.randn(3, 8, 8, 8), 2, state2)
    assert counted == 3 * gate.flops(2, 8, 8) == 3 * (2 * 8 * 10 + 2 * 40 * 20 + 2 * 10)


def test_rnn_gate_is_shared_across_blocks():
    gate = RNNGate([4, 4, 4])
    assert len(gate) == 3
    assert sum(1 for _ in gate.cell.parameters()) == 4  # one LSTM for every block


@pytest.mark.parametrize("kind", ["rnn", "ff1", "ff2"])
def test_gates_start_open(kind):
    gates = make_gates(kind, [4, 4]).eval()
    state = gates.init_state(6, torch.device("cpu"), torch.float32)
    logits, _ = gates(torch.zeros(6, 4, 8, 8), 1, state)
    assert (torch.sigmoid(logits) > 0.5).all()


def test_bad_gate_arguments():
    with pytest.raises(ValueError, match="gate kind"):
        make_gates("lstm", [4])
    with pytest.raises(ValueError, match="ff1"):
        FeedForwardGates([4], kind="ff3")
    with pytest.raises(ValueError):
        RNNGate([4], embed_dim=0)
