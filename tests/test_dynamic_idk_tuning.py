"""Threshold tuning on synthetic validation data: constraint met, cheapest, frontier sound."""

import itertools

import numpy as np
import pytest
from vj_dynamic.idk_tuning import (
    cost_accuracy_frontier,
    evaluate_thresholds,
    plot_frontier,
    simulate_cascade,
    tune_lagrangian,
    tune_thresholds,
)


@pytest.fixture(scope="module")
def synthetic():
    """Three stages; cheaper ones are less accurate, and surer when they are right."""
    rng = np.random.default_rng(0)
    n = 600
    difficulty = rng.random(n)
    confidences, correct = [], []
    for skill in (0.55, 0.8, 0.97):
        noise = rng.normal(0, 0.1, n)
        right = rng.random(n) < skill + (1 - skill) * (1 - difficulty)
        confidences.append(np.clip(1 - difficulty + noise + 0.2 * right, 0, 1))
        correct.append(right)
    costs = [1.0, 20.0, 400.0]
    return confidences, correct, costs


def naive_simulation(confidences, correct, costs, thresholds):
    """One input at a time, the obvious way."""
    n, k = len(correct[0]), len(correct)
    hits = spent = 0.0
    for i in range(n):
        for s in range(k):
            spent += costs[s][i] if np.ndim(costs[s]) else costs[s]
            if s == k - 1 or confidences[s][i] >= thresholds[s]:
                hits += correct[s][i]
                break
    return hits / n, spent / n


def test_vectorised_simulation_matches_naive(synthetic):
    confidences, correct, costs = synthetic
    per_input = [np.full(600, 1.0), np.linspace(10, 30, 600), 400.0]
    rng = np.random.default_rng(1)
    settings = rng.random((20, 2))
    settings[0] = [-np.inf, np.inf]
    accuracy, cost = evaluate_thresholds(confidences, correct, per_input, settings)
    for t, a, c in zip(settings, accuracy, cost, strict=True):
        na, nc = naive_simulation(confidences, correct, per_input, t)
        assert a == pytest.approx(na) and c == pytest.approx(nc)


@pytest.mark.parametrize("eps", [0.0, 0.01, 0.05])
def test_tuning_meets_the_constraint_at_least_cost(synthetic, eps):
    confidences, correct, costs = synthetic
    result = tune_thresholds(confidences, correct, costs, eps=eps)
    best_single = max(c.mean() for c in correct)
    assert result.best_single_accuracy == pytest.approx(best_single)
    assert result.best_single_stage == 2
    assert result.feasible
    assert result.point.accuracy >= (1 - eps) * best_single - 1e-12
    assert result.point.cost < costs[2]  # cheaper than always running the best model
    check = simulate_cascade(confidences, correct, costs, result.point.thresholds)
    assert check.accuracy == pytest.approx(result.point.accuracy)
    assert check.cost == pytest.approx(result.point.cost)
    # no setting of a brute-force grid over observed values is feasible and cheaper
    grid = np.array(list(itertools.product(*[np.unique(c)[::5] for c in confidences[:2]])))
    accuracy, cost = evaluate_thresholds(confidences, correct, costs, grid)
    feasible = accuracy >= (1 - eps) * best_single - 1e-12
    assert cost[feasible].min() >= result.point.cost - 1e-9


def test_looser_constraint_is_never_more_expensive(synthetic):
    confidences, correct, costs = synthetic
    costs_by_eps = [
        tune_thresholds(confidences, correct, costs, eps=e).point.cost
        for e in (0.0, 0.02, 0.1, 0.3)
    ]
    assert costs_by_eps == sorted(costs_by_eps, reverse=True)
    assert costs_by_eps[-1] < costs_by_eps[0]


def test_best_model_in_the_middle(synthetic):
    confidences, correct, costs = synthetic
    # a useless last stage: the cascade must stop before it, as good as stage 1 alone
    broken = [correct[0], correct[2], np.zeros(600, bool)]
    result = tune_thresholds(confidences, broken, costs)
    assert result.best_single_stage == 1
    assert result.feasible and result.point.accuracy >= broken[1].mean()
    assert result.point.thresholds[1] == -np.inf
    assert result.point.cost <= costs[0] + costs[1]


