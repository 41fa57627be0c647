"""Detection metrics: one matching rule and the detection-rate-at-false-positives curve.

Every evaluation in the project (cascades alone, verified detection, real photographs)
scores detections the same way:

1. Detections of an image are taken in order of decreasing score (ties keep their
   order).
2. Each claims the still unclaimed face it matches best, if it matches one. Two rules
   say what "matches" means:

   * ``"iou"``: intersection over union at least ``iou`` (default 0.5); best = highest
     IoU. Suits boxes drawn the way the detector draws them.
   * ``"centre"``: the detection's centre lies within half the face's larger side of
     the face's centre, and its side is 0.5 to 3 times that side; best = nearest
     centre. Suits annotations whose boxes are tighter or looser than a detector's
     square window (WIDER FACE's tight boxes), where IoU punishes a correct detection
     for the annotation style.

3. A detection that claims no face is a false positive, unless it matches (by the same
   rule) a "don't care" box: then it is left out of the count altogether. A second
   detection of an already claimed face is a false positive.

The curve then follows from sorting all images' detections by score together: for each
score threshold, the fraction of faces found against the number of false positives
(:func:`detection_rate_curve`), read at a false-positive budget with
:func:`detection_rate_at`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "MATCH_RULES",
    "Matches",
    "box_iou",
    "detection_rate_at",
    "detection_rate_curve",
    "false_positives_at",
    "match_detections",
    "match_quality",
    "plot_detection_rate",
]

MATCH_RULES = ("iou", "centre")


class Matches(NamedTuple):
    """Every counted detection of an evaluation, labelled."""

    #: ``(D,)`` float64: the detections' scores.
    scores: np.ndarray
    #: ``(D,)`` bool: whether each detection found a face.
    true_positive: np.ndarray
    #: Faces that count (don't-care boxes excluded).
    n_faces: int


def _boxes(a) -> np.ndarray:
    return np.asarray(a, np.float64).reshape(-1, 4)


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of every box with every other, ``(N, M)``; boxes ``x, y, w, h``."""
    a = _boxes(boxes)[:, None]
    b = _boxes(others)[None]
    w = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return inter / np.maximum(union, 1e-12)


