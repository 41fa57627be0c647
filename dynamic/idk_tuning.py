"""Choosing IDK cascade thresholds on validation data.

Every stage is run once on every validation input (its confidence and whether its
answer is right); any threshold setting can then be simulated exactly without running
a model again. The search is exhaustive: for every combination of thresholds of the
early stages (every observed confidence value, or quantiles when there are too many
combinations, plus "always answer" and "always defer"), every threshold of the last
deferring stage is swept exactly with one sort and a cumulative sum. That yields the
cost / accuracy frontier and the two operating points of the paper:

- :func:`tune_thresholds`: the cheapest setting with accuracy at least
  ``(1 - eps)`` times that of the best single model;
- :func:`tune_lagrangian`: the setting minimising ``error + lam * cost``.

Costs are per input, in any one unit (FLOPs or ms), a scalar per stage or one value per
validation input (for stages whose cost varies, like a SkipNet).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "OperatingPoint",
    "TuningResult",
    "cost_accuracy_frontier",
    "evaluate_thresholds",
    "plot_frontier",
    "simulate_cascade",
    "tune_lagrangian",
    "tune_thresholds",
]


@dataclass(frozen=True)
class OperatingPoint:
    """One threshold setting and how the cascade does with it.

    Attributes
    ----------
    thresholds : tuple of float
        Confidence thresholds of stages ``0 .. K-2`` (``-inf``: always answer,
        ``inf``: always defer).
    accuracy : float
        Fraction of inputs answered correctly.
    cost : float
        Mean cost per input.
    """

    thresholds: tuple[float, ...]
    accuracy: float
    cost: float


@dataclass(frozen=True)
class TuningResult:
    """Outcome of :func:`tune_thresholds`.

    Attributes
    ----------
    point : OperatingPoint
        The chosen setting.
    feasible : bool
        Whether it meets the accuracy constraint (if no setting does, ``point`` is the
        most accurate one).
    target_accuracy : float
        ``(1 - eps) * best_single_accuracy``.
    best_single_accuracy : float
        Accuracy of the most accurate stage used alone.
    best_single_stage : int
        Its index.
    discordant : int
        Validation inputs on which the chosen cascade and the best model are not both
        right or both wrong.
    """

    point: OperatingPoint
    feasible: bool
    target_accuracy: float
    best_single_accuracy: float
    best_single_stage: int
    discordant: int


def _prepare(confidences, correct, costs):
    k = len(confidences)
    if k < 1 or len(correct) != k or len(costs) != k:
        raise ValueError(
            "confidences, correct and costs need one entry per stage, got "
            f"{len(confidences)}, {len(correct)}, {len(costs)}"
        )
    conf = [np.asarray(c, dtype=np.float64) for c in confidences]
    n = conf[0].shape[0] if conf[0].ndim == 1 else -1
    if n < 1:
        raise ValueError("confidences must be non-empty 1-D arrays")
    right = [np.asarray(c, dtype=bool) for c in correct]
    cost = [np.broadcast_to(np.asarray(c, dtype=np.float64), (n,)) for c in costs]
    for name, arrays in (("confidences", conf), ("correct", right)):
        if any(a.shape != (n,) for a in arrays):
            raise ValueError(f"every entry of {name} must have shape ({n},)")
    if any((c < 0).any() or not np.isfinite(c).all() for c in cost):
        raise ValueError("costs must be finite and >= 0")
    return conf, right, cost


def evaluate_thresholds(
    confidences: Sequence[np.ndarray],
    correct: Sequence[np.ndarray],
    costs: Sequence[float | np.ndarray],
    thresholds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and mean cost of many threshold settings at once.

    Parameters
    ----------
    confidences : sequence of (N,) arrays
        Each stage's confidence on every validation input.
    correct : sequence of (N,) bool arrays
        Whether each stage's answer is right.
    costs : sequence of float or (N,) arrays
        Cost per input of each stage.
    thresholds : (M, K-1) array
        ``M`` settings; stage ``k`` answers when its confidence is ``>=`` its threshold.

    Returns
    -------
    accuracy, cost : (M,) arrays
    """
    conf, right, cost = _prepare(confidences, correct, costs)
    k, n = len(conf), conf[0].shape[0]
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1, k - 1)
    m = thresholds.shape[0]
    accuracy, total_cost = np.empty(m), np.empty(m)
    chunk = max(1, 2_000_000 // n)
    for lo in range(0, m, chunk):
        t = thresholds[lo : lo + chunk]
        pending = np.ones((t.shape[0], n), dtype=bool)
        hits = np.zeros(t.shape[0])
        spent = np.zeros(t.shape[0])
        for s in range(k):
            spent += pending @ cost[s]
            answer = pending if s == k - 1 else pending & (conf[s][None, :] >= t[:, s, None])
            hits += answer @ right[s].astype(np.float64)
            pending &= ~answer
        accuracy[lo : lo + chunk] = hits / n
        total_cost[lo : lo + chunk] = spent / n
    return accuracy, total_cost


def simulate_cascade(
    confidences: Sequence[np.ndarray],
    correct: Sequence[np.ndarray],
    costs: Sequence[float | np.ndarray],
    thresholds: Sequence[float],
) -> OperatingPoint:
    """Accuracy and mean cost of one threshold setting (see :func:`evaluate_thresholds`)."""
    accuracy, cost = evaluate_thresholds(confidences, correct, costs, np.asarray([thresholds]))
    return OperatingPoint(tuple(float(t) for t in thresholds), float(accuracy[0]), float(cost[0]))


def _prefix_axes(confidences: list[np.ndarray], max_prefix_settings: int) -> list[np.ndarray]:
    """Candidate thresholds of the stages before the last deferring one."""
    n_prefix = len(confidences) - 2
    if n_prefix <= 0:
        return []
    per_stage = max(2, int(max_prefix_settings ** (1.0 / n_prefix)))
    axes = []
    for c in confidences[:n_prefix]:
        values = np.unique(c)
        if values.size > per_stage:
            values = np.unique(np.quantile(c, np.linspace(0.0, 1.0, per_stage)))
        # ">=" keeps an input whose confidence equals the threshold answering; the two
        # extremes are "always answer" and "always defer".
        axes.append(np.concatenate([[-np.inf], values, [np.inf]]))
    return axes


def _sweep_last_deferring(conf, right, cost, ref: np.ndarray, prefix: np.ndarray):
    """Every threshold of stage ``K-2``, exactly, for fixed thresholds ``prefix`` before it.

    The inputs reaching stage ``K-2`` are fixed by ``prefix``; sorted by that stage's
    confidence, answering the ``j`` surest is one cumulative sum away for every ``j``.
    """
    k, n = len(conf), conf[0].shape[0]
    pending = np.ones(n, dtype=bool)
    hits = spent = disagree = 0.0
    for s, t in enumerate(prefix):
        spent += cost[s][pending].sum()
        answer = pending & (conf[s] >= t)
        hits += right[s][answer].sum()
        disagree += (right[s][answer] != ref[answer]).sum()
        pending &= ~answer
    s = k - 2
    idx = np.flatnonzero(pending)
    spent += cost[s][idx].sum()
    order = idx[np.argsort(-conf[s][idx], kind="stable")]
    c_sorted = conf[s][order]
    # gain of answering at stage s instead of deferring to the last stage, cumulated
    gain = right[s][order].astype(np.float64) - right[k - 1][order]
    d_hits = np.concatenate([[0.0], np.cumsum(gain)])
    d_cost = np.concatenate([[0.0], np.cumsum(-cost[k - 1][order])])
    flips = (right[s][order] != ref[order]).astype(np.float64) - (right[k - 1][order] != ref[order])
    d_disagree = np.concatenate([[0.0], np.cumsum(flips)])
    # only cut between distinct confidences: thresholds are values, ties answer together
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(c_sorted) != 0) + 1, [order.size]])
    thresholds = np.concatenate([[np.inf], c_sorted[cuts[1:] - 1]]) if order.size else [np.inf]
    cuts = cuts if order.size else np.array([0])
    base_hits = hits + right[k - 1][idx].sum()
    base_cost = spent + cost[k - 1][idx].sum()
    base_disagree = disagree + (right[k - 1][idx] != ref[idx]).sum()
    accuracy = (base_hits + d_hits[cuts]) / n
    mean_cost = (base_cost + d_cost[cuts]) / n
    discordant = base_disagree + d_disagree[cuts]
    if order.size:  # answering everything is "always answer", whatever the values
        thresholds[-1] = -np.inf
    grid = np.column_stack([np.tile(prefix, (len(cuts), 1)), thresholds])
    return grid, accuracy, mean_cost, discordant


