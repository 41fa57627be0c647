"""Enrolled people: a small file of face crops per name, and the recogniser that reads it.

Enrolling a person keeps up to :data:`MAX_CROPS` face crops of them (cut from detected
boxes by :func:`face_crops`); recognising a face asks, for every enrolled person P,
"is this P?" of the TAFE-Net face model (:mod:`vj_dynamic.face.identity`), whose
weights for P were generated once from P's crops.

The store is a NumPy ``.npz`` file read with ``allow_pickle=False`` and written
atomically (:mod:`vj.atomic`); its arrays::

    format   "vj-enrolments"          version  1
    names    (P,) str                 counts   (P,) int64, crops per person
    crops    (sum(counts), S, S) uint8, the people's crops one after another

Its default place is ``$VJ_HOME/enrolments.npz``, else ``$XDG_DATA_HOME/vj`` or
``~/.local/share/vj`` (:func:`default_store_path`).
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vj.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from vj_dynamic.face.identity import FaceIdentityModel

__all__ = [
    "FACE_CROP_MARGIN",
    "FACE_CROP_SIZE",
    "MAX_CROPS",
    "UNKNOWN",
    "EnrolmentStore",
    "FaceRecogniser",
    "default_store_path",
    "face_crops",
]

#: Side of the crops the face model reads, and the context around the box in crop pixels.
FACE_CROP_SIZE = 32
FACE_CROP_MARGIN = 2
#: Crops kept per person (the task description of TAFE-Net: K = 1..5 examples).
MAX_CROPS = 5
#: The label of a face that matches nobody enrolled; not allowed as a name.
UNKNOWN = "unknown"
_FORMAT, _VERSION = "vj-enrolments", 1
_MAX_NAME = 64


def default_store_path() -> Path:
    """Where enrolments live: ``$VJ_HOME``, else the user's data folder, ``enrolments.npz``."""
    home = os.environ.get("VJ_HOME")
    if home:
        return Path(home) / "enrolments.npz"
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "vj" / "enrolments.npz"


