"""Fast CPU runtime: same answers as the module's masked execution, and really skips."""

import numpy as np
import pytest
import torch
from test_dynamic_skipnet import force_gates, randomize, varied_inputs
from vj_dynamic.latency import torch_threads
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.skipnet_runtime import SkipNetClassifier, SkipNetRuntime


@pytest.fixture(autouse=True)
def _one_thread():
    torch.manual_seed(0)
    with torch_threads(1):
        yield


def make_net(gate):
    net = SkipResNet(depth=14, num_classes=4, in_channels=1, widths=(4, 8, 8), gate=gate)
    randomize(net, varied_inputs(32, 1, 16))
    return net.eval()


@pytest.mark.parametrize("gate", ["rnn", "ff2"])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("batch", [1, 3, 17])
@pytest.mark.parametrize("batching", ["grouped", "scatter"])
def test_runtime_equals_masked(gate, channels_last, batch, batching):
    net = make_net(gate)
    runtime = SkipNetRuntime(net, channels_last=channels_last, batching=batching)
    x = varied_inputs(batch, 1, 16)
    with torch.no_grad():
        masked = net(x, execution="masked")
        dense = net(x, execution="dense")
    out = runtime(x)
    np.testing.assert_array_equal(out.executed, masked.executed)
    torch.testing.assert_close(out.logits, masked.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(runtime(x, dynamic=False).logits, dense.logits, rtol=1e-4, atol=1e-4)
    if batch == 17:
        per_block = out.executed.mean(axis=0)
        assert ((per_block > 0) & (per_block < 1)).any()


def test_runtime_does_not_modify_its_input():
    net = make_net("rnn")
    x = varied_inputs(9, 1, 16)
    copy = x.clone()
    SkipNetRuntime(net)(x)
    torch.testing.assert_close(x, copy, rtol=0, atol=0)


def _rows_per_block(calls):
    """Rows each block ran on, summed over its calls (one call per group of a batch)."""
    totals = {}
    for k, rows in calls:
        totals[k] = totals.get(k, 0) + rows
    return totals


def _count_body_calls(runtime, monkeypatch):
    calls = []
    for k, block in enumerate(runtime._blocks):
        body = block.body

        def counting(x, shortcut, k=k, body=body):
            calls.append((k, x.shape[0]))
            return body(x, shortcut)

        monkeypatch.setattr(block, "body", counting)
    return calls


def test_runtime_closed_gates_run_nothing_at_batch_one(monkeypatch):
    net = make_net("rnn")
    force_gates(net, open_=False)
    runtime = SkipNetRuntime(net)
    calls = _count_body_calls(runtime, monkeypatch)
    out = runtime(torch.randn(1, 1, 16, 16))
    assert not out.executed.any()
    assert calls == [(0, 1)]


def test_runtime_runs_blocks_on_open_samples_only(monkeypatch):
    net = make_net("ff2")
    runtime = SkipNetRuntime(net)
    calls = _count_body_calls(runtime, monkeypatch)
    out = runtime(varied_inputs(32, 1, 16))
    ran = _rows_per_block(calls)
    for g in range(net.num_gates):
        assert ran.get(g + 1, 0) == out.executed[:, g].sum()


def test_replayed_decisions_replace_the_gates(monkeypatch):
    net = make_net("rnn")
    runtime = SkipNetRuntime(net)
    calls = _count_body_calls(runtime, monkeypatch)
    rng = np.random.default_rng(0)
    decisions = rng.random((12, net.num_gates)) < 0.5
    x = varied_inputs(12, 1, 16)
    out = runtime(x, decisions=decisions)
    np.testing.assert_array_equal(out.executed, decisions)
    assert _rows_per_block(calls) == {
        0: 12,
        **{g + 1: decisions[:, g].sum() for g in range(net.num_gates)},
    }
    # the same as masked execution would give with those decisions: compare per sample
    for i in range(12):
        single = runtime(x[i : i + 1], decisions=decisions[i : i + 1])
        torch.testing.assert_close(single.logits, out.logits[i : i + 1], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="decisions"):
        runtime(x, decisions=decisions[:, :3])
    with pytest.raises(ValueError, match="decisions"):
        runtime(x, dynamic=False, decisions=decisions)


def test_classifier_stage_reports_probabilities_and_flops():
    net = make_net("rnn")
    x = varied_inputs(6, 1, 16)
    clf = SkipNetClassifier(net)
    probs = clf.predict_proba(x)
    assert probs.shape == (6, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    expected = net.flop_breakdown(16, 16).dynamic(clf.last_executed)
    np.testing.assert_array_equal(clf.last_cost, expected)
    dense = SkipNetClassifier(net, dynamic=False)
    dense(x)
    assert (dense.last_cost == net.flop_breakdown(16, 16).dense()).all()


def test_runtime_rejects_bad_use():
    net = make_net("rnn")
    with pytest.raises(ValueError, match="eval"):
        SkipNetRuntime(net.train())
    net.eval()
    with pytest.raises(ValueError, match="float32"):
        SkipNetRuntime(make_net("rnn").double())
    with pytest.raises(ValueError, match="SkipResNet"):
        SkipNetRuntime(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="shape"):
        SkipNetRuntime(net)(torch.zeros(2, 3, 16, 16))


@pytest.mark.parametrize("batch", [1, 9])
def test_runtime_folds_the_gate_input_normalisation(batch):
    net = SkipResNet(depth=14, num_classes=4, in_channels=1, widths=(4, 8, 8), gate_norm=True)
    randomize(net, varied_inputs(32, 1, 16))
    with torch.no_grad():
        for norm in net.gates.norms:
            norm.running_mean.normal_(0, 0.5)
            norm.running_var.uniform_(0.05, 0.5)
    net.eval()
    x = varied_inputs(batch, 1, 16)
    with torch.no_grad():
        masked = net(x, execution="masked")
    out = SkipNetRuntime(net)(x)
    np.testing.assert_array_equal(out.executed, masked.executed)
    torch.testing.assert_close(out.logits, masked.logits, rtol=1e-4, atol=1e-4)
