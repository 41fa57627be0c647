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

__all__ = ["WIDER_BOX_SCALE", "WIDER_BOX_SHIFT", "WiderFace", "detector_box", "found_by",
           "photo_key", "read_keep_list", "read_wider_faces"]

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
    """One crop: the image, the WIDER box in it and the photograph it came from."""

    __slots__ = ("box", "image", "key", "relpath")

    def __init__(self, image: np.ndarray, box: np.ndarray, relpath: str) -> None:
        self.image, self.box, self.relpath = image, box, relpath
        self.key = photo_key(relpath)


def read_wider_faces(
    root: str | os.PathLike, keep: set[str] | None = None
) -> list[WiderFace]:
    """The crops of a WIDER-style crop folder (``annotations.txt``: one box per crop).

    Parameters
    ----------
    root : path
        The folder (``faces/wider_train`` of the shared data).
    keep : set of str, optional
        Only the crops with these relative paths (e.g. a frontal selection).

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
        out.append(WiderFace(read_gray(root / rel), boxes_of(texts)[0], rel))
    return out


def read_keep_list(path: str | os.PathLike) -> set[str]:
    """A list of crop paths, one per line (``#`` comments and blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"crop list {path} not found")
    lines = (line.split()[0] for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return set(lines)


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
    import cv2

    x, y, s, _ = detector_box(face.box)
    cx, cy = x + s / 2, y + s / 2
    images = [face.image, cv2.equalizeHist(face.image)] if equalize else [face.image]
    for image in images:
        for det in detectors:
            raw = det.candidates(image, scale_factor)
            if len(raw) == 0:
                continue
            rc = raw[:, :2] + raw[:, 2:] / 2
            ok = ((np.hypot(rc[:, 0] - cx, rc[:, 1] - cy) < centre * s)
                  & (raw[:, 2] > sizes[0] * s) & (raw[:, 2] < sizes[1] * s))
            if ok.any():
                return True
    return False