def _all_points(confidences, correct, costs, max_prefix_settings, reference=None):
    """Every candidate setting with its accuracy, mean cost, and discordant count.

    The discordant count is the number of inputs on which the cascade and the
    reference (``reference``: whether it is right on each input; by default the most
    accurate single stage) are not both right or both wrong.
    """
    if max_prefix_settings < 1:
        raise ValueError(f"max_prefix_settings must be >= 1, got {max_prefix_settings}")
    conf, right, cost = _prepare(confidences, correct, costs)
    if reference is None:
        reference = right[int(np.argmax([r.mean() for r in right]))]
    ref = np.asarray(reference, dtype=bool)
    if ref.shape != right[0].shape:
        raise ValueError(f"reference must have shape {right[0].shape}, got {ref.shape}")
    if len(conf) == 1:
        one = np.array([right[0].mean()]), np.array([cost[0].mean()])
        return (np.zeros((1, 0)), *one, np.array([float((right[0] != ref).sum())]), right)
    axes = _prefix_axes(conf, max_prefix_settings)
    prefixes = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], 1) if axes else [()]
    parts = [_sweep_last_deferring(conf, right, cost, ref, np.asarray(p)) for p in prefixes]
    grid, accuracy, mean_cost, discordant = (np.concatenate(x) for x in zip(*parts, strict=True))
    return grid, accuracy, mean_cost, discordant, right


