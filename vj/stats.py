"""What one detection call did, and the interface every detector offers.

Every detector of the project (the plain cascade :class:`vj.CascadeDetector` and the
verified pipeline ``vj_dynamic.VerifiedDetector``) satisfies :class:`Detector` and
leaves one :class:`DetectionStats` in ``last_stats`` after each call: totals plus a
per-stage list (:class:`StageStats`) of who decided how many regions, in how many
milliseconds and FLOPs. Programs (the webcam's HUD, benchmarks) read it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["DetectionStats", "Detector", "StageStats"]


@dataclass
class StageStats:
    """One stage's share of one detection call.

    Attributes
    ----------
    name : str
        ``"cascade"`` for the Haar cascade, else the verifier stage's name.
    decided : int
        Regions this stage settled: windows the cascade rejected, crops a verifier
        stage answered (rather than deferring).
    ms : float
        Wall-clock milliseconds spent in the stage.
    flops : float or None
        Floating-point operations, where the stage counts them (networks do, the
        cascade does not).
    """

    name: str
    decided: int = 0
    ms: float = 0.0
    flops: float | None = None


def _no_boxes() -> np.ndarray:
    return np.zeros(0, np.intp)


@dataclass
class DetectionStats:
    """What the last ``detect`` (or ``candidates``) call did.

    Attributes
    ----------
    windows : int
        Windows scanned (all pyramid levels).
    features : int
        Features evaluated over all windows.
    candidates : int
        Windows accepted by every cascade stage run, before grouping.
    levels : int
        Pyramid levels scanned.
    ms : float
        Wall-clock milliseconds of the whole call.
    stages : list of StageStats
        Per stage, in the order they ran; the cascade first.
    box_stage : (N,) intp ndarray
        For each returned box, the index in ``stages`` of the stage that accepted it.
    verified : int
        Crops judged by a verifier (near-duplicate windows share one crop).
    accepted : int
        Windows judged to be faces (all candidates, without a verifier).
    settled : int
        Crops whose group was already settled, so the costly stage was skipped.
    crop_ms, group_ms : float
        Milliseconds cutting crops and grouping boxes.
    """

    windows: int = 0
    features: int = 0
    candidates: int = 0
    levels: int = 0
    ms: float = 0.0
    stages: list[StageStats] = field(default_factory=list)
    box_stage: np.ndarray = field(default_factory=_no_boxes)
    verified: int = 0
    accepted: int = 0
    settled: int = 0
    crop_ms: float = 0.0
    group_ms: float = 0.0

    @property
    def features_per_window(self) -> float:
        """Mean features evaluated per scanned window."""
        return self.features / self.windows if self.windows else 0.0

    @property
    def stage_ms(self) -> float:
        """Milliseconds summed over the stages."""
        return float(sum(s.ms for s in self.stages))

    def cascade_stage(self) -> StageStats:
        """The cascade's own stage: it settles every window it rejects."""
        return StageStats("cascade", int(self.windows - self.candidates), float(self.ms))


@runtime_checkable
class Detector(Protocol):
    """What a program needs from a detector: ``detect`` and its ``last_stats``."""

    last_stats: DetectionStats

    def detect(
        self,
        image: np.ndarray,
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        min_size: int | tuple[int, int] | None = None,
        max_size: int | tuple[int, int] | None = None,
        return_scores: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Boxes ``(N, 4)`` of ``x, y, w, h`` (and scores, higher = surer)."""
        ...

    def warmup(self) -> Detector:
        """Compile and load everything before the first timed call."""
        ...
