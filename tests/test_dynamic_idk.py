"""IDK cascade: rules, batched gather/run/scatter execution, statistics, adapters."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from vj_dynamic.idk import (
    EntropyRule,
    IDKCascade,
    LearnedDeferralRule,
    MaxProbRule,
    Stage,
    sklearn_predict_proba,
    torch_predict_proba,
)


class RecordingStage:
    """Returns fixed probabilities per input id (column 0 of x) and records what it saw."""

    def __init__(self, table):
        self.table = np.asarray(table, dtype=float)
        self.seen = []

    def __call__(self, x):
        ids = np.asarray(x)[:, 0].astype(int)
        self.seen.append(ids.tolist())
        return self.table[ids]


def test_rules():
    probs = np.array([[0.95, 0.05], [0.6, 0.4], [0.5, 0.5]])
    np.testing.assert_array_equal(MaxProbRule(0.9).idk(probs), [False, True, True])
    entropy = EntropyRule.from_max_entropy(0.5)
    np.testing.assert_array_equal(entropy.idk(probs), [False, True, True])
    np.testing.assert_allclose(-entropy.confidence(probs)[2], np.log(2))
    assert MaxProbRule(0.9).with_threshold(0.55).idk(probs).tolist() == [False, False, True]
    with pytest.raises(ValueError, match="shape"):
        MaxProbRule().idk(np.ones(3))
    with pytest.raises(ValueError, match="max_entropy"):
        EntropyRule.from_max_entropy(-1)


def test_learned_deferral_rule_learns_when_a_stage_is_wrong():
    rng = np.random.default_rng(0)
    p1 = rng.uniform(0.5, 1.0, 400)
    probs = np.column_stack([p1, 1 - p1])
    correct = rng.random(400) < p1  # surer answers are right more often
    rule = LearnedDeferralRule.fit(probs, correct, threshold=0.75)
    confidence = rule.confidence(probs)
    assert np.corrcoef(confidence, p1)[0, 1] > 0.9
    assert rule.idk(np.array([[0.55, 0.45]]))[0] and not rule.idk(np.array([[0.99, 0.01]]))[0]
    with pytest.raises(ValueError, match="right and wrong"):
        LearnedDeferralRule.fit(probs, np.ones(400, bool))
    with pytest.raises(ValueError, match="not fitted"):
        LearnedDeferralRule().confidence(probs)


def make_cascade(abstain=False):
    # 6 inputs; stage 0 is sure about 0, 1; stage 1 about 2, 3; the last decides 4, 5
    s0 = RecordingStage(
        [[0.99, 0.01], [0.02, 0.98], [0.6, 0.4], [0.5, 0.5], [0.7, 0.3], [0.55, 0.45]]
    )
    s1 = RecordingStage([[0.5, 0.5]] * 2 + [[0.97, 0.03], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    s2 = RecordingStage([[0.5, 0.5]] * 4 + [[0.2, 0.8], [0.95, 0.05]])
    stages = [
        Stage("a", s0, 1.0, MaxProbRule(0.9)),
        Stage("b", s1, 10.0, MaxProbRule(0.85)),
        Stage("c", s2, 100.0, MaxProbRule(0.9) if abstain else None),
    ]
    x = np.arange(6)[:, None] * np.ones((1, 3))
    return IDKCascade(stages, abstain=abstain), (s0, s1, s2), x


def test_cascade_runs_each_stage_only_on_undecided_inputs():
    cascade, (s0, s1, s2), x = make_cascade()
    result = cascade.predict(x)
    assert s0.seen == [[0, 1, 2, 3, 4, 5]]
    assert s1.seen == [[2, 3, 4, 5]]
    assert s2.seen == [[4, 5]]
    assert result.decided_by.tolist() == [0, 0, 1, 1, 2, 2]
    assert result.predictions.tolist() == [0, 1, 0, 1, 1, 0]
    np.testing.assert_allclose(result.probabilities[3], [0.1, 0.9])
    np.testing.assert_allclose(result.costs, [1, 1, 11, 11, 111, 111])
    stats = result.stats
    assert [s.inputs for s in stats.stages] == [6, 4, 2]
    assert [s.answered for s in stats.stages] == [2, 2, 2]
    np.testing.assert_allclose([s.idk_rate for s in stats.stages], [4 / 6, 0.5, 0.0])
    assert stats.cost_per_input == pytest.approx((6 * 1 + 4 * 10 + 2 * 100) / 6)
    assert result.accuracy(np.array([0, 1, 0, 1, 1, 1])) == pytest.approx(5 / 6)
    assert "IDK rate" in stats.table()


def test_cascade_abstains_when_the_last_stage_is_unsure():
    cascade, _, x = make_cascade(abstain=True)
    result = cascade.predict(x)
    assert result.predictions.tolist() == [0, 1, 0, 1, -1, 0]
    assert result.decided_by[4] == 2


def test_stages_after_everything_is_decided_do_not_run():
    cascade, (s0, s1, s2), x = make_cascade()
    cascade.with_thresholds([0.0, 0.0]).predict(x)
    assert s1.seen == [] and s2.seen == []


def test_reported_per_input_costs_are_used():
    class Reporting:
        last_cost = None

        def __call__(self, x):
            self.last_cost = np.arange(len(x), dtype=float)
            return np.tile([0.3, 0.7], (len(x), 1))

    reporting = Reporting()
    stage = Stage("r", reporting, 99.0, cost_fn=lambda: reporting.last_cost)
    result = IDKCascade([stage]).predict(np.zeros((4, 2)))
    np.testing.assert_allclose(result.costs, [0, 1, 2, 3])


class Reporter:
    """A CostReporter: predict_proba plus last_cost (as a SkipNet classifier has)."""

    def __init__(self):
        self.last_cost = None

    def predict_proba(self, x):
        self.last_cost = 10.0 + np.arange(len(x), dtype=float)
        return np.tile([0.3, 0.7], (len(x), 1))


@pytest.mark.parametrize("bound_method", [False, True])
def test_cost_reporters_charge_what_each_input_cost(bound_method):
    reporter = Reporter()
    stage = Stage("r", reporter.predict_proba if bound_method else reporter, 99.0)
    result = IDKCascade([stage]).predict(np.zeros((3, 2)))
    np.testing.assert_allclose(result.costs, [10, 11, 12])
    assert result.stats.stages[0].cost == pytest.approx(33.0)
    # a report of the wrong length falls back to the declared cost
    short = Stage("s", lambda x: np.tile([0.3, 0.7], (len(x), 1)), 5.0, cost_fn=lambda: [1.0])
    np.testing.assert_allclose(IDKCascade([short]).predict(np.zeros((2, 2))).costs, [5, 5])
    # a plain callable with no cost_fn is charged its declared cost
    plain = Stage("p", lambda x: np.tile([0.3, 0.7], (len(x), 1)), 7.0)
    np.testing.assert_allclose(IDKCascade([plain]).predict(np.zeros((2, 2))).costs, [7, 7])
    with pytest.raises(ValueError, match="cost_fn"):
        Stage("bad", plain.predict_proba, 1.0, cost_fn=3.0)


def test_torch_and_sklearn_adapters():
    torch.manual_seed(0)
    x = torch.randn(50, 4)
    y = (x[:, 0] > 0).long()
    logreg = LogisticRegression().fit(x.numpy(), y.numpy())
    cheap = sklearn_predict_proba(logreg, transform=lambda t: t.numpy())
    net = torch.nn.Sequential(torch.nn.Linear(4, 2))
    cascade = IDKCascade(
        [
            Stage("logreg", cheap, 8.0, MaxProbRule(0.8)),
            Stage("net", torch_predict_proba(net, batch_size=7), 16.0),
        ]
    )
    result = cascade.predict(x)
    sure = cheap(x).max(axis=1) >= 0.8
    np.testing.assert_array_equal(result.decided_by, np.where(sure, 0, 1))
    with torch.no_grad():
        net_probs = torch.softmax(net(x[~torch.from_numpy(sure)]), 1).numpy()
    np.testing.assert_allclose(result.probabilities[~sure], net_probs, rtol=1e-5)
    with pytest.raises(ValueError, match="classes"):
        sklearn_predict_proba(LogisticRegression().fit(x.numpy(), y.numpy() + 1))


def test_cascade_validation():
    ok = Stage("ok", lambda x: np.ones((len(x), 2)) / 2, 1.0)
    with pytest.raises(ValueError, match="at least one"):
        IDKCascade([])
    with pytest.raises(ValueError, match="needs an IDK rule"):
        IDKCascade([ok, ok])
    with pytest.raises(ValueError, match="needs an IDK rule"):
        IDKCascade([ok], abstain=True)
    with pytest.raises(ValueError, match="cost"):
        Stage("bad", lambda x: x, -1.0)
    bad = Stage("bad", lambda x: np.ones((len(x) + 1, 2)), 1.0)
    with pytest.raises(ValueError, match="returned shape"):
        IDKCascade([bad]).predict(np.zeros((3, 1)))
    with pytest.raises(ValueError, match="thresholds"):
        IDKCascade([Stage("a", ok.predict_proba, 1.0, MaxProbRule()), ok]).with_thresholds([])
