"""Verifier crops from real photographs: WIDER faces in context, and degraded copies.

Faces in real photographs are dimmer, blurrier, smaller and more varied than the web
face crops the first verifiers learned from. The shared data's ``faces/wider_train``
crops show real faces with context around them, so the verifiers can be shown:

* the face under boxes scattered like a cascade's raw windows
  (:func:`wider_positives`, the detector's box from :func:`vj.wider_faces.detector_box`);
* the windows a lenient cascade itself accepts on the face (:func:`wider_windows`);
  only its windows *on* the face are used: a crop's context can hold other people's
  faces, which the annotations of the crop do not box;
* photometrically degraded copies (:mod:`vj.augment`) of faces and non-faces alike
  (:func:`augmented_copies`), so that a degradation teaches robustness and not a cue
  ("blurred, hence a face").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from vj_dynamic.face.crop_sets import CropSet
from vj_dynamic.face.crops import CROP_SIZE, extract_crops
from vj_dynamic.face.sources import face_jitter, fit_inside

from vj.augment import Photometric, augment_windows
from vj.metrics import box_iou
from vj.wider_faces import WiderFace, detector_box

__all__ = ["augmented_copies", "wider_positives", "wider_windows"]


def _labelled(crops: np.ndarray, label: int, source: str) -> CropSet:
    n = len(crops)
    return CropSet(crops, np.full(n, label, np.int64), np.full(n, source, dtype="<U10"))


def wider_positives(
    faces: Sequence[WiderFace], rng: np.random.Generator, *, per_face: int = 2
) -> CropSet:
    """Each face under ``per_face`` boxes jittered like a cascade's windows (source ``wider``)."""
    out = []
    for face in faces:
        h, w = face.image.shape
        boxes = face_jitter(detector_box(face.box), per_face, rng)
        boxes = np.rint(fit_inside(boxes, w, h)).astype(np.int64)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 8)
        out.append(extract_crops(face.image, boxes))
    crops = np.concatenate(out) if out else np.zeros((0, CROP_SIZE, CROP_SIZE), np.uint8)
    return _labelled(crops, 1, "wider")


def wider_windows(
    faces: Sequence[WiderFace],
    detectors: Sequence,
    rng: np.random.Generator,
    *,
    scale_factor: float = 1.1,
    max_per_face: int = 6,
    positive_iou: float = 0.5,
) -> CropSet:
    """The lenient cascades' windows on each face (IoU >= ``positive_iou`` with its box).

    Windows are drawn from the union of the detectors' windows, at most
    ``max_per_face`` per face; source ``wider_win``.
    """
    parts = []
    for face in faces:
        found = [d.candidates(face.image, scale_factor) for d in detectors]
        cand = np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 4))
        if len(cand) == 0:
            continue
        box = np.asarray(detector_box(face.box), np.float64)[None]
        index = np.flatnonzero(box_iou(cand, box)[:, 0] >= positive_iou)
        if index.size > max_per_face:
            index = np.sort(rng.choice(index, max_per_face, replace=False))
        if index.size:
            parts.append(_labelled(extract_crops(face.image, cand[index]), 1, "wider_win"))
    return CropSet.concatenate(parts)


def augmented_copies(
    crops: CropSet, share: float, rng: np.random.Generator, aug: Photometric | None = None
) -> CropSet:
    """Degraded copies of a random ``share`` of the faces and the same share of non-faces.

    Returns a new set (source ``augmented``) holding only the copies.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    parts = []
    for label in (1, 0):
        index = np.flatnonzero(crops.labels == label)
        pick = np.sort(rng.choice(index, int(round(share * index.size)), replace=False))
        if pick.size:
            parts.append(_labelled(augment_windows(crops.crops[pick], rng, aug), label,
                                   "augmented"))
    return CropSet.concatenate(parts)
