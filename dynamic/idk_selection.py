"""Which stages an IDK cascade keeps: every kept stage must answer a share of its inputs.

Threshold tuning alone can return a cascade with a useless stage: one that defers
nearly everything it sees (its confidence is never high enough where the cheaper stage
before it was unsure), so that it costs time on every input that reaches it and
answers almost none. :func:`select_stages` tunes the thresholds of every subset of the
stages (in their order, cheapest first) against the same reference model, and keeps
the cheapest setting in which every kept stage answers at least ``min_share`` of the
inputs that reach it. Stages left out are reported as dropped.

With ``K`` stages there are ``2**K - 1`` subsets; cascades have a handful of stages.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from vj_dynamic.idk_tuning import TuningResult, tune_thresholds

__all__ = ["StageSelection", "answer_shares", "select_stages"]


def answer_shares(confidences: Sequence[np.ndarray], thresholds: Sequence[float]) -> np.ndarray:
    """Share of the inputs reaching each stage that it answers, ``(K,)``.

    Stage ``k < K - 1`` answers where its confidence is ``>=`` its threshold; the last
    answers everything that reaches it. A stage that no input reaches has share 0.
    """
    conf = [np.asarray(c, dtype=np.float64) for c in confidences]
    if len(thresholds) != len(conf) - 1:
        raise ValueError(f"need {len(conf) - 1} thresholds, got {len(thresholds)}")
    pending = np.ones(conf[0].shape[0], dtype=bool)
    shares = np.zeros(len(conf))
    for k, c in enumerate(conf):
        reached = int(pending.sum())
        answer = pending if k == len(conf) - 1 else pending & (c >= thresholds[k])
        shares[k] = answer.sum() / reached if reached else 0.0
        pending &= ~answer
    return shares


@dataclass(frozen=True)
class StageSelection:
    """Outcome of :func:`select_stages`.

    Attributes
    ----------
    kept : tuple of int
        Indices of the stages kept, in order.
    dropped : tuple of int
        Indices of the stages left out.
    tuning : TuningResult
        The threshold tuning of the kept stages (thresholds of all but the last kept).
    shares : tuple of float
        Share of its inputs each kept stage answers on the tuning data.
    feasible : bool
        Whether the chosen setting meets both the accuracy target and the share rule.
    """

    kept: tuple[int, ...]
    dropped: tuple[int, ...]
    tuning: TuningResult
    shares: tuple[float, ...]
    feasible: bool


def _candidates(k: int):
    for size in range(1, k + 1):
        yield from itertools.combinations(range(k), size)


def select_stages(
    confidences: Sequence[np.ndarray],
    correct: Sequence[np.ndarray],
    costs: Sequence[float | np.ndarray],
    *,
    eps: float = 0.0,
    z: float = 0.0,
    min_share: float = 0.05,
    max_prefix_settings: int = 4096,
    reference: np.ndarray | None = None,
) -> StageSelection:
    """The cheapest cascade over any subset of stages in which every kept stage earns its place.

    Parameters
    ----------
    confidences, correct, costs
        Per-stage validation data, as for :func:`~vj_dynamic.idk_tuning.tune_thresholds`.
    eps, z : float, optional
        Accuracy target and safety margin, against the most accurate single stage of
        all (whether or not a subset contains it).
    min_share : float, optional
        Least share of the inputs reaching a kept stage that it must answer.
    max_prefix_settings : int, optional
        See :func:`~vj_dynamic.idk_tuning.tune_thresholds`.
    reference : (N,) bool array, optional
        Whether the model to match is right on each input, when it is not one of the
        stages (e.g. a dense network the cascade replaces); default: the most accurate
        stage.

    Returns
    -------
    StageSelection
        The cheapest feasible choice (ties: the more accurate); when none is feasible,
        the most accurate choice that meets the share rule (the best single stage alone
        always does; with an outside ``reference``, the most accurate stage alone).

    Notes
    -----
    Each subset is tuned for cost and accuracy first, then its chosen setting is
    checked against the share rule; a subset whose cheapest setting breaks the rule is
    left out (the subsets without the offending stage are tried too).
    """
    k = len(confidences)
    if k < 1 or len(correct) != k or len(costs) != k:
        raise ValueError("confidences, correct and costs need one entry per stage")
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"min_share must be in [0, 1], got {min_share}")
    right = [np.asarray(c, dtype=bool) for c in correct]
    if reference is None:
        reference = right[int(np.argmax([r.mean() for r in right]))]
    reference = np.asarray(reference, dtype=bool)
    if reference.shape != right[0].shape:
        raise ValueError(f"reference must have shape {right[0].shape}, got {reference.shape}")
    options = []
    for subset in _candidates(k):
        tuned = tune_thresholds(
            [confidences[i] for i in subset],
            [right[i] for i in subset],
            [costs[i] for i in subset],
            eps=eps,
            z=z,
            max_prefix_settings=max_prefix_settings,
            reference=reference,
        )
        shares = answer_shares([confidences[i] for i in subset], tuned.point.thresholds)
        if (shares >= min_share).all():
            options.append((subset, tuned, shares))
    feasible = [o for o in options if o[1].feasible]
    if feasible:
        subset, tuned, shares = min(feasible, key=lambda o: (o[1].point.cost, -o[1].point.accuracy))
    else:
        subset, tuned, shares = max(options, key=lambda o: (o[1].point.accuracy, -o[1].point.cost))
    dropped = tuple(i for i in range(k) if i not in subset)
    return StageSelection(
        tuple(subset), dropped, tuned, tuple(float(s) for s in shares), bool(feasible)
    )
