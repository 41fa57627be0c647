"""Face crops in context (``faces/wider_train``): the detector's box cut from WIDER's.

WIDER FACE boxes are tight, roughly brow to chin and narrower than tall; a Haar
cascade's box is a square from a little above the eyebrows to below the mouth. The
shared data's ``faces/wider_train`` crops show each face with context (a square of
twice the face's size), so the detector's box can be cut from them: a square of side
:data:`WIDER_BOX_SCALE` ``* sqrt(w * h)`` centred :data:`WIDER_BOX_SHIFT` ``* h`` below
the WIDER box's centre (:func:`detector_box`).

The two constants were measured with OpenCV 4's ``haarcascade_frontalface_default``
(scale 1.1, ``minNeighbors`` 3) on every fourth crop: of the 695 of 1,046 faces it finds,
the median ratio of its box side to ``sqrt(w * h)`` is 1.138 (1.121 and 1.114 for
``alt`` and ``alt2``; spread 0.11 in log units, less than against ``w`` or ``h``
alone), and its box centre lies 0.02 ``h`` above the WIDER box's centre.

That mapping is right on average, not per face: WIDER's annotators framed faces
loosely (against the windows OpenCV's cascades accept on the same faces, the mapped box
is off by 8 % of its side across, 5 % down and 10 % in size, one standard deviation).
:func:`aligned_window` puts each face's window where frontal cascades accept it instead
(the median of their raw windows on the face), which is how the crops of
``faces/caltech36`` were framed; ``vj_apps.select_faces`` writes those windows into its
list and :func:`read_wider_faces` gives them to the trainer as :attr:`WiderFace.window`.

Crops of the same photograph share a *group* (:func:`photo_key`), so that a training
split never puts one person's photo on both sides.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .image_sources import read_gray
from .photo_sets import boxes_of, read_box_list

__all__ = ["WIDER_BOX_SCALE", "WIDER_BOX_SHIFT", "WiderFace", "aligned_window", "detector_box",
           "found_by", "photo_key", "read_keep_list", "read_wider_faces"]

#: Side of the detector's square box over ``sqrt(w * h)`` of the WIDER box.
WIDER_BOX_SCALE = 1.13
#: Vertical offset of the detector's box centre, in WIDER box heights (negative: up).
WIDER_BOX_SHIFT = -0.02


def detector_box(box) -> tuple[float, float, float, float]:
    """The detector's square box ``x, y, s, s`` for a tight WIDER box ``x, y, w, h``."""
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"box needs w, h > 0, got {box}")
    side = WIDER_BOX_SCALE * np.sqrt(w * h)
    cx, cy = x + w / 2, y + h / 2 + WIDER_BOX_SHIFT * h
    return cx - side / 2, cy - side / 2, side, side


def photo_key(relpath: str) -> str:
    """The photograph a crop came from: its path less the ``_fNNN`` face suffix."""
    stem, ext = os.path.splitext(relpath)
    return re.sub(r"_f\d+$", "", stem)


class WiderFace:
    """One crop: the image, the WIDER box in it and the photograph it came from.

    ``aligned``, when given, is the detector's window on the face measured on this
    crop (:func:`aligned_window`), ``x, y, s, s``; :attr:`window` falls back to
    :func:`detector_box` of the WIDER box without it.
    """

    __slots__ = ("aligned", "box", "image", "key", "relpath")

    def __init__(self, image: np.ndarray, box: np.ndarray, relpath: str,
                 aligned: tuple[float, float, float, float] | None = None) -> None:
        self.image, self.box, self.relpath = image, box, relpath
        self.aligned = None if aligned is None else tuple(float(v) for v in aligned)
        self.key = photo_key(relpath)

    @property
    def window(self) -> tuple[float, float, float, float]:
        """The detector's square window on the face, ``x, y, s, s``."""
        return self.aligned if self.aligned is not None else detector_box(self.box)


