"""Scoring detections on an annotated photo set: curves, budgets and recall by face group.

The protocol (used by ``python -m vj_apps.eval_photos``):

* faces are the photo set's scoring set; every other annotated box is "don't care"
  (:class:`vj.photo_sets.PhotoSet`);
* a detection matches a face by :mod:`vj.metrics`' ``"centre"`` rule (its centre within
  half the face's larger side of the face's centre, its side 0.5-3x that side), which
  suits WIDER's tight brow-to-chin boxes; detections are ranked by their scores;
* the detection rate is read at fixed false-positive budgets over the whole set
  (:func:`score_detections`);
* recall is also broken down by groups of faces (brightness and contrast terciles of
  the face box, WIDER's blur / illumination / occlusion codes, size terciles), with all
  detections counted and at a false-positive budget (:func:`group_recall`). A group's
  recall is measured by scoring its faces alone, with every other face don't-care.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .metrics import detection_rate_at, detection_rate_curve, match_detections
from .photo_sets import PhotoSet, face_photometrics, tercile_labels

__all__ = [
    "BUDGETS",
    "MATCH_RULE",
    "face_groups",
    "group_recall",
    "score_detections",
    "score_threshold_at",
]

#: False-positive budgets the detection rate is read at.
BUDGETS = (50, 100, 200, 500, 1000)
#: The matching rule of :mod:`vj.metrics` for tight annotation boxes.
MATCH_RULE = "centre"

Detections = Sequence[tuple[np.ndarray, np.ndarray]]


def _check(photos: PhotoSet, detections: Detections) -> None:
    if len(detections) != len(photos):
        raise ValueError(f"{len(photos)} photos but {len(detections)} detection lists")
    if photos.n_faces < 1:
        raise ValueError("the photo set has no faces to score")


def score_detections(
    photos: PhotoSet, detections: Detections, budgets: Sequence[int] = BUDGETS
) -> dict:
    """Detection rate against false positives over the whole set.

    Parameters
    ----------
    photos : PhotoSet
    detections : sequence of (boxes (N, 4), scores (N,))
        One entry per photo, in the set's order.
    budgets : sequence of int
        False-positive counts to read the detection rate at.

    Returns
    -------
    dict
        ``faces``, ``detections`` (counted), ``false_positives`` (all of them),
        ``rate_at`` ({budget: rate}), ``most`` (rate with every detection),
        ``curve`` (``false_positives``, ``detection_rate`` lists).
    """
    _check(photos, detections)
    m = match_detections([p.faces for p in photos.photos], detections, rule=MATCH_RULE,
                         ignore=[p.ignore for p in photos.photos])
    fp, rate = detection_rate_curve(m.scores, m.true_positive, m.n_faces)
    return {
        "faces": m.n_faces,
        "detections": int(m.scores.size),
        "false_positives": int((~m.true_positive).sum()),
        "rate_at": {int(b): detection_rate_at(m.scores, m.true_positive, m.n_faces, b)
                    for b in budgets},
        "most": float(rate[-1]),
        "curve": {"false_positives": fp.tolist(), "detection_rate": rate.tolist()},
    }


def score_threshold_at(photos: PhotoSet, detections: Detections, budget: int) -> float:
    """The lowest score threshold that keeps at most ``budget`` false positives.

    Detections scoring at least the threshold are kept; ``inf`` when even the
    best-scored detection would exceed the budget.
    """
    _check(photos, detections)
    m = match_detections([p.faces for p in photos.photos], detections, rule=MATCH_RULE,
                         ignore=[p.ignore for p in photos.photos])
    order = np.argsort(-m.scores, kind="stable")
    s, fp = m.scores[order], np.cumsum(~m.true_positive[order])
    last = np.r_[s[1:] != s[:-1], True] if s.size else np.zeros(0, bool)
    ok = last & (fp <= budget)
    return float(s[ok].min()) if ok.any() else float("inf")


def face_groups(photos: PhotoSet, images: Sequence[np.ndarray] | None = None) -> dict:
    """Labels of every scoring face (in set order) for the recall breakdowns.

    Parameters
    ----------
    photos : PhotoSet
    images : sequence of (H, W) uint8 ndarray, optional
        The photos, gray; read from disk when not given.

    Returns
    -------
    dict of str to (labels (F,) int64 ndarray, names tuple of str)
        ``brightness`` and ``contrast`` (terciles of the face box's mean gray and
        standard deviation), ``size`` (terciles of the box's larger side) and, where the
        set has WIDER attributes, ``blur``, ``illumination`` and ``occlusion``.
    """
    if images is None:
        from .image_sources import read_gray

        images = [read_gray(p.path) for p in photos.photos]
    if len(images) != len(photos):
        raise ValueError(f"{len(photos)} photos but {len(images)} images")
    stats = np.concatenate([face_photometrics(img, p.faces)
                            for img, p in zip(images, photos.photos, strict=True)])
    sides = np.concatenate([p.faces[:, 2:].max(axis=1) for p in photos.photos])
    groups: dict = {}
    for key, values in (("brightness", stats[:, 0]), ("contrast", stats[:, 1]),
                        ("size", sides)):
        labels, (a, b) = tercile_labels(np.nan_to_num(values))
        groups[key] = (labels, (f"low (<= {a:.0f})", f"middle ({a:.0f}-{b:.0f})",
                                f"high (> {b:.0f})"))
    names = {"blur": ("clear", "some", "heavy"), "illumination": ("normal", "extreme"),
             "occlusion": ("none", "partial", "heavy")}
    if all(p.attributes for p in photos.photos):
        for key, label_names in names.items():
            groups[key] = (np.concatenate([p.attributes[key] for p in photos.photos]),
                           label_names)
    return groups


def group_recall(
    photos: PhotoSet,
    detections: Detections,
    labels: np.ndarray,
    n_groups: int,
    threshold: float = -np.inf,
) -> list[tuple[int, float | None]]:
    """``(faces, recall)`` of each group of faces, counting detections scoring >= threshold.

    A group without faces gets recall ``None``.

    Each group is scored alone: its faces are the truths and every other annotated
    box (other groups' faces included) is don't-care, so a detection of a face of
    another group neither helps nor hurts.
    """
    _check(photos, detections)
    labels = np.asarray(labels, np.int64)
    if labels.shape != (photos.n_faces,):
        raise ValueError(f"need one label per face ({photos.n_faces}), got {labels.shape}")
    kept = []
    for boxes, scores in detections:
        scores = np.asarray(scores, np.float64).reshape(-1)
        keep = scores >= threshold
        kept.append((np.asarray(boxes).reshape(-1, 4)[keep], scores[keep]))
    starts = np.cumsum([0] + [len(p.faces) for p in photos.photos])
    out = []
    for g in range(n_groups):
        truths, ignore = [], []
        for k, p in enumerate(photos.photos):
            mine = labels[starts[k]:starts[k + 1]] == g
            truths.append(p.faces[mine])
            ignore.append(np.concatenate([p.ignore, p.faces[~mine]]))
        n = int(sum(len(t) for t in truths))
        if n == 0:
            out.append((0, None))
            continue
        m = match_detections(truths, kept, rule=MATCH_RULE, ignore=ignore)
        out.append((n, float(m.true_positive.sum()) / n))
    return out
