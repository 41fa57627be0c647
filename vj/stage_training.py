"""One cascade stage: boost weak learners until the stage meets its targets.

A stage keeps adding trees until, with its threshold set so that a share
``min_hit_rate`` of the *calibration* positives (held out from boosting) pass,
at most ``max_false_alarm`` of the training negatives pass too
(``opencv_traincascade``'s ``-minHitRate`` / ``-maxFalseAlarmRate``), or until
``max_weak`` trees.

The threshold is stored as OpenCV stores it: a window passes when its score
(the float64 sum of float32 leaf values) is at least ``float32(threshold) -
1e-5`` in float32 (:data:`vj.cascade.THRESHOLD_EPS`), so the rates measured
here are the detector's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .boosting import StageBooster, tree_values
from .cascade import THRESHOLD_EPS
from .feature_bins import FeatureBins, bin_feature_values
from .feature_eval import integral_stack, norm_factors_from_integrals
from .features import HaarFeatureSet
from .weak_learners import Tree

__all__ = ["StageGoal", "StageOutcome", "boost_stage", "passes", "stage_bins", "stage_scores",
           "stage_threshold"]


def passes(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Which scores pass a stage with stored ``threshold``, exactly as the detector decides."""
    eff = np.float32(np.float32(threshold) - THRESHOLD_EPS)
    return np.asarray(scores, np.float64) >= np.float64(eff)


def stage_threshold(scores: np.ndarray, min_hit_rate: float) -> np.float32:
    """The highest stored threshold that lets ``min_hit_rate`` of ``scores`` pass.

    The score of the ``ceil(min_hit_rate * n)``-th best positive, rounded down
    to float32; the detector subtracts its epsilon from it, which can only let
    more pass.
    """
    s = np.sort(np.asarray(scores, np.float64))[::-1]
    if s.size == 0:
        raise ValueError("no positives to set a stage threshold on")
    k = min(s.size, max(1, math.ceil(min_hit_rate * s.size - 1e-9)))
    t = np.float32(s[k - 1])
    if np.float64(t) > s[k - 1]:
        t = np.nextafter(t, np.float32(-np.inf))
    return t


@dataclass(frozen=True)
class StageGoal:
    """What a stage must reach (see the module notes)."""

    min_hit_rate: float = 0.995
    max_false_alarm: float = 0.5
    max_weak: int = 200


@dataclass
class StageOutcome:
    """Where a stage's boosting stopped."""

    threshold: np.float32
    hit_rate: float
    false_alarm: float
    n_weak: int


def stage_bins(
    features: HaarFeatureSet,
    feature_ids: np.ndarray,
    patches: np.ndarray,
    edge_sample: np.ndarray,
    *,
    n_bins: int = 256,
    progress: Callable[[int], None] | None = None,
) -> FeatureBins:
    """Quantised values of ``features[feature_ids]`` on ``patches`` (detector-exact floats)."""
    sub = features.subset(np.asarray(feature_ids))
    sums, sq, tilted = integral_stack(patches, tilted=sub.has_tilted)
    factors = norm_factors_from_integrals(sums, sq)[0]
    local_ids = np.arange(len(sub))

    def values(ids, out):
        return sub.evaluate_integrals(sums, tilted, factors, feature_index=ids, out=out,
                                      layout="features_major")

    fb = bin_feature_values(values, local_ids, len(patches), edge_sample, n_bins=n_bins,
                            progress=progress)
    # Rows stand for the pool's features, so trees can name them directly.
    return FeatureBins(fb.bins, fb.edges, feature_ids)


def boost_stage(
    booster: StageBooster,
    calib_rows: np.ndarray,
    neg_rows: np.ndarray,
    goal: StageGoal,
    *,
    on_round: Callable[[StageOutcome], None] | None = None,
) -> StageOutcome:
    """Add trees to ``booster`` until the stage meets ``goal`` (or has ``max_weak`` trees).

    A booster restored from a checkpoint continues where it stopped.
    """
    while True:
        if booster.trees:
            out = _outcome(booster, calib_rows, neg_rows, goal.min_hit_rate)
            if out.false_alarm <= goal.max_false_alarm or out.n_weak >= goal.max_weak:
                return out
        booster.step()
        if on_round is not None:
            on_round(_outcome(booster, calib_rows, neg_rows, goal.min_hit_rate))


def _outcome(booster: StageBooster, calib_rows, neg_rows, min_hit_rate) -> StageOutcome:
    thr = stage_threshold(booster.scores[calib_rows], min_hit_rate)
    return StageOutcome(
        threshold=thr,
        hit_rate=float(passes(booster.scores[calib_rows], thr).mean()),
        false_alarm=float(passes(booster.scores[neg_rows], thr).mean()),
        n_weak=len(booster.trees),
    )


def stage_scores(features: HaarFeatureSet, trees: list[Tree], patches: np.ndarray) -> np.ndarray:
    """Scores of a stage on windows, from their exact feature values.

    ``trees[i].feature_row`` are indices into ``features`` here.
    """
    if len(patches) == 0:
        return np.zeros(0)
    used = np.unique(np.concatenate([t.feature_row for t in trees]))
    column = np.full(len(features), -1, np.int64)
    column[used] = np.arange(used.size)
    values = features.evaluate(np.ascontiguousarray(patches), feature_index=used)
    return tree_values(trees, column, values)
