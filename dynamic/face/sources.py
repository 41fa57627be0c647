"""Where the face verifiers' data comes from, and how it is split by image.

The verifiers judge what a lenient cascade accepts, so their data is made of cascade
windows (see :mod:`vj_dynamic.face.crop_sets`). This module lists the sources in the
shared data and assigns each file to ``train``, ``tune`` (early stopping, IDK
thresholds) or ``eval`` (the reported measurements), by *image* (ORL by person), so no
photo, face or person lends crops to two parts; and it scatters boxes around a face
the way a cascade's raw windows scatter (:func:`face_jitter`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from vj_dynamic.face.crops import CROP_MARGIN, CROP_SIZE

from vj.image_sources import image_files, read_gray, resolve_data_dir
from vj.photo_sets import read_box_list
from vj.wider_faces import WiderFace, photo_key, read_wider_faces

__all__ = [
    "CALTECH_FACE_BOX",
    "SPLITS",
    "SourceSplit",
    "face_jitter",
    "fit_inside",
    "split_sources",
]

SPLITS = ("train", "tune", "eval")


#: Where a cascade's box falls on a 36 x 36 Caltech crop (median of OpenCV's default
#: frontal-face cascade over the set): ``x, y, w, h``.
CALTECH_FACE_BOX = (3.3, 1.7, 29.7, 29.7)


# Raw cascade windows around a face (ORL, IoU >= 0.4 with the grouped box): centre
# offsets have a standard deviation of ~0.055 box widths, log-scale ~0.12, mean -0.04.
_JITTER_SHIFT = 0.055

_JITTER_LOG_SCALE = 0.12

_JITTER_LOG_SCALE_MEAN = -0.02


def _part(key: str, seed: int, fractions: tuple[float, float]) -> str:
    """``train`` / ``tune`` / ``eval`` for a file or person, stable under additions."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "little") / 2.0**64
    if u < fractions[1]:
        return "eval"
    if u < fractions[0] + fractions[1]:
        return "tune"
    return "train"


