"""Enrol faces and recognise them in ``vj-webcam``.

The enrolled people live in a small file (:class:`vj_dynamic.face.enrolment.EnrolmentStore`,
``--enrolments``, by default under ``$VJ_HOME`` or the user's data folder). People are
enrolled from a folder of photos (``--enrol NAME=DIR``: the largest face of each photo)
or live with the ``e`` key (the largest face of the next few frames); once anyone is
enrolled, every detected face is labelled with a name or ``unknown``
(:class:`vj_dynamic.face.enrolment.FaceRecogniser`, TAFE-Net), on screen and in the
JSON Lines output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from vj.image_sources import image_files, read_gray
from vj.stats import Detector

from .errors import WebcamError

__all__ = ["ENROL_EVERY", "ENROL_PATIENCE", "Recognition", "RecognitionUnavailable",
           "add_enrolment_options",
           "manage_enrolments", "open_recognition", "parse_enrol_option", "recognition_for"]

#: While enrolling with the key, a crop is taken every this many frames (varied poses).
ENROL_EVERY = 3
#: Frames without a face after which a key-press enrolment gives up.
ENROL_PATIENCE = 150
_DETECT = {"scale_factor": 1.1, "min_neighbors": 3, "min_size": 24}


class RecognitionUnavailable(WebcamError):
    """Face recognition cannot run here (no PyTorch, or no face-identity model)."""


def parse_enrol_option(text: str) -> tuple[str, Path]:
    """``NAME=DIR`` -> (name, folder); a WebcamError names what is wrong."""
    name, sep, folder = text.partition("=")
    if not sep or not name.strip() or not folder:
        raise WebcamError(f"--enrol takes NAME=DIR, got {text!r}")
    return name.strip(), Path(folder)


def _largest(boxes: np.ndarray) -> np.ndarray | None:
    boxes = np.asarray(boxes).reshape(-1, 4)
    return boxes[np.argmax(boxes[:, 2] * boxes[:, 3])] if len(boxes) else None


class Recognition:
    """The enrolment store, the recogniser, and a key-press enrolment in progress.

    Parameters
    ----------
    store : EnrolmentStore
        Loaded already.
    recogniser : FaceRecogniser
    """

    def __init__(self, store, recogniser) -> None:
        self.store, self.recogniser = store, recogniser
        self._pending: str | None = None
        self._crops: list[np.ndarray] = []
        self._waited = 0

    @property
    def active(self) -> bool:
        """Whether faces are labelled (someone is enrolled)."""
        return len(self.store) > 0

    @property
    def enrolling(self) -> str | None:
        """The name being enrolled with the key, or None."""
        return self._pending

    def label(self, frame: np.ndarray, boxes: np.ndarray) -> list[str] | None:
        """Each face's name (``unknown`` for a stranger); None while nobody is enrolled."""
        if not self.active:
            return None
        return self.recogniser.identify(frame, boxes)[0]

    def enrol_folder(self, name: str, folder: Path, detector: Detector) -> int:
        """Enrol ``name`` from the largest face of each image in ``folder``; returns the crops kept.

        Raises
        ------
        WebcamError
            When the folder has no images or no face is found in any of them.
        """
        from vj_dynamic.face.enrolment import MAX_CROPS, face_crops

        try:
            files = image_files(folder)
        except ValueError:
            raise WebcamError(f"--enrol {name}={folder}: no such folder") from None
        crops = []
        for path in files:
            try:
                image = read_gray(path)
            except (OSError, ValueError):
                continue
            box = _largest(detector.detect(image, **_DETECT))
            if box is not None:
                crops.append(face_crops(image, box[None])[0])
        if not crops:
            raise WebcamError(f"--enrol {name}={folder}: no face found in "
                              f"{len(files)} image(s)")
        self._save(name, np.stack(crops))
        return min(len(crops), MAX_CROPS)

    def check(self) -> None:
        """Load the face-identity model now; RecognitionUnavailable if it cannot be."""
        try:
            self.recogniser.model  # noqa: B018  (loads it)
        except (ValueError, OSError, ImportError) as error:
            raise RecognitionUnavailable(f"face recognition is not available: {error}") from None

    def start(self, name: str | None) -> str:
        """Begin enrolling ``name`` (default: the next free ``person N``) from the next frames."""
        try:
            self.check()
        except RecognitionUnavailable as error:
            return str(error)
        if name is None:
            n = 1
            while f"person {n}" in self.store:
                n += 1
            name = f"person {n}"
        self._pending, self._crops, self._waited = name, [], 0
        return f"enrolling {name}: look at the camera"

    def feed(self, frame: np.ndarray, boxes: np.ndarray, index: int) -> str | None:
        """Take a crop of the largest face for a pending enrolment; a message when it ends."""
        if self._pending is None:
            return None
        from vj_dynamic.face.enrolment import MAX_CROPS, face_crops

        box = _largest(boxes)
        if box is None:
            self._waited += 1
            if self._waited < ENROL_PATIENCE:
                return None
            name, self._pending = self._pending, None
            return f"no face seen: enrolment of {name} cancelled"
        if index % ENROL_EVERY == 0:
            self._crops.append(face_crops(frame, box[None])[0])
        if len(self._crops) < MAX_CROPS:
            return None
        name, self._pending = self._pending, None
        self._save(name, np.stack(self._crops))
        return f"enrolled {name} ({len(self._crops)} crops, saved to {self.store.path})"

    def _save(self, name: str, crops: np.ndarray) -> None:
        try:
            self.store.enrol(name, crops)
            self.store.save()
        except ValueError as error:
            raise WebcamError(f"cannot enrol {name!r}: {error}") from None
        except OSError as error:
            raise WebcamError(f"cannot write {self.store.path}: {error}") from None