def _point(grid: np.ndarray, accuracy: np.ndarray, cost: np.ndarray, i: int) -> OperatingPoint:
    return OperatingPoint(tuple(float(t) for t in grid[i]), float(accuracy[i]), float(cost[i]))


def tune_thresholds(
    confidences: Sequence[np.ndarray],
    correct: Sequence[np.ndarray],
    costs: Sequence[float | np.ndarray],
    *,
    eps: float = 0.0,
    z: float = 0.0,
    max_prefix_settings: int = 4096,
    reference: np.ndarray | None = None,
) -> TuningResult:
    """Cheapest thresholds whose accuracy is at least ``(1 - eps)`` x the best single model's.

    Parameters
    ----------
    confidences, correct, costs
        Per-stage validation data; see :func:`evaluate_thresholds`.
    eps : float, optional
        Allowed relative accuracy loss, in ``[0, 1)``.
    z : float, optional
        Safety margin against over-fitting the validation set, in standard errors: the
        constraint becomes ``accuracy - z * sqrt(d) / N >= (1 - eps) * best``, where
        ``d`` counts the inputs on which the cascade and the best model disagree in
        correctness (the paired, McNemar-style standard error of their accuracy
        difference is ``sqrt(d) / N``). ``0`` is the plain constraint of the paper;
        ``1.645`` asks for one-sided 95 % confidence. Useful when the cheapest setting
        would otherwise exploit a few lucky validation answers.
    max_prefix_settings : int, optional
        Cap on the threshold combinations tried for the stages before the last deferring
        one (every observed confidence while it fits, quantiles beyond).
    reference : (N,) bool array, optional
        Whether the model to match is right on each input, when it is not one of these
        stages (a subset of a larger cascade, :mod:`vj_dynamic.idk_selection`): the
        target is then ``(1 - eps)`` times its accuracy, and the margin counts
        disagreements with it.

    Returns
    -------
    TuningResult
        Ties in cost are broken by higher accuracy. ``best_single_accuracy`` and
        ``best_single_stage`` describe these stages alone.
    """
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    if z < 0:
        raise ValueError(f"z must be >= 0, got {z}")
    grid, accuracy, cost, discordant, right = _all_points(
        confidences, correct, costs, max_prefix_settings, reference
    )
    singles = np.array([r.mean() for r in right])
    best_stage = int(singles.argmax())
    reference_accuracy = singles[best_stage] if reference is None else np.mean(reference)
    target = (1.0 - eps) * float(reference_accuracy)
    n = len(right[0])
    # A small tolerance so that "as accurate as the best model" is not lost to rounding.
    feasible = accuracy - z * np.sqrt(discordant) / n >= target - 1e-12
    if feasible.any():
        candidates = np.flatnonzero(feasible)
        i = candidates[np.lexsort((-accuracy[candidates], cost[candidates]))[0]]
    else:
        i = int(np.lexsort((cost, -accuracy))[0])
    return TuningResult(
        _point(grid, accuracy, cost, i),
        bool(feasible.any()),
        target,
        float(singles[best_stage]),
        best_stage,
        int(discordant[i]),
    )


