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
uninterrupted run with the same seed. A finished run can be resumed with more stages,
a lower false-alarm target or a larger stage cap (:data:`EXTENDABLE`): it keeps the
stages it has and trains on from there.

This module holds the run (its state, checkpoints and the loop over stages);
:mod:`vj.training_steps` the steps of one stage, :mod:`vj.training_config` the
settings and :mod:`vj.training_progress` the time and progress bookkeeping.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .boosting import trees_from_arrays, trees_to_arrays
from .cascade import Cascade
from .features import HaarFeatureSet
from .negatives import BackgroundPool, JobRunner, MiningState
from .positives import PositiveSplit
from .training_checkpoint import load_checkpoint, save_checkpoint
from .training_config import TrainingConfig
from .training_progress import TrainingProgress
from .training_steps import drop_rejected, train_stage
from .weak_learners import Tree

__all__ = ["CHECKPOINT_NAME", "TrainingConfig", "TrainingResult", "cascade_from_stages",
           "train_cascade"]

CHECKPOINT_NAME = "checkpoint.npz"

#: Settings a checkpoint may be resumed with changed, as ``opencv_traincascade`` allows:
#: they decide only how far training goes and how large stages still to come may grow,
#: so the stages already trained stay valid (e.g. resume with more stages).
EXTENDABLE = frozenset({"n_stages", "target_false_alarm", "max_weak", "checkpoint_every_s"})


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


# --------------------------------------------------------------- run state


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
                 pool: BackgroundPool, workdir: Path | None,
                 progress: TrainingProgress | None = None) -> None:
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
        self.progress = progress if progress is not None else TrainingProgress(show=False)
        self.mining_jobs: JobRunner | None = None  # where negative mining runs (None: here)

    @property
    def stage(self) -> int:
        """The stage being trained: the number trained so far."""
        return len(self.stages)

    def cascade_so_far(self, features: HaarFeatureSet) -> Cascade | None:
        """The stages trained so far as a cascade (None before the first)."""
        return cascade_from_stages(features, self.stages) if self.stages else None

    def rng(self, purpose: int) -> np.random.Generator:
        """The generator seeded by ``(seed, stage, purpose)``."""
        return np.random.default_rng([self.config.seed, self.stage, purpose])

    # ---------------------------------------------------------- checkpoints
    def save(self) -> None:
        if self.path is None:
            return
        self.progress.lap()  # the checkpoint holds the time spent so far
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
            "stage_time": self.progress.seconds,
        }
        save_checkpoint(self.path, meta, arrays)

    def load(self) -> bool:
        if self.path is None or not self.path.is_file():
            return False
        meta, arrays = load_checkpoint(self.path)
        saved = TrainingConfig.from_dict(meta["config"])
        diff = {k: (v, getattr(self.config, k)) for k, v in asdict(saved).items()
                if v != getattr(self.config, k)}
        if set(diff) - EXTENDABLE:
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
        # More stages, a lower target or a larger stage cap: the goal is checked again.
        self.stop_reason = "" if diff else meta["stop_reason"]
        m = meta["mining"]
        if m is not None:
            p = arrays["mining_patches"]
            self.mining = MiningState([p] if len(p) else [], m["next_job"], m["windows"],
                                      m["accepted"])
        keys = [k for k in arrays if k.startswith("booster_")]
        self.booster_state = {k[len("booster_"):]: arrays[k] for k in keys} if keys else None
        self.progress.seconds = meta.get("stage_time", {})
        return True


# ---------------------------------------------------------------- training


def train_cascade(
    positives: PositiveSplit,
    pool: BackgroundPool,
    config: TrainingConfig,
    workdir: str | os.PathLike | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    mining_jobs: JobRunner | None = None,
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
    mining_jobs : JobRunner, optional
        Where negative mining scans the backgrounds, e.g. a Dask cluster
        (:class:`vj.negatives_dask.ClusterJobs`); default this process's threads.
        The cascade does not depend on it.

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
    run = _Run(config, positives, pool, wd, TrainingProgress(show=progress))
    run.mining_jobs = mining_jobs
    if resume:
        run.load()
    features = HaarFeatureSet.enumerate(*config.window, config.mode)
    t_start = time.monotonic()
    with run.progress.bar("stages", config.n_stages, "stage", initial=run.stage,
                          leave=True) as bar:
        while not run.stop_reason:
            run.stop_reason = _goal_reached(run)
            if not run.stop_reason:
                train_stage(run, features)
                bar.update(1)
                if run.rows:
                    r = run.rows[-1]
                    bar.set_postfix(weak=r["n_weak"], hit=f"{r['cum_hit_rate']:.3f}",
                                    fa=f"{r['cum_false_alarm']:.1e}")
            run.save()
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


def _goal_reached(run: _Run) -> str:
    """Why the cascade is complete (all stages, or the false-alarm target), or ""."""
    cfg = run.config
    if run.stage >= cfg.n_stages:
        return f"trained all {cfg.n_stages} stages"
    if run.rows and run.rows[-1]["cum_false_alarm"] <= cfg.overall_target:
        return (f"estimated false-alarm rate {run.rows[-1]['cum_false_alarm']:.2e}"
                f" reached the target {cfg.overall_target:.2e}")
    return ""


def _validation_hit_rate(features, stages, patches) -> float | None:
    if len(patches) == 0:
        return None
    alive = np.ones(len(patches), bool)
    for trees, thr in stages:
        drop_rejected(alive, patches, features, trees, thr)
    return float(alive.mean())
