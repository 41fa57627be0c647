"""The detectors ``vj-webcam`` switches between, and the per-stage statistics they report.

Two kinds of detector plug in here, with the same call::

    boxes, scores = detector.detect(image, scale_factor=..., min_neighbors=...,
                                    min_size=..., max_size=..., return_scores=True)
    detector.last_stats

* the plain cascade, ``vj.load(name)``; its ``last_stats`` is a
  :class:`vj.DetectionStats` (``windows``, ``ms``, ...);
* the neural verification pipeline from :mod:`dynamic`, loaded by
  ``dynamic.load_verifier(cascade, settle=True)``; its ``last_stats`` is a mapping::

      {"proposed": int,                      # regions the first stage looked at
       "stages": [{"name": str, "decided": int, "ms": float, "flops": float}, ...],
       "box_stage": (N,) int array}          # index of the stage that accepted each box

  ``"stages"`` may also be a mapping from stage name to the per-stage dict, and
  ``"flops"`` and ``"box_stage"`` are optional (without ``box_stage`` every box is
  credited to the last stage).

:func:`frame_stats` turns either form into one :class:`FrameStats`, which is what
the overlay, the JSON writer and the summary read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

import vj
from vj.models import DEFAULT_MODEL, load_default_cascade

from .errors import VerifierUnavailable, WebcamError

__all__ = [
    "DEFAULT_CASCADE",
    "Detector",
    "DetectorSwitch",
    "FrameStats",
    "StageStats",
    "frame_stats",
    "load_cascade",
    "load_verifier",
]

#: The project's own model; replaced by OpenCV's default cascade while it is not shipped.
DEFAULT_CASCADE = DEFAULT_MODEL
VERIFIER_MISSING = "neural verification is not available"


class Detector(Protocol):
    """What the app needs from a detector (the plain cascade or the verifier)."""

    last_stats: Any

    def detect(
        self,
        image: np.ndarray,
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        min_size: int | tuple[int, int] | None = None,
        max_size: int | tuple[int, int] | None = None,
        return_scores: bool = False,
    ) -> Any: ...


@dataclass
class StageStats:
    """One stage's share of one frame's work."""

    name: str
    decided: int
    ms: float
    flops: float | None = None


@dataclass
class FrameStats:
    """One frame's detection statistics, whatever detector produced them.

    Attributes
    ----------
    proposed : int or None
        Regions the first stage looked at (windows, for a cascade).
    stages : list of StageStats
    box_stage : (N,) int ndarray
        For each box, the index in ``stages`` of the stage that accepted it.
    """

    proposed: int | None
    stages: list[StageStats]
    box_stage: np.ndarray = field(default_factory=lambda: np.zeros(0, np.intp))

    @property
    def ms(self) -> float:
        """Total milliseconds over all stages."""
        return float(sum(stage.ms for stage in self.stages))


def _get(record: Any, key: str, default: Any = None) -> Any:
    if isinstance(record, Mapping):
        return record.get(key, default)
    return getattr(record, key, default)


def frame_stats(last_stats: Any, n_boxes: int, elapsed_ms: float) -> FrameStats:
    """Normalise a detector's ``last_stats`` into a :class:`FrameStats`.

    Parameters
    ----------
    last_stats : mapping, object or None
        The detector's ``last_stats`` right after ``detect`` (see the module notes).
    n_boxes : int
        Boxes the call returned.
    elapsed_ms : float
        Wall-clock time of the call, used when the detector reports no time.
    """
    stages_in = _get(last_stats, "stages")
    if stages_in is None:
        # A plain cascade: one stage that decides every window it scans.
        windows = _get(last_stats, "windows")
        ms = _get(last_stats, "ms") or elapsed_ms
        stages = [StageStats("cascade", int(windows or 0), float(ms))]
        proposed = None if windows is None else int(windows)
    else:
        if isinstance(stages_in, Mapping):
            stages_in = [{"name": name, **dict(s)} for name, s in stages_in.items()]
        stages = [
            StageStats(
                name=str(_get(s, "name", f"stage {i}")),
                decided=int(_get(s, "decided", 0)),
                ms=float(_get(s, "ms", 0.0)),
                flops=None if _get(s, "flops") is None else float(_get(s, "flops")),
            )
            for i, s in enumerate(stages_in)
        ]
        proposed = _get(last_stats, "proposed")
        proposed = None if proposed is None else int(proposed)
    box_stage = _get(last_stats, "box_stage")
    if box_stage is None or len(box_stage) != n_boxes:
        box_stage = np.full(n_boxes, len(stages) - 1, np.intp)
    return FrameStats(proposed, stages, np.asarray(box_stage, np.intp))


def load_cascade(name: str | None) -> tuple[Detector, str, str | None]:
    """Load the plain cascade detector.

    Parameters
    ----------
    name : str or None
        Passed to ``vj.load``: a built-in name, an OpenCV Haar XML or a model file.
        ``None`` means the project's own ``"frontalface"`` model, or OpenCV's
        default cascade while that model is not shipped.

    Returns
    -------
    detector : Detector
    name : str
        The cascade actually loaded.
    notice : str or None
        A line for the user when the default model was replaced.

    Raises
    ------
    WebcamError
        When an explicitly named cascade cannot be loaded.
    """
    if name is None:
        try:
            cascade, loaded, notice = load_default_cascade()
        except FileNotFoundError as error:
            raise WebcamError(str(error)) from None
        return vj.load(cascade), loaded, notice
    try:
        return vj.load(name), name, None
    except (OSError, ValueError) as error:
        raise WebcamError(f"cannot load cascade {name!r}: {error}") from None


def load_verifier(cascade: Detector) -> Detector:
    """Load the neural verification pipeline on top of ``cascade``.

    Raises
    ------
    VerifierUnavailable
        When :mod:`dynamic` (PyTorch) cannot be imported or the verifier's weight files
        are missing or unreadable; the message says which.
    """
    try:
        import dynamic
    except ImportError as error:
        raise VerifierUnavailable(f"{VERIFIER_MISSING} ({error})") from None
    factory = getattr(dynamic, "load_verifier", None)
    if factory is None:
        raise VerifierUnavailable(VERIFIER_MISSING)
    try:
        # Boxes are shown, not ranked: the SkipNet runs only where a box depends on it.
        return factory(cascade, settle=True)
    except ImportError as error:
        raise VerifierUnavailable(f"{VERIFIER_MISSING} ({error})") from None
    except (OSError, ValueError, RuntimeError) as error:
        raise VerifierUnavailable(f"cannot load the neural verifier: {error}") from None


class DetectorSwitch:
    """The plain cascade plus, when available, the verifier; one of them is active.

    Parameters
    ----------
    cascade : Detector
    verifier : Detector or None
    verify : bool
        Start with verification on (ignored when there is no verifier).
    """

    def __init__(self, cascade: Detector, verifier: Detector | None, verify: bool) -> None:
        self.cascade = cascade
        self.verifier = verifier
        self.verify = verify and verifier is not None

    @property
    def active(self) -> Detector:
        """The detector that runs on the next frame."""
        return self.verifier if self.verify else self.cascade

    def toggle(self) -> str:
        """Switch verification on or off; returns a line to show the user."""
        if self.verifier is None:
            return VERIFIER_MISSING
        self.verify = not self.verify
        return f"neural verification {'on' if self.verify else 'off'}"

    def warmup(self) -> None:
        """Compile or load every detector's kernels before the first frame."""
        for detector in (self.cascade, self.verifier):
            if detector is not None and hasattr(detector, "warmup"):
                detector.warmup()
