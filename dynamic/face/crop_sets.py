"""Labelled verifier crops, cut from the sources exactly as at detection time.

* positives: the Caltech face crops, with boxes jittered the way a cascade's raw
  windows scatter around a face (measured on ORL), and the cascade's own windows on
  the ORL faces (and on pasted scenes);
* negatives: the cascade's own false positives on the face-free background photos,
  the cascade's windows on ORL images that miss the face, and the CBCL non-face patches.

Every crop is cut with :func:`vj_dynamic.face.crops.extract_crops`; :func:`assemble_crops`
gathers all of one part of the split (:func:`vj_dynamic.face.sources.split_sources`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from vj_dynamic.face.crops import CROP_SIZE, extract_crops
from vj_dynamic.face.scenes import make_scenes, orl_scenes
from vj_dynamic.face.sources import (
    CALTECH_FACE_BOX,
    SPLITS,
    SourceSplit,
    face_jitter,
    fit_inside,
)

from vj.image_sources import read_gray
from vj.metrics import box_iou

__all__ = ["CropSet", "assemble_crops", "caltech_positives", "cascade_samples", "cbcl_negatives"]

@dataclass
class CropSet:
    """Labelled verifier crops.

    Attributes
    ----------
    crops : (N, S, S) uint8 ndarray
    labels : (N,) int64 ndarray
        1 face, 0 not a face.
    sources : (N,) ndarray of str
        Where each crop came from (``caltech``, ``orl``, ``background``, ``cbcl``).
    """

    crops: np.ndarray
    labels: np.ndarray
    sources: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="<U10"))

    def __post_init__(self) -> None:
        n = len(self.crops)
        if self.labels.shape != (n,) or (self.sources.size and self.sources.shape != (n,)):
            raise ValueError("crops, labels and sources must have the same length")

    def __len__(self) -> int:
        return int(self.labels.size)

    @classmethod
    def concatenate(cls, parts: Sequence[CropSet]) -> CropSet:
        """One set holding every part, in order."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls(np.zeros((0, CROP_SIZE, CROP_SIZE), np.uint8), np.zeros(0, np.int64),
                       np.zeros(0, "<U10"))
        return cls(
            np.concatenate([p.crops for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.sources for p in parts]).astype("<U10"),
        )

    def counts(self) -> dict[str, int]:
        """Crops per source and label, e.g. ``{"caltech/face": 9000, ...}``."""
        keys = [f"{s}/{'face' if y else 'nonface'}" for s, y in zip(self.sources, self.labels,
                                                                    strict=True)]
        names, counts = np.unique(np.array(keys, dtype=str), return_counts=True)
        return {str(k): int(v) for k, v in zip(names, counts, strict=True)}


def _labelled(crops: np.ndarray, label: int, source: str) -> CropSet:
    n = len(crops)
    return CropSet(crops, np.full(n, label, np.int64), np.full(n, source, dtype="<U10"))


def caltech_positives(
    files: Sequence[Path], rng: np.random.Generator, *, per_face: int = 2
) -> CropSet:
    """Face crops from Caltech 36 x 36 images with cascade-like jittered boxes.

    The crops' context comes from the image itself: boxes are shifted to keep their
    regions inside it, since repeated border pixels would mark the positives.
    """
    out = []
    for path in files:
        image = read_gray(path)
        h, w = image.shape
        sx, sy = w / 36.0, h / 36.0
        x, y, bw, bh = CALTECH_FACE_BOX
        boxes = face_jitter((x * sx, y * sy, bw * sx, bh * sy), per_face, rng)
        boxes = np.rint(fit_inside(boxes, w, h)).astype(np.int64)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 8)
        out.append(extract_crops(image, boxes))
    crops = np.concatenate(out) if out else np.zeros((0, CROP_SIZE, CROP_SIZE), np.uint8)
    return _labelled(crops, 1, "caltech")


