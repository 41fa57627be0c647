"""Train a cascade stage by stage, with hard-negative bootstrapping, resumably.

For each stage (Viola and Jones, 2001; ``opencv_traincascade``):

1. find ``num_neg`` background windows the cascade so far accepts
   (:mod:`vj.negatives`); if the backgrounds run out, stop;
2. take up to ``num_pos`` training positives the cascade so far accepts, plus
   the surviving calibration positives;
3. quantise the Haar features (optionally a seeded random share of them) on all
   these windows (:mod:`vj.feature_bins`);
4. boost trees until the stage passes ``min_hit_rate`` of the calibration
   positives and at most ``max_false_alarm`` of the negatives
   (:mod:`vj.stage_training`);
5. drop the positives the new stage rejects, and stop once the estimated
   false-alarm rate of the whole cascade is below the overall target.

Everything random is drawn from generators seeded by ``(seed, stage, purpose)``,
and the state is checkpointed atomically after every stage and every
``checkpoint_every_s`` seconds within one (mid-search and mid-boosting): a run
killed at any moment and started again ends with the same cascade as an
uninterrupted run with the same seed.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .boosting import BOOSTING_TYPES, StageBooster, trees_from_arrays, trees_to_arrays
from .cascade import Cascade
from .features import FEATURE_MODES, HaarFeatureSet
from .negatives import BackgroundPool, MiningState, mine_negatives
from .positives import PositiveSplit
from .stage_training import StageGoal, boost_stage, passes, stage_bins, stage_scores
from .training_checkpoint import load_checkpoint, save_checkpoint
from .weak_learners import Tree

__all__ = ["CHECKPOINT_NAME", "TrainingConfig", "TrainingResult", "cascade_from_stages",
           "train_cascade"]

CHECKPOINT_NAME = "checkpoint.npz"


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of a cascade training run (names follow ``opencv_traincascade``).

    Parameters
    ----------
    window : (int, int)
        ``-w``, ``-h``.
    n_stages : int
        ``-numStages``: most stages to train.
    min_hit_rate, max_false_alarm : float
        ``-minHitRate``, ``-maxFalseAlarmRate``: per-stage targets.
    target_false_alarm : float, optional
        Stop once the cascade's estimated false-alarm rate on background windows
        is at most this; default ``max_false_alarm ** n_stages``.
    num_pos, num_neg : int
        ``-numPos``, ``-numNeg``: positives and negatives per stage (``num_pos``
        caps the surviving training positives; 0 takes them all).
    mode : {"BASIC", "CORE", "ALL"}
        ``-mode``: the Haar feature pool.
    boosting : {"gentle", "discrete"}
        ``-bt GAB`` / ``-bt DAB``.
    max_depth : int
        ``-maxDepth``: 1 for stumps.
    max_weak : int
        ``-maxWeakCount``.
    weight_trim_rate : float
        ``-weightTrimRate``.
    feature_fraction : float
        Share of the feature pool each stage draws at random (1: all); trades a
        little accuracy for a proportional speed-up.
    n_bins : int
        Quantisation bins per feature.
    edge_samples : int
        Windows the bin edges are estimated from.
    scale_factor : float
        Pyramid step of the background scan jobs.
    seed : int
    checkpoint_every_s : float
        Checkpoint interval within a stage.
    """

    window: tuple[int, int] = (24, 24)
    n_stages: int = 20
    min_hit_rate: float = 0.995
    max_false_alarm: float = 0.5
    target_false_alarm: float | None = None
    num_pos: int = 0
    num_neg: int = 5000
    mode: str = "BASIC"
    boosting: str = "gentle"
    max_depth: int = 1
    max_weak: int = 200
    weight_trim_rate: float = 0.95
    feature_fraction: float = 1.0
    n_bins: int = 256
    edge_samples: int = 1024
    scale_factor: float = 1.1
    seed: int = 0
    checkpoint_every_s: float = 120.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", (int(self.window[0]), int(self.window[1])))
        checks = [
            (self.n_stages >= 1, "n_stages must be >= 1"),
            (0 < self.min_hit_rate <= 1, "min_hit_rate must be in (0, 1]"),
            (0 < self.max_false_alarm < 1, "max_false_alarm must be in (0, 1)"),
            (self.num_pos >= 0, "num_pos must be >= 0"),
            (self.num_neg >= 1, "num_neg must be >= 1"),
            (self.mode in FEATURE_MODES, f"mode must be one of {FEATURE_MODES}"),
            (self.boosting in BOOSTING_TYPES, f"boosting must be one of {BOOSTING_TYPES}"),
            (self.max_depth >= 1, "max_depth must be >= 1"),
            (self.max_weak >= 1, "max_weak must be >= 1"),
            (0 < self.weight_trim_rate <= 1, "weight_trim_rate must be in (0, 1]"),
            (0 < self.feature_fraction <= 1, "feature_fraction must be in (0, 1]"),
            (self.edge_samples >= 2, "edge_samples must be >= 2"),
            (self.scale_factor > 1, "scale_factor must be > 1"),
            (min(self.window) >= 3, "window must be at least 3x3"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"{msg} (config: {self})")

    @property
    def overall_target(self) -> float:
        if self.target_false_alarm is not None:
            return float(self.target_false_alarm)
        return float(self.max_false_alarm) ** self.n_stages

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["window"] = list(self.window)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingConfig:
        return cls(**{**d, "window": tuple(d["window"])})


@dataclass
class TrainingResult:
    """A trained cascade and how it was trained.

    Attributes
    ----------
    cascade : Cascade or None
        None when not even one stage could be trained.
    stages : list of dict
        Per-stage report rows (see :mod:`vj.training_report`).
    stop_reason : str
    info : dict
        Positives, backgrounds, config, total time.
    """

    cascade: Cascade | None
    stages: list[dict]
    stop_reason: str
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------- cascade


def cascade_from_stages(
    features: HaarFeatureSet, stages: list[tuple[list[Tree], float]], metadata: dict | None = None
) -> Cascade:
    """A cascade from stages of trees whose ``feature_row`` index ``features``.

    Only the features the trees use are kept (renumbered).
    """
    trees = [t for ts, _ in stages for t in ts]
    full = Cascade(
        features=features,
        node_feature=np.concatenate([t.feature_row for t in trees]),
        node_threshold=np.concatenate([t.threshold for t in trees]),
        node_left=np.concatenate([t.left for t in trees]),
        node_right=np.concatenate([t.right for t in trees]),
        tree_nodes=[t.n_nodes for t in trees],
        leaf_values=np.concatenate([t.leaves for t in trees]),
        stage_trees=[len(ts) for ts, _ in stages],
        stage_threshold=[thr for _, thr in stages],
        metadata=dict(metadata or {}),
    )
    return full.truncated(full.n_stages)


# ---------------------------------------------------------------- training


def _fingerprint(positives: PositiveSplit, pool: BackgroundPool) -> str:
    h = hashlib.sha1()
    for a in (positives.train, positives.calibration):
        h.update(np.ascontiguousarray(a).tobytes())
    for p in pool.paths:
        h.update(str(p).encode())
    return h.hexdigest()


class _Run:
    """Mutable state of a training run, and its checkpoint form."""

    def __init__(self, config: TrainingConfig, positives: PositiveSplit,
                 pool: BackgroundPool, workdir: Path | None) -> None:
        self.config = config
        self.positives = positives
        self.pool = pool
        self.path = workdir / CHECKPOINT_NAME if workdir is not None else None
        self.fingerprint = _fingerprint(positives, pool)
        self.stages: list[tuple[list[Tree], float]] = []
        self.rows: list[dict] = []
        self.train_alive = np.ones(len(positives.train), bool)
        self.calib_alive = np.ones(len(positives.calibration), bool)
        self.stop_reason = ""
        self.mining: MiningState | None = None  # current stage's search, if started
        self.booster_state: dict[str, np.ndarray] | None = None
        self.stage_time: dict[str, float] = {}

    # ---------------------------------------------------------- checkpoints
    def save(self) -> None:
        if self.path is None:
            return
        arrays: dict[str, np.ndarray] = {"train_alive": self.train_alive,
                                         "calib_alive": self.calib_alive}
        for s, (trees, _) in enumerate(self.stages):
            for k, v in trees_to_arrays(trees).items():
                arrays[f"stage{s}_{k}"] = v
        if self.mining is not None:
            m = self.mining
            arrays["mining_patches"] = (np.concatenate(m.patches) if m.patches else
                                        np.zeros((0, *self.config.window[::-1]), np.uint8))
        if self.booster_state is not None:
            arrays.update({f"booster_{k}": v for k, v in self.booster_state.items()})
        meta = {
            "config": self.config.to_dict(),
            "fingerprint": self.fingerprint,
            "stage_thresholds": [float(t) for _, t in self.stages],
            "rows": self.rows,
            "stop_reason": self.stop_reason,
            "mining": None if self.mining is None else {
                "next_job": self.mining.next_job, "windows": self.mining.windows,
                "accepted": self.mining.accepted},
            "stage_time": self.stage_time,
        }
        save_checkpoint(self.path, meta, arrays)

    def load(self) -> bool:
        if self.path is None or not self.path.is_file():
            return False
        meta, arrays = load_checkpoint(self.path)
        saved = TrainingConfig.from_dict(meta["config"])
        if saved != self.config:
            diff = {k: (v, getattr(self.config, k)) for k, v in asdict(saved).items()
                    if v != getattr(self.config, k)}
            raise ValueError(f"checkpoint {self.path} was made with other settings "
                             f"(saved, now): {diff}; use a new output folder or start fresh")
        if meta["fingerprint"] != self.fingerprint:
            raise ValueError(f"checkpoint {self.path} was made with other positives or "
                             "backgrounds; use a new output folder or start fresh")
        self.train_alive = arrays["train_alive"].astype(bool)
        self.calib_alive = arrays["calib_alive"].astype(bool)
        self.stages = []
        for s, thr in enumerate(meta["stage_thresholds"]):
            part = {k[len(f"stage{s}_"):]: v for k, v in arrays.items()
                    if k.startswith(f"stage{s}_")}
            self.stages.append((trees_from_arrays(part), float(np.float32(thr))))
        self.rows = meta["rows"]
        self.stop_reason = meta["stop_reason"]
        m = meta["mining"]
        if m is not None:
            p = arrays["mining_patches"]
            self.mining = MiningState([p] if len(p) else [], m["next_job"], m["windows"],
                                      m["accepted"])
        keys = [k for k in arrays if k.startswith("booster_")]
        self.booster_state = {k[len("booster_"):]: arrays[k] for k in keys} if keys else None
        self.stage_time = meta.get("stage_time", {})
        return True


def train_cascade(
    positives: PositiveSplit,
    pool: BackgroundPool,
    config: TrainingConfig,
    workdir: str | os.PathLike | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
) -> TrainingResult:
    """Train a cascade (see the module notes).

    Parameters
    ----------
    positives : PositiveSplit
        Aligned positives (:func:`vj.positives.load_positives`).
    pool : BackgroundPool
        Background images (:class:`vj.negatives.BackgroundPool`).
    config : TrainingConfig
    workdir : path, optional
        Folder for the checkpoint; without it nothing is saved.
    resume : bool
        Continue from a checkpoint in ``workdir`` (its settings and data must
        match); False starts afresh and overwrites it.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    TrainingResult
    """
    if positives.train.shape[1:] != config.window[::-1]:
        raise ValueError(f"positives are {positives.train.shape[2]}x{positives.train.shape[1]}"
                         f", the window is {config.window[0]}x{config.window[1]}")
    if pool.window != config.window:
        raise ValueError(f"background pool window {pool.window} != config window {config.window}")
    if len(positives.calibration) == 0 or len(positives.train) == 0:
        raise ValueError("training needs training and calibration positives")
    wd = Path(workdir) if workdir is not None else None
    if wd is not None:
        wd.mkdir(parents=True, exist_ok=True)
    run = _Run(config, positives, pool, wd)
    if resume:
        run.load()
    features = HaarFeatureSet.enumerate(*config.window, config.mode)
    t_start = time.monotonic()
    bar = tqdm(total=config.n_stages, initial=len(run.stages), desc="stages", unit="stage",
               disable=not progress, leave=True)
    while not run.stop_reason:
        if len(run.stages) >= config.n_stages:
            run.stop_reason = f"trained all {config.n_stages} stages"
        elif run.rows and run.rows[-1]["cum_false_alarm"] <= config.overall_target:
            run.stop_reason = (f"estimated false-alarm rate {run.rows[-1]['cum_false_alarm']:.2e}"
                               f" reached the target {config.overall_target:.2e}")
        else:
            _train_one_stage(run, features, progress)
            bar.update(1)
            if run.rows:
                r = run.rows[-1]
                bar.set_postfix(weak=r["n_weak"], hit=f"{r['cum_hit_rate']:.3f}",
                                fa=f"{r['cum_false_alarm']:.1e}")
        run.save()
    bar.close()
    cascade = None
    info = {"config": config.to_dict(), "positives": positives.info,
            "backgrounds": {"images": len(pool), "scan_jobs": pool.n_jobs},
            "train_s_this_session": round(time.monotonic() - t_start, 1)}
    if run.stages:
        info["validation_hit_rate"] = _validation_hit_rate(features, run.stages,
                                                           positives.validation)
        cascade = cascade_from_stages(features, run.stages, {
            "training": {**info, "stages": run.rows, "stop_reason": run.stop_reason}})
    return TrainingResult(cascade, run.rows, run.stop_reason, info)


def _validation_hit_rate(features, stages, patches) -> float | None:
    if len(patches) == 0:
        return None
    alive = np.ones(len(patches), bool)
    for trees, thr in stages:
        idx = np.nonzero(alive)[0]
        alive[idx[~passes(stage_scores(features, trees, patches[idx]), thr)]] = False
    return float(alive.mean())


def _train_one_stage(run: _Run, features: HaarFeatureSet, progress: bool) -> None:
    cfg = run.config
    s = len(run.stages)
    times = run.stage_time
    cascade = cascade_from_stages(features, run.stages) if run.stages else None

    # 1. negatives the cascade so far accepts
    t0 = time.monotonic()
    mbar = tqdm(total=cfg.num_neg, desc=f"stage {s} negatives", unit="win",
                disable=not progress, leave=False)
    mbar.update(run.mining.found if run.mining else 0)

    def on_job(state: MiningState) -> None:
        mbar.update(state.found - mbar.n)
        mbar.set_postfix(windows=state.windows, refresh=False)

    def on_checkpoint(state: MiningState) -> None:
        run.mining = state
        times["mining_s"] = times.get("mining_s", 0.0) + time.monotonic() - t0_box[0]
        t0_box[0] = time.monotonic()
        run.save()

    t0_box = [t0]
    hint = min(1.0, max(run.rows[-1]["cum_false_alarm"], 1e-12)) if run.rows else 1.0
    negatives, state, exhausted = mine_negatives(
        run.pool, cascade, cfg.num_neg, seed=cfg.seed, stage=s, state=run.mining,
        acceptance_hint=hint,
        checkpoint=on_checkpoint, checkpoint_every_s=cfg.checkpoint_every_s, progress=on_job)
    mbar.close()
    run.mining = state
    times["mining_s"] = times.get("mining_s", 0.0) + time.monotonic() - t0_box[0]
    if exhausted:
        run.stop_reason = (
            f"backgrounds exhausted at stage {s}: the cascade accepts only {len(negatives)} "
            f"of the {state.windows:,} background windows scanned (needed {cfg.num_neg})")
        run.mining = None
        run.booster_state = None
        return

    # 2. the stage's samples: positives that survive so far, then negatives
    rng = np.random.default_rng([cfg.seed, s, 4])
    train_idx = np.nonzero(run.train_alive)[0]
    if cfg.num_pos and train_idx.size > cfg.num_pos:
        train_idx = np.sort(rng.choice(train_idx, cfg.num_pos, replace=False))
    calib_idx = np.nonzero(run.calib_alive)[0]
    pos_t, pos_c = run.positives.train[train_idx], run.positives.calibration[calib_idx]
    patches = np.concatenate([pos_t, pos_c, negatives])
    n_t, n_c = len(pos_t), len(pos_c)
    y = np.concatenate([np.ones(n_t + n_c), -np.ones(len(negatives))])
    train_rows = np.r_[0:n_t, n_t + n_c:len(patches)]
    calib_rows = np.arange(n_t, n_t + n_c)
    neg_rows = np.arange(n_t + n_c, len(patches))

    # 3. quantised features
    t1 = time.monotonic()
    n_feat = len(features)
    if cfg.feature_fraction < 1:
        k = max(1, int(round(cfg.feature_fraction * n_feat)))
        feature_ids = np.sort(np.random.default_rng([cfg.seed, s, 5]).choice(n_feat, k,
                                                                             replace=False))
    else:
        feature_ids = np.arange(n_feat)
    edge_sample = np.sort(np.random.default_rng([cfg.seed, s, 6]).choice(
        len(patches), min(len(patches), cfg.edge_samples), replace=False))
    fbar = tqdm(total=feature_ids.size, desc=f"stage {s} features", unit="feat",
                disable=not progress, leave=False)
    fb = stage_bins(features, feature_ids, patches, edge_sample, n_bins=cfg.n_bins,
                    progress=fbar.update)
    fbar.close()
    t2 = time.monotonic()
    times["features_s"] = times.get("features_s", 0.0) + t2 - t1

    # 4. boosting
    booster = StageBooster(fb, y, train_rows, boosting=cfg.boosting, max_depth=cfg.max_depth,
                           trim_rate=cfg.weight_trim_rate)
    if run.booster_state is not None:
        booster.restore(run.booster_state)
    goal = StageGoal(cfg.min_hit_rate, cfg.max_false_alarm, cfg.max_weak)
    bbar = tqdm(total=cfg.max_weak, initial=len(booster.trees), desc=f"stage {s} boosting",
                unit="weak", disable=not progress, leave=False)
    last = [time.monotonic()]
    tb = [t2]

    def on_round(out) -> None:
        bbar.update(1)
        bbar.set_postfix(hit=f"{out.hit_rate:.4f}", fa=f"{out.false_alarm:.3f}", refresh=False)
        if time.monotonic() - last[0] > cfg.checkpoint_every_s:
            run.booster_state = booster.state()
            times["boost_s"] = times.get("boost_s", 0.0) + time.monotonic() - tb[0]
            tb[0] = time.monotonic()
            run.save()
            last[0] = time.monotonic()

    outcome = boost_stage(booster, calib_rows, neg_rows, goal, on_round=on_round)
    bbar.close()
    times["boost_s"] = times.get("boost_s", 0.0) + time.monotonic() - tb[0]

    # 5. the stage, in Haar feature ids; positives it rejects drop out
    trees = [Tree(fb.feature_ids[t.feature_row], t.split_bin, t.threshold, t.left, t.right,
                  t.leaves) for t in booster.trees]
    thr = float(outcome.threshold)
    for alive, pool_patches in ((run.train_alive, run.positives.train),
                                (run.calib_alive, run.positives.calibration)):
        idx = np.nonzero(alive)[0]
        alive[idx[~passes(stage_scores(features, trees, pool_patches[idx]), thr)]] = False
    accept = state.accepted / max(state.windows, 1)
    row = {
        "stage": s,
        "n_weak": outcome.n_weak,
        "hit_rate": round(outcome.hit_rate, 5),
        "false_alarm": round(outcome.false_alarm, 5),
        "cum_hit_rate": round(float(run.calib_alive.mean()), 5),
        "acceptance": accept,
        "cum_false_alarm": accept * outcome.false_alarm,
        "negatives": int(len(negatives)),
        "windows_scanned": int(state.windows),
        "positives": int(n_t),
        "features": int(feature_ids.size),
        "mining_s": round(times.get("mining_s", 0.0), 1),
        "features_s": round(times.get("features_s", 0.0), 1),
        "boost_s": round(times.get("boost_s", 0.0), 1),
    }
    row["time_s"] = round(row["mining_s"] + row["features_s"] + row["boost_s"], 1)
    run.stages.append((trees, thr))
    run.rows.append(row)
    run.mining = None
    run.booster_state = None
    run.stage_time = {}
    if not math.isfinite(row["cum_false_alarm"]):
        run.stop_reason = "false-alarm estimate is not finite"
