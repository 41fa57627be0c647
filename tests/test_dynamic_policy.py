"""Policy reports: per-sample FLOPs spread, execution paths, per-group figures."""

import json

import numpy as np
import pytest
import torch
from test_dynamic_skipnet import force_gates, randomize, varied_inputs
from vj_dynamic.latency import torch_threads
from vj_dynamic.skipnet import SkipResNet
from vj_dynamic.skipnet_policy import path_key, policy_report


@pytest.fixture(autouse=True)
def _one_thread():
    torch.manual_seed(0)
    with torch_threads(1):
        yield


def make_net():
    net = SkipResNet(depth=14, num_classes=3, in_channels=1, widths=(4, 8, 8))
    randomize(net, varied_inputs(32, 1, 16))
    return net.eval()


def test_path_key():
    keys = path_key(np.array([[True, False, True], [False, False, False]]))
    assert keys.tolist() == ["101", "000"]
    with pytest.raises(ValueError, match="shape"):
        path_key(np.ones(3, bool))


def test_report_counts_what_ran():
    net = make_net()
    x = varied_inputs(40, 1, 16)
    report = policy_report(net, x, batch_size=7)
    with torch.no_grad():
        out = net(x, execution="skip")
    np.testing.assert_array_equal(report.executed, out.executed)
    np.testing.assert_array_equal(report.predictions, out.logits.argmax(1).numpy())
    breakdown = net.flop_breakdown(16, 16)
    np.testing.assert_array_equal(report.flops, breakdown.dynamic(out.executed))
    assert report.dense_flops == breakdown.dense()
    paths = report.paths()
    assert sum(c for _, c in paths) == 40 and report.n_paths == len(set(path_key(out.executed)))
    assert [c for _, c in paths] == sorted((c for _, c in paths), reverse=True)
    assert report.n_paths > 1  # the randomised gates split the batch
    counts, edges = report.histogram(5)
    assert counts.sum() == 40 and edges[0] <= report.flops.min() and edges[-1] >= report.flops.max()
    assert report.spread == pytest.approx(
        np.percentile(report.flops, 90) / np.percentile(report.flops, 10)
    )
    summary = report.to_dict(bins=5)
    json.dumps(summary)
    assert summary["paths"] == report.n_paths
    assert sum(p["share"] for p in summary["path_shares"]) == pytest.approx(1.0)


def test_groups_and_a_policy_that_never_varies():
    net = make_net()
    force_gates(net, open_=True)
    x = varied_inputs(12, 1, 16)
    report = policy_report(net, x)
    assert report.n_paths == 1 and report.spread == 1.0 and report.flops_saved < 0
    labels = report.predictions.copy()
    labels[:3] = (labels[:3] + 1) % 3  # three wrong answers, all in group 0
    groups = np.array([0] * 6 + [1] * 6)
    rows = report.by_group(groups, labels)
    assert [r["group"] for r in rows] == [0, 1] and [r["n"] for r in rows] == [6, 6]
    assert rows[0]["accuracy"] == pytest.approx(0.5) and rows[1]["accuracy"] == 1.0
    assert rows[0]["execution_rate"] == 1.0
    with pytest.raises(ValueError, match="groups"):
        report.by_group(groups[:5])


def test_report_rejects_bad_input():
    net = make_net()
    with pytest.raises(ValueError, match="SkipResNet"):
        policy_report(torch.nn.Linear(2, 2), torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="non-empty"):
        policy_report(net, torch.zeros(0, 1, 16, 16))
    with pytest.raises(ValueError, match="bins"):
        policy_report(net, torch.zeros(2, 1, 16, 16)).histogram(0)