def open_recognition(path: Path | None) -> Recognition:
    """The enrolment store at ``path`` (default location when None) and a recogniser.

    The face-identity model (and PyTorch) load only once someone is enrolled.

    Raises
    ------
    WebcamError
        When the store file is damaged.
    RecognitionUnavailable
        When face recognition (PyTorch, ``data/tafe.pt``) is not available.
    """
    store = _store(path)
    from vj_dynamic.face.enrolment import FaceRecogniser

    recognition = Recognition(store, FaceRecogniser(store))
    if recognition.active:  # else the model loads when someone is enrolled
        recognition.check()
    return recognition


def add_enrolment_options(parser: argparse.ArgumentParser) -> None:
    """The enrolment options of ``vj-webcam``."""
    group = parser.add_argument_group("face enrolment and recognition")
    group.add_argument("--enrol", action="append", default=[], metavar="NAME=DIR",
                       help="enrol NAME from the largest face of each image in DIR, then run "
                            "(repeatable)")
    group.add_argument("--enrol-name", metavar="NAME",
                       help="name the e key enrols (default: the next free 'person N')")
    group.add_argument("--enrolments", type=Path, metavar="PATH",
                       help="file of enrolled people (default: $VJ_HOME/enrolments.npz or "
                            "~/.local/share/vj/enrolments.npz)")
    group.add_argument("--list-enrolled", action="store_true",
                       help="list the enrolled people and exit")
    group.add_argument("--forget", action="append", default=[], metavar="NAME",
                       help="remove NAME from the enrolled people and exit (repeatable)")


def _store(path: Path | None):
    try:
        from vj_dynamic.face.enrolment import EnrolmentStore
    except ImportError as error:
        raise RecognitionUnavailable(f"face enrolment is not available ({error})") from None
    try:
        return EnrolmentStore(path).load()
    except ValueError as error:
        raise WebcamError(str(error)) from None


def manage_enrolments(args: argparse.Namespace) -> int | None:
    """Carry out ``--list-enrolled`` / ``--forget``; the exit code, or None to run on."""
    if not args.list_enrolled and not args.forget:
        return None
    store = _store(args.enrolments)
    for name in args.forget:
        if not store.forget(name):
            raise WebcamError(f"{name!r} is not enrolled in {store.path}")
        store.save()
        print(f"forgot {name}")
    if args.list_enrolled:
        print(f"{len(store)} enrolled in {store.path}")
        for name, crops in store:
            print(f"  {name} ({len(crops)} crops)")
    return 0


def recognition_for(args: argparse.Namespace, cascade: Detector) -> Recognition | None:
    """Enrol the ``--enrol`` folders and return the recognition, or None where unavailable.

    Raises
    ------
    WebcamError
        For a bad ``--enrol`` or a damaged store; also when recognition is unavailable
        but ``--enrol`` asked for it.
    """
    try:
        recognition = open_recognition(args.enrolments)
    except RecognitionUnavailable as error:
        if args.enrol:
            raise
        print(f"vj-webcam: {error}; faces are not named", file=sys.stderr)
        return None
    if args.enrol:
        recognition.check()
    for text in args.enrol:
        name, folder = parse_enrol_option(text)
        kept = recognition.enrol_folder(name, folder, cascade)
        print(f"vj-webcam: enrolled {name} from {folder} ({kept} crops)", file=sys.stderr)
    return recognition
