"""The detectors ``vj-webcam`` switches between.

Both satisfy :class:`vj.stats.Detector`: the plain cascade (``vj.load(name)``) and the
neural verification pipeline (``vj_dynamic.load_verifier(cascade, settle=True)``). Each
leaves a :class:`vj.stats.DetectionStats` in ``last_stats`` (per-stage decided / ms /
FLOPs and the stage that accepted each box), which the overlay, the JSON writer and
the summary read directly.
"""

from __future__ import annotations

import vj
from vj.models import DEFAULT_MODEL, load_default_cascade
from vj.stats import Detector

from .errors import VerifierUnavailable, WebcamError

__all__ = [
    "DEFAULT_CASCADE",
    "Detector",
    "DetectorSwitch",
    "load_cascade",
    "load_verifier",
]

#: The project's own model; replaced by OpenCV's default cascade while it is not shipped.
DEFAULT_CASCADE = DEFAULT_MODEL
VERIFIER_MISSING = "neural verification is not available"


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
        When :mod:`vj_dynamic` (PyTorch) cannot be imported or the verifier's weight files
        are missing or unreadable; the message says which.
    """
    try:
        import vj_dynamic

        # The name is imported on first use: a missing PyTorch shows up here.
        factory = getattr(vj_dynamic, "load_verifier", None)
    except ImportError as error:
        raise VerifierUnavailable(f"{VERIFIER_MISSING} ({error})") from None
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
