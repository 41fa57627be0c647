"""Settings of a cascade training run, checked when made (:class:`TrainingConfig`).

Names follow ``opencv_traincascade``; a run's checkpoint stores them
(:meth:`TrainingConfig.to_dict`) and refuses to resume under others.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .boosting import BOOSTING_TYPES
from .features import FEATURE_MODES

__all__ = ["TrainingConfig"]


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
        """The cascade's false-alarm target (``target_false_alarm`` or its default)."""
        if self.target_false_alarm is not None:
            return float(self.target_false_alarm)
        return float(self.max_false_alarm) ** self.n_stages

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (as checkpoints and reports store them)."""
        d = asdict(self)
        d["window"] = list(self.window)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingConfig:
        """The settings :meth:`to_dict` wrote."""
        return cls(**{**d, "window": tuple(d["window"])})