def test_frontier_and_lagrangian(synthetic, tmp_path):
    confidences, correct, costs = synthetic
    frontier = cost_accuracy_frontier(confidences, correct, costs)
    assert len(frontier) > 3
    pairs = zip(frontier, frontier[1:], strict=False)
    assert all(b.cost >= a.cost and b.accuracy > a.accuracy for a, b in pairs)
    free = tune_lagrangian(confidences, correct, costs, lam=0.0)
    assert free.accuracy == pytest.approx(frontier[-1].accuracy)
    stingy = tune_lagrangian(confidences, correct, costs, lam=1.0)
    assert stingy.cost == pytest.approx(1.0)  # only the first stage runs
    middle = tune_lagrangian(confidences, correct, costs, lam=1e-4)
    assert stingy.cost <= middle.cost <= free.cost
    path = plot_frontier(
        frontier, tmp_path / "frontier.png", singles=[("big", 400.0, 0.97)], chosen=middle
    )
    assert path.stat().st_size > 1000


def test_bad_tuning_inputs(synthetic):
    confidences, correct, costs = synthetic
    with pytest.raises(ValueError, match="eps"):
        tune_thresholds(confidences, correct, costs, eps=1.0)
    with pytest.raises(ValueError, match="one entry per stage"):
        tune_thresholds(confidences[:2], correct, costs)
    with pytest.raises(ValueError, match="shape"):
        tune_thresholds([c[:10] for c in confidences[:2]] + [confidences[2]], correct, costs)
    with pytest.raises(ValueError, match="costs"):
        tune_thresholds(confidences, correct, [1.0, -2.0, 3.0])
    with pytest.raises(ValueError, match="lam"):
        tune_lagrangian(confidences, correct, costs, lam=-1)
    with pytest.raises(ValueError, match="empty"):
        plot_frontier([], "x.png")


def test_search_is_exact_with_tied_confidences_and_per_input_costs():
    rng = np.random.default_rng(3)
    n = 80
    confidences = [rng.random(n).round(1) for _ in range(3)]  # many ties
    correct = [rng.random(n) < p for p in (0.6, 0.8, 0.95)]
    costs = [1.0, rng.uniform(5, 15, n), 100.0]
    axes = [np.concatenate([[-np.inf], np.unique(c), [np.inf]]) for c in confidences[:2]]
    grid = np.array(list(itertools.product(*axes)))
    accuracy, cost = evaluate_thresholds(confidences, correct, costs, grid)
    for eps in (0.0, 0.02, 0.1):
        result = tune_thresholds(confidences, correct, costs, eps=eps)
        feasible = accuracy >= result.target_accuracy - 1e-12
        assert result.point.cost == pytest.approx(cost[feasible].min())
        check = simulate_cascade(confidences, correct, costs, result.point.thresholds)
        assert check.accuracy == pytest.approx(result.point.accuracy)
        assert check.cost == pytest.approx(result.point.cost)
    frontier = cost_accuracy_frontier(confidences, correct, costs)
    for a, c in zip(accuracy, cost, strict=True):  # the frontier dominates every setting
        assert any(p.cost <= c + 1e-9 and p.accuracy >= a - 1e-12 for p in frontier)


def naive_discordant(confidences, correct, thresholds, reference):
    """Inputs on which the cascade and stage ``reference`` differ in correctness."""
    k, count = len(correct), 0
    for i in range(len(correct[0])):
        for s in range(k):
            if s == k - 1 or confidences[s][i] >= thresholds[s]:
                count += correct[s][i] != correct[reference][i]
                break
    return count


def test_safety_margin_is_exact_and_conservative():
    rng = np.random.default_rng(4)
    n = 60
    confidences = [rng.random(n).round(1) for _ in range(3)]
    correct = [rng.random(n) < p for p in (0.7, 0.85, 0.95)]
    costs = [1.0, 10.0, 100.0]
    reference = int(np.argmax([c.mean() for c in correct]))
    axes = [np.concatenate([[-np.inf], np.unique(c), [np.inf]]) for c in confidences[:2]]
    grid = list(itertools.product(*axes))
    accuracy, cost = evaluate_thresholds(confidences, correct, costs, np.array(grid))
    discordant = np.array([naive_discordant(confidences, correct, t, reference) for t in grid])
    plain = tune_thresholds(confidences, correct, costs, eps=0.05)
    for z in (0.0, 1.0, 1.645):
        result = tune_thresholds(confidences, correct, costs, eps=0.05, z=z)
        feasible = accuracy - z * np.sqrt(discordant) / n >= result.target_accuracy - 1e-12
        assert result.feasible
        assert result.point.cost == pytest.approx(cost[feasible].min())
        t = result.point.thresholds
        assert result.discordant == naive_discordant(confidences, correct, t, reference)
        margin = result.point.accuracy - z * np.sqrt(result.discordant) / n
        assert margin >= result.target_accuracy - 1e-12
        assert result.point.cost >= plain.point.cost
    with pytest.raises(ValueError, match="z"):
        tune_thresholds(confidences, correct, costs, z=-1.0)
