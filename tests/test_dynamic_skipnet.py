"""Gated ResNet: structure, execution modes (skip == masked), exact FLOP accounting."""

import numpy as np
import pytest
import torch
from vj_dynamic.flops import count_flops
from vj_dynamic.latency import torch_threads
from vj_dynamic.skipnet import SkipResNet, skipnet38, skipnet74, skipnet110


@pytest.fixture(autouse=True)
def _one_thread():
    torch.manual_seed(0)
    with torch_threads(1):
        yield


def small_net(gate="rnn", x=None):
    """Depth 8 (one block per stage), narrow: fast, yet every code path is there."""
    net = SkipResNet(depth=8, num_classes=3, in_channels=1, widths=(4, 8, 16), gate=gate)
    randomize(net, x)
    return net.eval()


def randomize(net, x=None):
    """Non-trivial blocks and batch-norm statistics, and gates that split the batch.

    With ``x`` given, each feed-forward gate's bias is set, block by block, to the median
    of its logits on ``x``, so that about half of the samples run each block.
    """
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
        if net.gate_kind == "rnn":
            for embed in net.gates.embed:
                embed.weight.normal_(0, 3.0)
            net.gates.proj.weight.normal_(0, 3.0)
            net.gates.proj.bias.zero_()
            return
        for gate in net.gates.gates:
            gate.fc.weight.normal_(0, 3.0)
            gate.fc.bias.zero_()
        if x is None:
            return
        was_training = net.training
        net.eval()
        for k, gate in enumerate(net.gates.gates):
            logits = net(x, execution="masked").gate_logits[:, k]
            gate.fc.bias.sub_(logits.median())
        net.train(was_training)


def varied_inputs(n, channels, size):
    """Images whose brightness differs per sample, so that gates disagree across the batch."""
    return torch.randn(n, channels, size, size) + 2.0 * torch.randn(n, 1, 1, 1)


def force_gates(net, open_: bool):
    with torch.no_grad():
        heads = [net.gates.proj] if net.gate_kind == "rnn" else [g.fc for g in net.gates.gates]
        for head in heads:
            head.weight.zero_()
            head.bias.fill_(100.0 if open_ else -100.0)


@pytest.mark.parametrize(
    ("builder", "blocks"), [(skipnet38, 18), (skipnet74, 36), (skipnet110, 54)]
)
def test_depths(builder, blocks):
    net = builder(num_classes=10, in_channels=3)
    assert len(net.blocks) == blocks and net.num_gates == blocks - 1
    assert [b.stride for b in net.blocks].count(2) == 2


@pytest.mark.parametrize("depth", [7, 37, 2, 0])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match="6n \\+ 2"):
        SkipResNet(depth=depth)


def test_bad_inputs():
    net = small_net()
    with pytest.raises(ValueError, match="shape"):
        net(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="float"):
        net(torch.zeros(2, 1, 16, 16, dtype=torch.int64))
    with pytest.raises(ValueError, match="execution"):
        net(torch.zeros(2, 1, 16, 16), execution="fast")
    with pytest.raises(ValueError, match="eval"):
        net.train()(torch.zeros(2, 1, 16, 16), execution="skip")
    with pytest.raises(ValueError, match="gate_threshold"):
        SkipResNet(depth=8, gate_threshold=1.0)


def test_output_shapes():
    net = small_net()
    out = net(torch.randn(5, 1, 16, 16), execution="masked")
    assert out.logits.shape == (5, 3)
    assert out.gate_logits.shape == out.masks.shape == (5, 2)
    dense = net(torch.randn(5, 1, 16, 16), execution="dense")
    assert dense.gate_logits is None and dense.executed.all()


@pytest.mark.parametrize("gate", ["rnn", "ff1", "ff2"])
@pytest.mark.parametrize("batch", [1, 2, 9])
def test_skip_equals_masked(gate, batch):
    net = SkipResNet(depth=14, num_classes=3, in_channels=1, widths=(4, 8, 8), gate=gate)
    x = varied_inputs(batch, 1, 16)
    randomize(net, varied_inputs(32, 1, 16))
    net.eval()
    with torch.no_grad():
        masked = net(x, execution="masked")
        skipped = net(x, execution="skip")
    np.testing.assert_array_equal(masked.executed, skipped.executed)
    torch.testing.assert_close(skipped.logits, masked.logits, rtol=1e-5, atol=1e-5)
    if batch == 9:  # the check needs samples that go different ways through the same block
        per_block = masked.executed.mean(axis=0)
        assert ((per_block > 0) & (per_block < 1)).any()