def face_crops(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The crops the face model reads: ``(N, 32, 32)`` uint8, each box with a little context.

    Parameters
    ----------
    image : (H, W) or (H, W, 3|4) uint8 ndarray
    boxes : (N, 4) int ndarray
        ``x, y, w, h`` as the cascade reports them.
    """
    from vj_dynamic.face.crops import extract_crops

    return extract_crops(image, boxes, size=FACE_CROP_SIZE, margin=FACE_CROP_MARGIN)


def check_name(name: str) -> str:
    """``name`` stripped, or ValueError when it cannot name a person."""
    if not isinstance(name, str):
        raise ValueError(f"a name must be a string, got {type(name).__name__}")
    stripped = name.strip()
    if not stripped or len(stripped) > _MAX_NAME or not stripped.isprintable():
        raise ValueError(f"a name must be 1 to {_MAX_NAME} printable characters, got {name!r}")
    if stripped.lower() == UNKNOWN:
        raise ValueError(f"{UNKNOWN!r} is the label of unmatched faces, not a name")
    return stripped


class EnrolmentStore:
    """The enrolled people and their face crops, kept in one ``.npz`` file.

    Parameters
    ----------
    path : path, optional
        The file (default :func:`default_store_path`). Nothing is read or written until
        :meth:`load` / :meth:`save`.

    Examples
    --------
    >>> import tempfile
    >>> store = EnrolmentStore(Path(tempfile.mkdtemp()) / "people.npz")
    >>> store.enrol("ada", np.zeros((3, 32, 32), np.uint8)).save()
    >>> EnrolmentStore(store.path).load().names
    ['ada']
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self._people: dict[str, np.ndarray] = {}
        #: Incremented by every change, so that users can tell when to recompute.
        self.revision = 0

    @property
    def names(self) -> list[str]:
        """Enrolled names, in enrolment order."""
        return list(self._people)

    def __len__(self) -> int:
        return len(self._people)

    def __contains__(self, name: object) -> bool:
        return name in self._people

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        return iter(self._people.items())

    def crops(self, name: str) -> np.ndarray:
        """The crops of ``name``, ``(K, S, S)`` uint8 (KeyError if not enrolled)."""
        return self._people[name]

    def enrol(self, name: str, crops: np.ndarray) -> EnrolmentStore:
        """Enrol ``name`` with ``crops`` (replacing any earlier enrolment); returns self.

        Parameters
        ----------
        name : str
            1 to 64 printable characters, not ``"unknown"``.
        crops : (K, S, S) uint8 ndarray
            At least one crop; beyond :data:`MAX_CROPS`, crops spread evenly over the
            given ones are kept.
        """
        name = check_name(name)
        crops = np.asarray(crops)
        if crops.ndim != 3 or crops.dtype != np.uint8 or crops.shape[0] < 1:
            raise ValueError(f"crops must be a (K, S, S) uint8 array with K >= 1, got "
                             f"{crops.dtype} of shape {crops.shape}")
        if crops.shape[1:] != (FACE_CROP_SIZE, FACE_CROP_SIZE):
            raise ValueError(f"crops must be {FACE_CROP_SIZE}x{FACE_CROP_SIZE} (face_crops), "
                             f"got {crops.shape[1]}x{crops.shape[2]}")
        if crops.shape[0] > MAX_CROPS:
            crops = crops[np.linspace(0, crops.shape[0] - 1, MAX_CROPS).round().astype(int)]
        self._people.pop(name, None)
        self._people[name] = np.ascontiguousarray(crops)
        self.revision += 1
        return self

    def forget(self, name: str) -> bool:
        """Remove ``name``; returns whether it was enrolled."""
        found = self._people.pop(name, None) is not None
        self.revision += found
        return found

    def save(self) -> Path:
        """Write the store to :attr:`path` atomically (folders are created); returns the path."""
        names = self.names
        counts = np.asarray([len(self._people[n]) for n in names], np.int64)
        empty = np.zeros((0, FACE_CROP_SIZE, FACE_CROP_SIZE), np.uint8)
        crops = np.concatenate([self._people[n] for n in names]) if names else empty
        buffer = io.BytesIO()
        np.savez_compressed(buffer, format=np.asarray(_FORMAT), version=np.asarray(_VERSION),
                            names=np.asarray(names, dtype=str), counts=counts, crops=crops)
        atomic_write_bytes(self.path, buffer.getvalue())
        return self.path

    def load(self) -> EnrolmentStore:
        """Read :attr:`path` (a missing file is an empty store); returns self.

        Raises
        ------
        ValueError
            When the file is not an enrolment store or is damaged; the message names it.
        """
        self._people = {}
        self.revision += 1
        if not self.path.exists():
            return self
        try:
            with np.load(self.path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"{self.path} is not a readable enrolment file ({error})") from None
        self._people = _people_from(arrays, self.path)
        return self


def _people_from(arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """Check the arrays of a store file and split its crops by person."""
    def bad(why: str) -> ValueError:
        return ValueError(f"{path} is not a valid enrolment file: {why}")

    missing = {"format", "version", "names", "counts", "crops"} - set(arrays)
    if missing:
        raise bad(f"missing {', '.join(sorted(missing))}")
    if str(arrays["format"]) != _FORMAT:
        raise bad(f"format {str(arrays['format'])!r}")
    if int(arrays["version"]) != _VERSION:
        raise bad(f"version {int(arrays['version'])}, this program reads {_VERSION}")
    names, counts, crops = arrays["names"], arrays["counts"], arrays["crops"]
    if names.ndim != 1 or names.dtype.kind != "U" or counts.shape != names.shape:
        raise bad("names and counts must be two lists of the same length")
    if counts.dtype.kind not in "iu" or np.any(counts < 1) or np.any(counts > MAX_CROPS):
        raise bad(f"every person needs 1 to {MAX_CROPS} crops")
    shape = (int(counts.sum()), FACE_CROP_SIZE, FACE_CROP_SIZE)
    if crops.dtype != np.uint8 or crops.shape != shape:
        raise bad(f"crops must be uint8 of shape {shape}, got {crops.dtype} {crops.shape}")
    people: dict[str, np.ndarray] = {}
    if not len(names):
        return people
    for name, part in zip(names.tolist(), np.split(crops, np.cumsum(counts)[:-1]), strict=True):
        try:
            name = check_name(name)
        except ValueError as error:
            raise bad(str(error)) from None
        if name in people:
            raise bad(f"{name!r} is enrolled twice")
        people[name] = part
    return people


class FaceRecogniser:
    """Names the faces in an image after the people of an :class:`EnrolmentStore`.

    Every face is scored against every enrolled person by the face-identity model
    (TAFE-Net; the weights for each person are generated once per change of the store).
    Faces and people are then paired greedily, best score first: a person names at most
    one face of an image, and a face whose best remaining score is below the model's
    threshold is :data:`UNKNOWN`.

    Parameters
    ----------
    store : EnrolmentStore
        Read live: enrolling or forgetting takes effect on the next call.
    model : FaceIdentityModel, optional
        Default: the shipped model (``data/tafe.pt``), loaded when first needed.
    """

    def __init__(self, store: EnrolmentStore, model: FaceIdentityModel | None = None) -> None:
        self.store, self._model = store, model
        self._tasks, self._revision = None, None

    @property
    def model(self) -> FaceIdentityModel:
        """The face-identity model (ValueError if the shipped file is missing or damaged)."""
        if self._model is None:
            from vj_dynamic.face.identity import load_identity_model

            self._model = load_identity_model()
        return self._model

    def _current_tasks(self):
        if self._revision != self.store.revision:
            people = [crops for _, crops in self.store]
            self._tasks = self.model.tasks(people) if people else None
            self._revision = self.store.revision
        return self._tasks

    def identify_crops(self, crops: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Names and scores (the logit of the name given, or of the best person) of crops."""
        tasks = self._current_tasks()
        if tasks is None or len(crops) == 0:
            return [UNKNOWN] * len(crops), np.full(len(crops), -np.inf)
        scores = self.model.scores(self.model.embed(crops), tasks)
        names, best = [UNKNOWN] * len(crops), scores.max(axis=1)
        threshold = float(self.model.threshold)
        taken: set[int] = set()
        for flat in np.argsort(scores, axis=None)[::-1]:
            face, person = divmod(int(flat), scores.shape[1])
            if scores[face, person] <= threshold:
                break
            if names[face] == UNKNOWN and person not in taken:
                names[face] = self.store.names[person]
                best[face] = scores[face, person]
                taken.add(person)
        return names, best

    def identify(self, image: np.ndarray, boxes: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Names (or :data:`UNKNOWN`) and scores of the faces in ``boxes`` of ``image``."""
        boxes = np.asarray(boxes).reshape(-1, 4)
        if len(boxes) == 0 or len(self.store) == 0:
            return [UNKNOWN] * len(boxes), np.full(len(boxes), -np.inf)
        return self.identify_crops(face_crops(image, boxes))
