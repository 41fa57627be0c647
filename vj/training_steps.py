"""One stage of cascade training, step by step (steps 1-5 of :mod:`vj.training`).

:func:`train_stage` reads as the algorithm: mine negatives, draw the stage's
sample, quantise the features, boost, drop the positives the stage rejects.
Each step is a small function below; the run's state and checkpoints are
:mod:`vj.training`'s, the time each phase takes and the progress bars
:mod:`vj.training_progress`'s.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .boosting import StageBooster
from .feature_bins import FeatureBins
from .features import HaarFeatureSet
from .negatives import MiningState, mine_negatives
from .stage_training import StageGoal, StageOutcome, boost_stage, passes, stage_bins, stage_scores
from .weak_learners import Tree

if TYPE_CHECKING:
    from .training import _Run

__all__ = ["drop_rejected", "train_stage"]

# Purposes of the seeded generators (``run.rng``); 1-3 are vj.negatives'.
_RNG_POSITIVES, _RNG_FEATURES, _RNG_EDGES = 4, 5, 6


def train_stage(run: _Run, features: HaarFeatureSet) -> None:
    """Train stage ``run.stage`` by steps 1-5 of :mod:`vj.training`, and append it to ``run``.

    Sets ``run.stop_reason`` instead when the backgrounds run out of negatives.
    The run is checkpointed as the steps go (the search and boosting resume).
    """
    progress = run.progress
    with progress.phase("mining"):
        negatives, mining, exhausted = _mine_negatives(run, features)
    if exhausted:
        _stop_for_lack_of_negatives(run, negatives, mining)
        return
    sample = _StageSample.draw(run, negatives)
    with progress.phase("features"):
        bins = _quantise(run, features, sample)
    with progress.phase("boost"):
        trees, outcome = _boost(run, bins, sample)
    threshold = float(outcome.threshold)
    drop_rejected(run.train_alive, run.positives.train, features, trees, threshold)
    drop_rejected(run.calib_alive, run.positives.calibration, features, trees, threshold)
    row = _stage_row(run, outcome, mining, sample, bins)
    _add_stage(run, trees, threshold, row)


def drop_rejected(alive: np.ndarray, patches: np.ndarray, features: HaarFeatureSet,
                  trees: list[Tree], threshold: float) -> None:
    """Clear ``alive`` where the stage ``(trees, threshold)`` rejects a live one of ``patches``.

    ``trees[i].feature_row`` index ``features``.
    """
    idx = np.nonzero(alive)[0]
    alive[idx[~passes(stage_scores(features, trees, patches[idx]), threshold)]] = False


def _mine_negatives(run: _Run, features: HaarFeatureSet
                    ) -> tuple[np.ndarray, MiningState, bool]:
    """Step 1: ``num_neg`` background windows the cascade so far accepts.

    Continues a search saved in a checkpoint, and checkpoints as it goes.
    Returns the windows, the search's state and whether the backgrounds ran out.
    """
    cfg = run.config
    cascade = run.cascade_so_far(features)
    # The share of windows the cascade accepts, so the search can size its scans.
    hint = min(1.0, max(run.rows[-1]["cum_false_alarm"], 1e-12)) if run.rows else 1.0
    found = run.mining.found if run.mining else 0
    with run.progress.bar(f"stage {run.stage} negatives", cfg.num_neg, "win",
                          initial=found) as bar:

        def on_job(state: MiningState) -> None:
            bar.update(state.found - bar.n)
            bar.set_postfix(windows=state.windows, refresh=False)

        def on_checkpoint(state: MiningState) -> None:
            run.mining = state
            run.save()

        negatives, state, exhausted = mine_negatives(
            run.pool, cascade, cfg.num_neg, seed=cfg.seed, stage=run.stage, state=run.mining,
            acceptance_hint=hint, checkpoint=on_checkpoint,
            checkpoint_every_s=cfg.checkpoint_every_s, progress=on_job, jobs=run.mining_jobs)
    run.mining = state
    return negatives, state, exhausted


def _stop_for_lack_of_negatives(run: _Run, negatives: np.ndarray, mining: MiningState) -> None:
    """End training: the backgrounds hold fewer than ``num_neg`` windows the cascade accepts."""
    run.stop_reason = (
        f"backgrounds exhausted at stage {run.stage}: the cascade accepts only "
        f"{len(negatives)} of the {mining.windows:,} background windows scanned "
        f"(needed {run.config.num_neg})")
    run.mining = None
    run.booster_state = None


@dataclass
class _StageSample:
    """The windows a stage is trained on: training positives, calibration positives, negatives.

    The calibration positives set the stage threshold and are held out from boosting.
    """

    patches: np.ndarray  # (n, h, w) uint8, in that order
    n_train: int
    n_calib: int

    @classmethod
    def draw(cls, run: _Run, negatives: np.ndarray) -> _StageSample:
        """Step 2: the positives the cascade so far accepts, then ``negatives``.

        Of the training positives, a seeded choice of ``num_pos`` when more survive.
        """
        cfg = run.config
        train_idx = np.nonzero(run.train_alive)[0]
        if cfg.num_pos and train_idx.size > cfg.num_pos:
            train_idx = np.sort(run.rng(_RNG_POSITIVES).choice(train_idx, cfg.num_pos,
                                                               replace=False))
        calib_idx = np.nonzero(run.calib_alive)[0]
        pos_t, pos_c = run.positives.train[train_idx], run.positives.calibration[calib_idx]
        return cls(np.concatenate([pos_t, pos_c, negatives]), len(pos_t), len(pos_c))

    @property
    def n_pos(self) -> int:
        """Positives in the sample (training and calibration)."""
        return self.n_train + self.n_calib

    @property
    def labels(self) -> np.ndarray:
        """+1 for the positives, -1 for the negatives."""
        return np.concatenate([np.ones(self.n_pos), -np.ones(len(self.patches) - self.n_pos)])

    @property
    def train_rows(self) -> np.ndarray:
        """The rows boosting fits: training positives and negatives."""
        return np.r_[0:self.n_train, self.n_pos:len(self.patches)]

    @property
    def calib_rows(self) -> np.ndarray:
        """The rows that set the stage threshold: calibration positives."""
        return np.arange(self.n_train, self.n_pos)

    @property
    def neg_rows(self) -> np.ndarray:
        """The rows of the negatives."""
        return np.arange(self.n_pos, len(self.patches))


def _quantise(run: _Run, features: HaarFeatureSet, sample: _StageSample) -> FeatureBins:
    """Step 3: the binned values of the features (a seeded ``feature_fraction`` of them)."""
    cfg = run.config
    n_feat, n = len(features), len(sample.patches)
    if cfg.feature_fraction < 1:
        k = max(1, int(round(cfg.feature_fraction * n_feat)))
        feature_ids = np.sort(run.rng(_RNG_FEATURES).choice(n_feat, k, replace=False))
    else:
        feature_ids = np.arange(n_feat)
    edge_sample = np.sort(run.rng(_RNG_EDGES).choice(n, min(n, cfg.edge_samples),
                                                     replace=False))
    with run.progress.bar(f"stage {run.stage} features", feature_ids.size, "feat") as bar:
        return stage_bins(features, feature_ids, sample.patches, edge_sample,
                          n_bins=cfg.n_bins, progress=bar.update)


def _boost(run: _Run, bins: FeatureBins, sample: _StageSample
           ) -> tuple[list[Tree], StageOutcome]:
    """Step 4: boost trees until the stage meets its goal.

    Continues a booster saved in a checkpoint, and checkpoints every
    ``checkpoint_every_s`` seconds. Returns the trees, in Haar feature ids, and
    where boosting stopped (threshold, rates).
    """
    cfg = run.config
    booster = StageBooster(bins, sample.labels, sample.train_rows, boosting=cfg.boosting,
                           max_depth=cfg.max_depth, trim_rate=cfg.weight_trim_rate)
    if run.booster_state is not None:
        booster.restore(run.booster_state)
    goal = StageGoal(cfg.min_hit_rate, cfg.max_false_alarm, cfg.max_weak)
    last_save = time.monotonic()
    with run.progress.bar(f"stage {run.stage} boosting", cfg.max_weak, "weak",
                          initial=len(booster.trees)) as bar:

        def on_round(out: StageOutcome) -> None:
            nonlocal last_save
            bar.update(1)
            bar.set_postfix(hit=f"{out.hit_rate:.4f}", fa=f"{out.false_alarm:.3f}",
                            refresh=False)
            if time.monotonic() - last_save > cfg.checkpoint_every_s:
                run.booster_state = booster.state()
                run.save()
                last_save = time.monotonic()

        outcome = boost_stage(booster, sample.calib_rows, sample.neg_rows, goal,
                              on_round=on_round)
    trees = [Tree(bins.feature_ids[t.feature_row], t.split_bin, t.threshold, t.left, t.right,
                  t.leaves) for t in booster.trees]
    return trees, outcome


def _stage_row(run: _Run, outcome: StageOutcome, mining: MiningState, sample: _StageSample,
               bins: FeatureBins) -> dict:
    """The stage's report row (:mod:`vj.training_report`), once its positives are pruned."""
    accept = mining.accepted / max(mining.windows, 1)
    return {
        "stage": run.stage,
        "n_weak": outcome.n_weak,
        "hit_rate": round(outcome.hit_rate, 5),
        "false_alarm": round(outcome.false_alarm, 5),
        "cum_hit_rate": round(float(run.calib_alive.mean()), 5),
        "acceptance": accept,
        "cum_false_alarm": accept * outcome.false_alarm,
        "negatives": int(len(sample.patches) - sample.n_pos),
        "windows_scanned": int(mining.windows),
        "positives": int(sample.n_train),
        "features": int(bins.feature_ids.size),
        **run.progress.stage_times(),
    }


def _add_stage(run: _Run, trees: list[Tree], threshold: float, row: dict) -> None:
    """Step 5: append the stage; stop if the false-alarm estimate broke down."""
    run.stages.append((trees, threshold))
    run.rows.append(row)
    run.mining = None
    run.booster_state = None
    run.progress.next_stage()
    if not math.isfinite(row["cum_false_alarm"]):
        run.stop_reason = "false-alarm estimate is not finite"