def _unique_crops(files: list[Path], threshold: float = 0.97) -> list[Path]:
    """One file of every group of near-identical crops.

    The Caltech set holds hundreds of near-copies (the same photo re-encoded or shifted
    by a pixel); a copy on each side of the split would inflate the held-out scores.
    Two crops are copies when their 8 x 8 thumbnails correlate above ``threshold``
    (distinct faces stay below ~0.95), and copies of copies are copies.
    """
    thumbs = np.stack([
        cv2.resize(read_gray(p), (8, 8), interpolation=cv2.INTER_AREA).ravel() for p in files
    ]).astype(np.float64)
    thumbs -= thumbs.mean(axis=1, keepdims=True)
    thumbs /= np.maximum(np.linalg.norm(thumbs, axis=1, keepdims=True), 1e-9)
    parent = np.arange(len(files))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(files), 1024):
        corr = thumbs[start:start + 1024] @ thumbs.T
        for i, j in zip(*np.nonzero(corr > threshold), strict=True):
            a, b = root(start + int(i)), root(int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [path for i, path in enumerate(files) if root(i) == i]


@dataclass(frozen=True)
class SourceSplit:
    """The shared data's files, each assigned to one of :data:`SPLITS`.

    Attributes
    ----------
    caltech, orl, backgrounds, nonfaces : dict of str to list of Path
        Files per part: Caltech face crops (near-duplicates removed), ORL images
        (split by person), background photos (UMD and SUN) and CBCL non-face patches.
    wider : dict of str to list of str
        Real face crops in context (``faces/wider_train``), by path below
        ``wider_root``, split by source photograph (:func:`vj.wider_faces.photo_key`).
    wider_root : Path or None
        Their folder, ``None`` where the shared data has none.
    """

    caltech: dict[str, list[Path]]
    orl: dict[str, list[Path]]
    backgrounds: dict[str, list[Path]]
    nonfaces: dict[str, list[Path]]
    wider: dict[str, list[str]] = field(default_factory=lambda: {p: [] for p in SPLITS})
    wider_root: Path | None = None

    def counts(self) -> dict[str, dict[str, int]]:
        """Number of files of each source in each part."""
        return {
            name: {part: len(getattr(self, name)[part]) for part in SPLITS}
            for name in ("caltech", "orl", "backgrounds", "nonfaces", "wider")
        }

    def wider_faces(self, part: str) -> list[WiderFace]:
        """The WIDER face crops of one part (none when the data has no such folder)."""
        if self.wider_root is None or not self.wider[part]:
            return []
        return read_wider_faces(self.wider_root, set(self.wider[part]))


def split_sources(
    data_dir: str | Path | None = None,
    *,
    fractions: tuple[float, float] = (0.15, 0.15),
    seed: int = 0,
) -> SourceSplit:
    """Assign every file of the shared data to ``train``, ``tune`` or ``eval``.

    Parameters
    ----------
    data_dir : path, optional
        The shared data folder (see :func:`resolve_data_dir`).
    fractions : (float, float), optional
        Shares of ``tune`` and ``eval``; the rest is ``train``.
    seed : int, optional
        Seed of the assignment (a hash of seed and file name, so adding files does not
        move the others).

    Returns
    -------
    SourceSplit
    """
    if len(fractions) != 2 or min(fractions) <= 0 or sum(fractions) >= 1:
        raise ValueError(f"fractions must be two shares in (0, 1) summing below 1, got {fractions}")
    root = resolve_data_dir(data_dir)

    def by_file(files: Iterable[Path]) -> dict[str, list[Path]]:
        parts: dict[str, list[Path]] = {p: [] for p in SPLITS}
        for path in files:
            parts[_part(path.name, seed, fractions)].append(path)
        return parts

    orl: dict[str, list[Path]] = {p: [] for p in SPLITS}
    person_dirs = sorted(d for d in (root / "orl").iterdir() if d.is_dir())
    if not person_dirs:
        raise ValueError(f"no ORL person folders in {root / 'orl'}")
    # 40 people only: an exact share per part, not a hash draw, keeps each part populated.
    rng = np.random.default_rng(seed)
    order = [person_dirs[i] for i in rng.permutation(len(person_dirs))]
    n_eval = max(1, round(fractions[1] * len(order)))
    n_tune = max(1, round(fractions[0] * len(order)))
    for i, person in enumerate(order):
        part = "eval" if i < n_eval else "tune" if i < n_eval + n_tune else "train"
        orl[part] += [p for p in image_files(person) if p.suffix.lower() == ".pgm"]
    backgrounds = [*image_files(root / "backgrounds" / "umd"),
                   *image_files(root / "backgrounds" / "sun")]
    wider_root = root / "faces" / "wider_train"
    wider: dict[str, list[str]] = {p: [] for p in SPLITS}
    if (wider_root / "annotations.txt").is_file():
        for rel in sorted(read_box_list(wider_root / "annotations.txt")):
            wider[_part(photo_key(rel), seed, fractions)].append(rel)
    return SourceSplit(
        caltech=by_file(_unique_crops(image_files(root / "faces" / "caltech36"))),
        orl=orl,
        backgrounds=by_file(backgrounds),
        nonfaces=by_file(image_files(root / "nonfaces" / "cbcl24")),
        wider=wider,
        wider_root=wider_root if any(wider.values()) else None,
    )


def face_jitter(
    box: Sequence[float], n: int, rng: np.random.Generator, *, limit: float = 2.0
) -> np.ndarray:
    """``n`` square boxes scattered around ``box`` like a cascade's raw windows on a face.

    Centre offsets and log-scale are normal (spreads measured on ORL), truncated at
    ``limit`` standard deviations. Returns ``(n, 4)`` float64 ``x, y, w, h``.
    """
    x, y, w, h = (float(v) for v in box)
    side = np.sqrt(w * h)
    z = np.clip(rng.standard_normal((n, 3)), -limit, limit)
    new_side = side * np.exp(_JITTER_LOG_SCALE_MEAN + _JITTER_LOG_SCALE * z[:, 2])
    cx = x + w / 2 + _JITTER_SHIFT * side * z[:, 0]
    cy = y + h / 2 + _JITTER_SHIFT * side * z[:, 1]
    return np.stack([cx - new_side / 2, cy - new_side / 2, new_side, new_side], axis=1)


def fit_inside(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Shift (and if need be shrink) boxes so their crop regions stay inside the image."""
    margin_ratio = CROP_SIZE / (CROP_SIZE - 2 * CROP_MARGIN)
    boxes = boxes.copy()
    limit = min(width, height) / margin_ratio
    boxes[:, 2:] = np.minimum(boxes[:, 2:], limit)
    grow = boxes[:, 2:] * (margin_ratio - 1) / 2
    boxes[:, 0] = np.clip(boxes[:, 0], grow[:, 0], width - boxes[:, 2] - grow[:, 0])
    boxes[:, 1] = np.clip(boxes[:, 1], grow[:, 1], height - boxes[:, 3] - grow[:, 1])
    return boxes
