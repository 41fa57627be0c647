"""Stage selection: every kept stage of a tuned IDK cascade answers a share of its inputs."""

import itertools

import numpy as np
import pytest
from vj_dynamic.idk_selection import answer_shares, select_stages
from vj_dynamic.idk_tuning import tune_thresholds


def three_stages(seed=0, n=400):
    """A cheap stage sure and right on easy inputs, a useless middle one, a strong last one."""
    rng = np.random.default_rng(seed)
    easy = rng.random(n) < 0.6
    conf0 = np.where(easy, rng.uniform(0.9, 1.0, n), rng.uniform(0.3, 0.7, n))
    right0 = np.where(easy, rng.random(n) < 0.99, rng.random(n) < 0.5)
    conf1 = rng.uniform(0.3, 0.6, n)  # never sure
    right1 = rng.random(n) < 0.3
    conf2 = rng.uniform(0.8, 1.0, n)
    right2 = rng.random(n) < 0.97
    return [conf0, conf1, conf2], [right0, right1, right2], [1.0, 30.0, 100.0]


def test_answer_shares():
    conf = [np.array([0.9, 0.1, 0.8, 0.2]), np.array([0.5, 0.9, 0.1, 0.3]), np.zeros(4)]
    np.testing.assert_allclose(answer_shares(conf, [0.5, 0.6]), [0.5, 0.5, 1.0])
    np.testing.assert_allclose(answer_shares(conf, [-np.inf, 0.6]), [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="thresholds"):
        answer_shares(conf, [0.5])


def test_a_stage_that_answers_nothing_is_dropped():
    conf, right, costs = three_stages()
    plain = tune_thresholds(conf, right, costs, eps=0.01)
    assert answer_shares(conf, plain.point.thresholds)[1] < 0.05  # the degenerate cascade
    chosen = select_stages(conf, right, costs, eps=0.01, min_share=0.05)
    assert chosen.feasible
    assert 1 in chosen.dropped and chosen.kept[-1] == 2
    assert min(chosen.shares) >= 0.05
    assert chosen.tuning.point.cost <= plain.point.cost + 1e-9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selection_is_the_cheapest_rule_abiding_subset(seed):
    conf, right, costs = three_stages(seed, n=200)
    best = right[int(np.argmax([r.mean() for r in right]))]
    chosen = select_stages(conf, right, costs, eps=0.02, z=0.5, min_share=0.1)
    # brute force over subsets and every observed threshold
    cheapest = None
    for size in (1, 2, 3):
        for subset in itertools.combinations(range(3), size):
            axes = [np.concatenate([[-np.inf], np.unique(conf[i]), [np.inf]]) for i in subset[:-1]]
            for thresholds in itertools.product(*axes):
                shares = answer_shares([conf[i] for i in subset], thresholds)
                pending = np.ones(200, bool)
                hits, cost = 0, 0.0
                correct = np.zeros(200, bool)
                for j, i in enumerate(subset):
                    cost += costs[i] * pending.sum()
                    answer = (
                        pending if j == len(subset) - 1 else pending & (conf[i] >= thresholds[j])
                    )
                    correct[answer] = right[i][answer]
                    pending &= ~answer
                hits = correct.sum()
                margin = 0.5 * np.sqrt((correct != best).sum()) / 200
                ok = hits / 200 - margin >= 0.98 * best.mean() - 1e-12 and (shares >= 0.1).all()
                if ok and (cheapest is None or cost / 200 < cheapest - 1e-9):
                    cheapest = cost / 200
    assert cheapest is not None and chosen.feasible
    # each subset's own cheapest setting is checked for the share rule, so the choice may
    # cost a little more than the brute-force optimum, never less
    assert chosen.tuning.point.cost >= cheapest - 1e-9
    assert chosen.tuning.point.cost <= 1.5 * cheapest


def test_selection_validation():
    conf, right, costs = three_stages()
    with pytest.raises(ValueError, match="min_share"):
        select_stages(conf, right, costs, min_share=1.5)
    with pytest.raises(ValueError, match="one entry per stage"):
        select_stages(conf, right[:2], costs)


def test_an_outside_reference_sets_the_target():
    conf, right, costs = three_stages()
    stronger = np.ones_like(right[2])  # a model right everywhere, not one of the stages
    chosen = select_stages(conf, right, costs, eps=0.0, reference=stronger)
    assert not chosen.feasible  # no cascade of these stages matches it
    easier = select_stages(conf, right, costs, eps=0.5, reference=stronger)
    assert easier.feasible and easier.tuning.point.accuracy >= 0.5 - 1e-12
    with pytest.raises(ValueError, match="reference"):
        select_stages(conf, right, costs, reference=stronger[:5])
