"""Detection scenes for the verifiers: ORL portraits and faces pasted into photographs.

A :class:`Scene` is a gray image with every face boxed. ORL images are scenes of one
face each (:func:`orl_scenes`); :func:`make_scenes` pastes held-out faces at many sizes
into held-out background photos, a cheap smoke test of detection (real photographs are
harder: see :mod:`vj.metrics` and the real-photo evaluation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from vj_dynamic.face.sources import CALTECH_FACE_BOX

from vj.image_sources import read_gray

__all__ = ["ORL_FACE_BOX", "Scene", "make_scenes", "orl_face_box", "orl_scenes"]

#: Median box of the same cascade on a 92 x 112 ORL image; used where it finds none.
ORL_FACE_BOX = (6.5, 23.0, 77.5, 77.5)


@dataclass
class Scene:
    """A photograph with every face boxed.

    Attributes
    ----------
    image : (H, W) uint8 ndarray
    faces : (K, 4) int64 ndarray
        ``x, y, w, h`` in the cascade's box convention.
    name : str
    """

    image: np.ndarray
    faces: np.ndarray
    name: str = ""


def orl_face_box(image: np.ndarray, annotators: Sequence) -> np.ndarray:
    """The face box of an ORL image, from the boxes of several cascades.

    An ORL image is a head-and-shoulders portrait: the face is the largest face-like
    thing in it, and cascades err towards smaller boxes on its parts (mouth and chin).
    So the largest box any annotator (a ``vj.CascadeDetector``) finds is taken, unless
    it is much smaller than the median ORL face, in which case the median box (scaled
    to the image) stands in.
    """
    h, w = image.shape
    x, y, bw, bh = ORL_FACE_BOX
    median = np.rint([x * w / 92, y * h / 112, bw * w / 92, bh * h / 112]).astype(np.int64)
    found = [det.detect(image, 1.05, 2, 30) for det in annotators]
    boxes = np.concatenate([b for b in found if len(b)] or [np.zeros((0, 4), np.int32)])
    if len(boxes) == 0:
        return median
    best = boxes[np.argmax(boxes[:, 2])].astype(np.int64)
    return best if best[2] >= 0.85 * median[2] else median


def orl_scenes(files: Sequence[Path], annotators: Sequence) -> list[Scene]:
    """ORL images as detection scenes of one face each (see :func:`orl_face_box`)."""
    scenes = []
    for path in files:
        image = read_gray(path)
        box = orl_face_box(image, annotators)
        scenes.append(Scene(image, box[None], f"orl/{path.parent.name}/{path.name}"))
    return scenes


def _cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to cover ``width x height`` and crop the centre."""
    h, w = image.shape
    s = max(width / w, height / h)
    scaled = cv2.resize(image, (max(width, round(w * s)), max(height, round(h * s))),
                        interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    top = (scaled.shape[0] - height) // 2
    left = (scaled.shape[1] - width) // 2
    return scaled[top:top + height, left:left + width]


def _feathered(h: int, w: int, feather: float) -> np.ndarray:
    """A ``(h, w)`` alpha mask: 1 inside, ramping to 0 over ``feather`` pixels at the edges."""
    ys = np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5)
    xs = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5)
    ramp = np.minimum(ys[:, None], xs[None, :]) / max(feather, 1e-6)
    return np.clip(ramp, 0.0, 1.0).astype(np.float32)


def make_scenes(
    backgrounds: Sequence[Path],
    caltech: Sequence[Path],
    orl: Sequence[tuple[np.ndarray, np.ndarray]],
    n_scenes: int,
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (640, 480),
    faces_per_scene: tuple[int, int] = (3, 10),
    caltech_sides: tuple[float, float] = (24.0, 60.0),
    orl_sides: tuple[float, float] = (30.0, 140.0),
) -> list[Scene]:
    """Crowded test scenes: faces pasted at many sizes into face-free photographs.

    Parameters
    ----------
    backgrounds : sequence of Path
        Photos with no faces; each scene uses one (scaled to cover ``size``).
    caltech : sequence of Path
        36 x 36 face crops, pasted with feathered edges. Their face box side is drawn
        log-uniformly from ``caltech_sides`` (beyond ~2x upscaling they blur).
    orl : sequence of (image, face box)
        Whole ORL images with their face box, pasted with feathered edges; face side
        drawn from ``orl_sides``.
    n_scenes : int
    rng : Generator
    size : (width, height), optional
    faces_per_scene : (int, int), optional
        Inclusive range of faces per scene (fewer when they do not fit).

    Returns
    -------
    list of Scene
    """
    if n_scenes < 1 or not backgrounds or not (caltech or orl):
        raise ValueError("need n_scenes >= 1, background photos and faces to paste")
    width, height = size
    scenes = []
    for k in range(n_scenes):
        path = backgrounds[int(rng.integers(len(backgrounds)))]
        canvas = _cover(read_gray(path), width, height).astype(np.float32)
        taken: list[tuple[int, int, int, int]] = []
        faces = []
        for _ in range(int(rng.integers(faces_per_scene[0], faces_per_scene[1] + 1))):
            use_orl = bool(orl) and (not caltech or rng.random() < 0.5)
            if use_orl:
                patch, box = orl[int(rng.integers(len(orl)))]
                lo, hi = orl_sides
            else:
                patch = read_gray(caltech[int(rng.integers(len(caltech)))])
                box = np.array(CALTECH_FACE_BOX) * patch.shape[1] / 36.0
                lo, hi = caltech_sides
            side = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            s = side / float(box[2])
            ph, pw = round(patch.shape[0] * s), round(patch.shape[1] * s)
            if ph >= height or pw >= width or min(ph, pw) < 4:
                continue
            for _attempt in range(20):
                top, left = int(rng.integers(height - ph + 1)), int(rng.integers(width - pw + 1))
                if all(left + pw <= x0 or x1 <= left or top + ph <= y0 or y1 <= top
                       for x0, y0, x1, y1 in taken):
                    break
            else:
                continue
            scaled = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_AREA if s < 1
                                else cv2.INTER_LINEAR).astype(np.float32)
            alpha = _feathered(ph, pw, 0.06 * min(ph, pw))
            region = canvas[top:top + ph, left:left + pw]
            region[...] = alpha * scaled + (1 - alpha) * region
            taken.append((left, top, left + pw, top + ph))
            faces.append([left + box[0] * s, top + box[1] * s, box[2] * s, box[3] * s])
        image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        boxes = np.rint(np.array(faces, np.float64).reshape(-1, 4)).astype(np.int64)
        scenes.append(Scene(image, boxes, f"scene/{k:04d}/{path.name}"))
    return scenes