def test_masked_with_open_gates_equals_dense():
    net = small_net()
    force_gates(net, open_=True)
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            net(x, execution="masked").logits, net(x, execution="dense").logits
        )


def _count_block_calls(net):
    calls = []
    for k, block in enumerate(net.blocks):
        block.conv1.register_forward_hook(
            lambda m, inp, out, k=k: calls.append((k, inp[0].shape[0]))
        )
    return calls


def test_closed_gate_skips_the_block_at_batch_one():
    net = small_net()
    force_gates(net, open_=False)
    calls = _count_block_calls(net)
    with torch.no_grad():
        out = net(torch.randn(1, 1, 16, 16), execution="skip")
    assert not out.executed.any()
    assert calls == [(0, 1)]  # only the ungated first block ran


def test_skip_runs_blocks_only_on_open_samples():
    x = varied_inputs(16, 1, 16)
    net = small_net("ff2", x)
    calls = _count_block_calls(net)
    with torch.no_grad():
        out = net(x, execution="skip")
    executed = out.executed
    assert ((executed.mean(axis=0) > 0) & (executed.mean(axis=0) < 1)).any()
    ran = {k: n for k, n in calls}
    assert ran[0] == 16
    for g in range(net.num_gates):
        assert ran.get(g + 1, 0) == executed[:, g].sum()


def test_flops_exact_for_known_configuration():
    # depth 8, widths (4, 8, 16), 1 input channel, 3 classes, 16x16 input, LSTM gate 10/10.
    stem = 2 * 4 * 1 * 9 * 16 * 16  # 18,432
    block0 = 2 * (2 * 4 * 4 * 9 * 16 * 16)  # 147,456
    block1 = 2 * 8 * 4 * 9 * 64 + 2 * 8 * 8 * 9 * 64 + 2 * 8 * 4 * 64  # 114,688
    block2 = 2 * 16 * 8 * 9 * 16 + 2 * 16 * 16 * 9 * 16 + 2 * 16 * 8 * 16  # 114,688
    shortcut1 = shortcut2 = 4096
    lstm = 2 * 40 * 10 + 2 * 40 * 10
    gate0, gate1 = 2 * 4 * 10 + lstm + 20, 2 * 8 * 10 + lstm + 20
    head = 2 * 16 * 3
    dense = stem + block0 + block1 + block2 + head
    assert dense == 395_360

    net = small_net()
    x = torch.randn(2, 1, 16, 16)
    breakdown = net.flop_breakdown(16, 16)
    assert breakdown.dense() == dense
    assert breakdown.gates == (gate0, gate1)
    with torch.no_grad():
        assert count_flops(net, x, execution="dense")[0] == 2 * dense
        force_gates(net, open_=True)
        assert count_flops(net, x, execution="skip")[0] == 2 * (dense + gate0 + gate1)
        force_gates(net, open_=False)
        closed = dense - block1 - block2 + shortcut1 + shortcut2 + gate0 + gate1
        assert count_flops(net, x, execution="skip")[0] == 2 * closed
        # masked execution computes everything whatever the gates say: no saving
        assert count_flops(net, x, execution="masked")[0] == 2 * (dense + gate0 + gate1)


@pytest.mark.parametrize("gate", ["rnn", "ff1", "ff2"])
def test_counted_flops_match_analytic_per_sample(gate):
    net = SkipResNet(depth=14, num_classes=5, in_channels=2, widths=(4, 8, 8), gate=gate)
    x = varied_inputs(12, 2, 20)
    randomize(net, x)
    net.eval()
    with torch.no_grad():
        counted, out = count_flops(net, x, execution="skip")
    per_sample = net.flop_breakdown(20, 20).dynamic(out.executed)
    assert counted == per_sample.sum()
    assert len(set(per_sample.tolist())) > 1  # samples took different paths


def test_flop_breakdown_rejects_bad_masks():
    with pytest.raises(ValueError, match="shape"):
        small_net().flop_breakdown(16, 16).dynamic(np.ones((3, 5), bool))