def tune_lagrangian(
    confidences: Sequence[np.ndarray],
    correct: Sequence[np.ndarray],
    costs: Sequence[float | np.ndarray],
    *,
    lam: float,
    max_prefix_settings: int = 4096,
) -> OperatingPoint:
    """Thresholds minimising the cost-aware objective ``(1 - accuracy) + lam * cost``.

    ``lam`` is the price of one unit of cost (e.g. per FLOP) in units of error rate.
    """
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    grid, accuracy, cost, _, _ = _all_points(confidences, correct, costs, max_prefix_settings)
    objective = (1.0 - accuracy) + lam * cost
    i = int(np.lexsort((cost, objective))[0])
    return _point(grid, accuracy, cost, i)


def cost_accuracy_frontier(
    confidences: Sequence[np.ndarray],
    correct: Sequence[np.ndarray],
    costs: Sequence[float | np.ndarray],
    *,
    max_prefix_settings: int = 4096,
) -> list[OperatingPoint]:
    """The Pareto frontier: settings no other setting beats on both cost and accuracy.

    Returns
    -------
    list of OperatingPoint
        Sorted by increasing cost (and strictly increasing accuracy).
    """
    grid, accuracy, cost, _, _ = _all_points(confidences, correct, costs, max_prefix_settings)
    order = np.lexsort((-accuracy, cost))
    frontier, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            frontier.append(_point(grid, accuracy, cost, i))
            best = accuracy[i]
    return frontier


def plot_frontier(
    frontier: Sequence[OperatingPoint],
    path: str | Path,
    *,
    singles: Sequence[tuple[str, float, float]] = (),
    chosen: OperatingPoint | None = None,
    cost_unit: str = "FLOPs",
) -> Path:
    """Save a plot of the cost / accuracy frontier.

    Parameters
    ----------
    frontier : sequence of OperatingPoint
        From :func:`cost_accuracy_frontier`.
    path : path
        Image file to write (format from the suffix).
    singles : sequence of (name, cost, accuracy), optional
        Single models to mark for comparison.
    chosen : OperatingPoint, optional
        The selected setting, highlighted.
    cost_unit : str, optional
        Axis label.

    Returns
    -------
    Path
        Where the figure was written.
    """
    if not frontier:
        raise ValueError("frontier is empty")
    # The object API with an explicit Agg canvas leaves pyplot's global state alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.step(
        [p.cost for p in frontier],
        [p.accuracy for p in frontier],
        where="post",
        marker=".",
        label="IDK cascade frontier",
    )
    for name, cost, accuracy in singles:
        ax.plot([cost], [accuracy], "s", label=name)
    if chosen is not None:
        ax.plot([chosen.cost], [chosen.accuracy], "r*", markersize=12, label="chosen")
    ax.set_xscale("log")
    # Over less than a decade matplotlib labels every minor tick, and they overlap.
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"mean cost per input ({cost_unit})")
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