def cbcl_negatives(files: Sequence[Path]) -> CropSet:
    """The CBCL non-face patches, each resized whole to one crop."""
    crops = [cv2.resize(read_gray(p), (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LINEAR)
             for p in files]
    arr = np.stack(crops) if crops else np.zeros((0, CROP_SIZE, CROP_SIZE), np.uint8)
    return _labelled(arr, 0, "cbcl")


def cascade_samples(
    images: Iterable[tuple[np.ndarray, np.ndarray]],
    detector,
    rng: np.random.Generator,
    *,
    source: str,
    scale_factor: float = 1.1,
    min_size: int | None = None,
    max_per_image: int = 30,
    positive_iou: float = 0.5,
    negative_iou: float = 0.3,
) -> CropSet:
    """The windows a cascade accepts, labelled against known faces.

    Parameters
    ----------
    images : iterable of (gray image, (K, 4) face boxes)
        Images with every face boxed (``K = 0`` for background photos).
    detector : vj.CascadeDetector or sequence of them
        The lenient cascade whose raw windows are wanted; with several, the union of
        their windows (a verifier meant for any of them sees the windows of each).
    rng : Generator
        Draws the subsample of windows kept per image.
    source : str
        Source name recorded with each crop.
    scale_factor, min_size : optional
        The cascade's scan.
    max_per_image : int, optional
        At most this many windows per image and label (random subset).
    positive_iou, negative_iou : float, optional
        A window is a face at IoU >= ``positive_iou`` with a face box, not a face below
        ``negative_iou`` with every one; windows in between are left out.

    Returns
    -------
    CropSet
    """
    detectors = list(detector) if isinstance(detector, (list, tuple)) else [detector]
    parts = []
    for image, faces in images:
        found = [d.candidates(image, scale_factor, min_size) for d in detectors]
        cand = found[0] if len(found) == 1 else np.unique(np.concatenate(found), axis=0)
        if len(cand) == 0:
            continue
        faces = np.asarray(faces, np.float64).reshape(-1, 4)
        best = box_iou(cand, faces).max(axis=1) if len(faces) else np.zeros(len(cand))
        for label, mask in ((1, best >= positive_iou), (0, best < negative_iou)):
            index = np.flatnonzero(mask)
            if index.size > max_per_image:
                index = np.sort(rng.choice(index, max_per_image, replace=False))
            if index.size:
                parts.append(_labelled(extract_crops(image, cand[index]), label, source))
    return CropSet.concatenate(parts)


def assemble_crops(
    split: SourceSplit,
    part: str,
    detector,
    annotators: Sequence,
    rng: np.random.Generator,
    *,
    per_face: int = 2,
    max_per_image: int = 30,
    max_backgrounds: int | None = None,
    n_scenes: int = 0,
    scale_factor: float = 1.1,
    progress=None,
) -> CropSet:
    """Every verifier crop of one part of the split.

    Parameters
    ----------
    split : SourceSplit
    part : {"train", "tune", "eval"}
    detector : vj.CascadeDetector or sequence of them
        The lenient cascade(s): their accepted windows are the crops to judge.
    annotators : sequence of vj.CascadeDetector
        Cascades that box the ORL faces (see :func:`orl_face_box`).
    rng : Generator
    per_face : int, optional
        Jittered boxes per Caltech face.
    max_per_image : int, optional
        Cascade windows kept per image and label.
    max_backgrounds : int, optional
        Use at most this many background photos (a random subset); all by default.
    n_scenes : int, optional
        Also take the cascade's windows on this many scenes of the part's own faces
        pasted into its own backgrounds (:func:`make_scenes`): faces at every size,
        sharp and upscaled, among real clutter, as in crowded photographs.
    scale_factor : float, optional
        Pyramid step of the cascade's scan.
    progress : callable, optional
        Wraps the background iterable (e.g. ``tqdm``).

    Returns
    -------
    CropSet
    """
    if part not in SPLITS:
        raise ValueError(f"part must be one of {SPLITS}, got {part!r}")
    backgrounds = list(split.backgrounds[part])
    if max_backgrounds is not None and len(backgrounds) > max_backgrounds:
        backgrounds = [backgrounds[i] for i in
                       np.sort(rng.choice(len(backgrounds), max_backgrounds, replace=False))]
    wrap = progress or (lambda it, **_: it)
    orl = [(s.image, s.faces[0]) for s in orl_scenes(split.orl[part], annotators)]
    no_faces = np.zeros((0, 4), np.int64)
    scenes = []
    if n_scenes:
        scenes = make_scenes(split.backgrounds[part], split.caltech[part], orl, n_scenes, rng)
    return CropSet.concatenate([
        caltech_positives(split.caltech[part], rng, per_face=per_face),
        cascade_samples(((im, box[None]) for im, box in orl), detector, rng, source="orl",
                        scale_factor=scale_factor,
                        max_per_image=max_per_image),
        cascade_samples(((read_gray(p), no_faces) for p in wrap(backgrounds, desc=part)),
                        detector, rng, source="background", scale_factor=scale_factor,
                        max_per_image=max_per_image),
        cascade_samples(((s.image, s.faces) for s in wrap(scenes, desc=f"{part} scenes")),
                        detector, rng, source="scene", scale_factor=scale_factor,
                        max_per_image=max_per_image),
        cbcl_negatives(split.nonfaces[part]),
    ])