def read_wider_faces(
    root: str | os.PathLike, keep: set[str] | None = None
) -> list[WiderFace]:
    """The crops of a WIDER-style crop folder (``annotations.txt``: one box per crop).

    Parameters
    ----------
    root : path
        The folder (``faces/wider_train`` of the shared data).
    keep : set of str, or dict of str to box or None, optional
        Only the crops with these relative paths (e.g. a frontal selection); a dict
        (:func:`read_keep_list`) also gives each crop's aligned window, or None.

    Raises
    ------
    FileNotFoundError
        If the folder, its list or a listed crop is missing.
    ValueError
        If a crop has other than one box, or ``keep`` names crops the list lacks.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"face crop folder {root} not found")
    listed = read_box_list(root / "annotations.txt")
    if keep is not None and not set(keep) <= set(listed):
        unknown = sorted(set(keep) - set(listed))
        raise ValueError(f"{root}: {len(unknown)} crops to keep are not listed, "
                         f"e.g. {unknown[0]}")
    out = []
    for rel, texts in sorted(listed.items()):
        if keep is not None and rel not in keep:
            continue
        if len(texts) != 1:
            raise ValueError(f"{root}: crop {rel} has {len(texts)} boxes, expected one")
        aligned = keep.get(rel) if isinstance(keep, dict) else None
        out.append(WiderFace(read_gray(root / rel), boxes_of(texts)[0], rel, aligned))
    return out


def read_keep_list(path: str | os.PathLike) -> dict[str, tuple[float, ...] | None]:
    """A list of crop paths, one per line (``#`` comments and blank lines skipped).

    A line may follow its path with the face's aligned window, ``x y w h`` in crop
    pixels (as ``vj_apps.select_faces`` writes it); anything else after the path is
    ignored.

    Returns
    -------
    dict
        Crop path to its aligned window, or None where the line gives none.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"crop list {path} not found")
    out: dict[str, tuple[float, ...] | None] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        window = None
        if len(parts) == 5:
            try:
                window = tuple(float(v) for v in parts[1:])
            except ValueError:
                raise ValueError(f"{path}:{number}: window must be four numbers, "
                                 f"got {' '.join(parts[1:])!r}") from None
            if not (window[2] > 0 and window[3] > 0):
                raise ValueError(f"{path}:{number}: window needs w, h > 0, got {window}")
        out[parts[0]] = window
    return out


def _accepted_near(face: WiderFace, det, image: np.ndarray, scale_factor: float,
                   centre: float, sizes: tuple[float, float]) -> np.ndarray:
    """``det``'s raw windows on ``image`` whose centre and size fit the face's box."""
    x, y, s, _ = detector_box(face.box)
    raw = det.candidates(image, scale_factor)
    if len(raw) == 0:
        return raw.reshape(0, 4)
    rc = raw[:, :2] + raw[:, 2:] / 2
    ok = ((np.hypot(rc[:, 0] - (x + s / 2), rc[:, 1] - (y + s / 2)) < centre * s)
          & (raw[:, 2] > sizes[0] * s) & (raw[:, 2] < sizes[1] * s))
    return raw[ok]


def _views(face: WiderFace, equalize: bool) -> list[np.ndarray]:
    import cv2

    return [face.image, cv2.equalizeHist(face.image)] if equalize else [face.image]


def aligned_window(
    face: WiderFace,
    detectors,
    *,
    scale_factor: float = 1.1,
    centre: float = 0.3,
    sizes: tuple[float, float] = (0.7, 1.45),
    equalize: bool = True,
) -> tuple[float, float, float, float] | None:
    """The detector's window on the face, where frontal cascades accept it.

    Every raw window (no grouping) of every detector on the crop (and, with
    ``equalize``, on its histogram-equalised copy) that fits the face's box as in
    :func:`found_by` is collected; the window is their median centre and median side,
    a square ``x, y, s, s``. None when no detector accepts a window on the face.

    Parameters
    ----------
    face : WiderFace
    detectors : sequence of vj.CascadeDetector
    """
    found = [_accepted_near(face, det, image, scale_factor, centre, sizes)
             for image in _views(face, equalize) for det in detectors]
    raw = np.concatenate(found).astype(np.float64)
    if len(raw) == 0:
        return None
    cx, cy = np.median(raw[:, :2] + raw[:, 2:] / 2, axis=0)
    side = float(np.median(raw[:, 2]))
    return float(cx - side / 2), float(cy - side / 2), side, side


def found_by(
    face: WiderFace,
    detectors,
    *,
    scale_factor: float = 1.1,
    centre: float = 0.3,
    sizes: tuple[float, float] = (0.7, 1.45),
    equalize: bool = True,
) -> bool:
    """Whether any detector accepts a window on the face: a lenient frontal-face test.

    WIDER's "typical pose" includes three-quarter and some profile views. A face
    counts as frontal enough for a frontal cascade when some frontal cascade accepts
    at least one raw window (no grouping) on it: centre within ``centre`` box sides of
    :func:`detector_box`'s centre, side ``sizes`` times its side. With ``equalize``
    the histogram-equalised crop is tried too, so that dim, low-contrast frontal
    faces, which the cascades miss most, are kept.

    Parameters
    ----------
    face : WiderFace
    detectors : sequence of vj.CascadeDetector
    """
    return any(len(_accepted_near(face, det, image, scale_factor, centre, sizes))
               for image in _views(face, equalize) for det in detectors)