def _centre_quality(dets: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``1 - distance / (side / 2)`` where the centre rule holds, else ``-inf``."""
    d, f = dets[:, None], faces[None]
    side = np.maximum(f[..., 2], f[..., 3])
    dist = np.hypot(d[..., 0] + d[..., 2] / 2 - f[..., 0] - f[..., 2] / 2,
                    d[..., 1] + d[..., 3] / 2 - f[..., 1] - f[..., 3] / 2)
    dside = np.sqrt(d[..., 2] * d[..., 3])
    ok = (dist <= side / 2) & (dside >= 0.5 * side) & (dside <= 3.0 * side)
    return np.where(ok, 1.0 - dist / np.maximum(side / 2, 1e-12), -np.inf)


def match_quality(dets: np.ndarray, faces: np.ndarray, rule: str = "iou",
                  iou: float = 0.5) -> np.ndarray:
    """``(N, M)`` match quality of detections with faces; ``-inf`` where they do not match.

    Higher is a better match; see the module docstring for the rules.
    """
    if rule not in MATCH_RULES:
        raise ValueError(f"unknown match rule {rule!r}; choose from {', '.join(MATCH_RULES)}")
    dets, faces = _boxes(dets), _boxes(faces)
    if rule == "centre":
        return _centre_quality(dets, faces)
    q = box_iou(dets, faces)
    return np.where(q >= iou, q, -np.inf)


def _match_image(boxes, scores, faces, ignore, rule, iou) -> tuple[np.ndarray, np.ndarray]:
    """``(true_positive, counted)`` for one image's detections."""
    tp = np.zeros(len(boxes), bool)
    counted = np.ones(len(boxes), bool)
    if not len(boxes):
        return tp, counted
    quality = match_quality(boxes, faces, rule, iou) if len(faces) else None
    dont_care = (np.isfinite(match_quality(boxes, ignore, rule, iou)).any(axis=1)
                 if len(ignore) else np.zeros(len(boxes), bool))
    free = np.ones(len(faces), bool)
    for i in np.argsort(-scores, kind="stable"):
        if quality is not None:
            q = np.where(free, quality[i], -np.inf)
            j = int(np.argmax(q))
            if np.isfinite(q[j]):
                tp[i], free[j] = True, False
                continue
        counted[i] = not dont_care[i]
    return tp, counted


def match_detections(
    truths: Sequence[np.ndarray],
    detections: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    rule: str = "iou",
    iou: float = 0.5,
    ignore: Sequence[np.ndarray] | None = None,
) -> Matches:
    """Label every detection true or false positive against the images' faces.

    Parameters
    ----------
    truths : sequence of (F, 4) array_like
        Each image's faces, ``x, y, w, h``.
    detections : sequence of (boxes (N, 4), scores (N,))
        One entry per image.
    rule : {"iou", "centre"}, optional
        What makes a detection match a face (module docstring).
    iou : float, optional
        Overlap the ``"iou"`` rule needs.
    ignore : sequence of (G, 4) array_like, optional
        Each image's "don't care" boxes: unmatched detections on them are not counted.

    Returns
    -------
    Matches
        ``(scores, true_positive, n_faces)`` of the counted detections.
    """
    if len(truths) != len(detections):
        raise ValueError(f"{len(truths)} images' faces but {len(detections)} detection lists")
    if ignore is not None and len(ignore) != len(truths):
        raise ValueError(f"{len(truths)} images' faces but {len(ignore)} don't-care lists")
    all_scores, all_tp, n_faces = [], [], 0
    for k, (faces, (boxes, scores)) in enumerate(zip(truths, detections, strict=True)):
        faces, boxes = _boxes(faces), _boxes(boxes)
        scores = np.asarray(scores, np.float64).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError("each detection needs one score")
        skip = _boxes(ignore[k]) if ignore is not None else np.zeros((0, 4))
        tp, counted = _match_image(boxes, scores, faces, skip, rule, iou)
        n_faces += len(faces)
        all_scores.append(scores[counted])
        all_tp.append(tp[counted])
    if not all_scores:
        return Matches(np.zeros(0), np.zeros(0, bool), n_faces)
    return Matches(np.concatenate(all_scores), np.concatenate(all_tp), n_faces)


def detection_rate_curve(
    scores: np.ndarray, true_positive: np.ndarray, n_faces: int
) -> tuple[np.ndarray, np.ndarray]:
    """Faces found against false positives, over every score threshold.

    Returns
    -------
    false_positives : (T,) int64 ndarray
        False positives at each threshold, from the strictest to the most lenient.
    detection_rate : (T,) float64 ndarray
        Fraction of the ``n_faces`` found at that threshold.
    """
    if n_faces < 1:
        raise ValueError("need at least one face to measure a detection rate")
    scores = np.asarray(scores, np.float64)
    true_positive = np.asarray(true_positive, bool)
    order = np.argsort(-scores, kind="stable")
    s, tp = scores[order], true_positive[order]
    cum_tp, cum_fp = np.cumsum(tp), np.cumsum(~tp)
    # A threshold keeps all detections of equal score, so only the last of a run counts.
    last = np.r_[s[1:] != s[:-1], True] if s.size else np.zeros(0, bool)
    return (np.r_[0, cum_fp[last]].astype(np.int64),
            np.r_[0, cum_tp[last]].astype(np.float64) / n_faces)


def detection_rate_at(
    scores: np.ndarray, true_positive: np.ndarray, n_faces: int, false_positives: int
) -> float:
    """Best fraction of faces found with at most ``false_positives`` false positives."""
    fp, rate = detection_rate_curve(scores, true_positive, n_faces)
    ok = fp <= false_positives
    return float(rate[ok].max()) if ok.any() else 0.0


def false_positives_at(
    scores: np.ndarray, true_positive: np.ndarray, n_faces: int, detection_rate: float
) -> int | None:
    """Fewest false positives with which ``detection_rate`` of the faces are found.

    ``None`` when no threshold reaches that rate.
    """
    fp, rate = detection_rate_curve(scores, true_positive, n_faces)
    ok = rate >= detection_rate - 1e-12
    return int(fp[ok].min()) if ok.any() else None


def plot_detection_rate(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike,
    *,
    title: str = "",
    marks: Sequence[int] = (),
) -> None:
    """Plot detection rate against false positives (symlog axis), one line per detector.

    Parameters
    ----------
    curves : mapping of name -> (false_positives, detection_rate)
        As :func:`detection_rate_curve` returns them.
    path : path
        Image file to write (PNG, SVG, ... by its suffix).
    title : str, optional
    marks : sequence of int, optional
        False-positive budgets to draw as vertical guides.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, (fp, rate) in curves.items():
        ax.step(np.asarray(fp), np.asarray(rate), where="post", label=name)
    for m in marks:
        ax.axvline(m, color="0.8", lw=0.8, zorder=0)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_xlabel("false positives")
    ax.set_ylabel("detection rate")
    ax.set_ylim(0, 1)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
