"""Face detection as one prediction cascade: Viola-Jones stages, then neural verifiers.

The Haar cascade, cut short to a lenient operating point, rejects almost every window
of a frame for a few feature evaluations each. The windows it accepts are cropped with
a little context and judged by an IDK cascade of neural verifiers
(:class:`~dynamic.verifier.FaceVerifier`): a tiny CNN answers where it is sure and a
SkipNet takes the rest. Only windows judged to be faces are grouped into detections,
so windows the verifiers reject do not vote.

:class:`VerifiedDetector` has the call of :class:`vj.CascadeDetector`
(``detect(image, scale_factor, min_neighbors, min_size, max_size, return_scores)``)
and reports per-frame statistics in ``last_stats``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

import vj
from dynamic.crops import extract_crops
from dynamic.verifier import FaceVerifier, load_face_verifier
from vj.detector import GROUP_EPS, clip_boxes, to_gray
from vj.grouping import partition_similar

__all__ = ["DEFAULT_CASCADE", "STAGES_DROPPED", "VerifiedDetector", "load_verifier"]

#: The project's own cascade; OpenCV's default frontal-face cascade stands in while
#: it is not shipped.
DEFAULT_CASCADE = "frontalface"
_FALLBACK_CASCADE = "opencv:default"

#: Stages cut from the end of the cascade for the lenient operating point. On OpenCV's
#: default cascade (25 stages) this keeps 18: about twice the raw windows of the full
#: cascade, and every face of the composite test scenes it can reach at all.
STAGES_DROPPED = 7


def _as_cascade(cascade: Any) -> vj.Cascade:
    if isinstance(cascade, vj.CascadeDetector):
        return cascade.cascade
    if isinstance(cascade, vj.Cascade):
        return cascade
    if cascade is None:
        try:
            return vj.load_cascade(DEFAULT_CASCADE)
        except FileNotFoundError:
            return vj.load_cascade(_FALLBACK_CASCADE)
    if isinstance(cascade, (str, os.PathLike)):
        return vj.load_cascade(cascade)
    raise ValueError(
        "cascade must be a built-in name, a file path, a vj.Cascade or a vj.CascadeDetector, "
        f"got {type(cascade).__name__}"
    )


def _group_scores(
    rects: np.ndarray, weights: np.ndarray, boxes: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per grouped box: the sum of its members' weights; the group label of every rect;
    per grouped box: the index of one of its members.

    ``group_rectangles`` returns averaged boxes, not memberships; the groups are
    recomputed here (same partition, same float32 averaging) and matched to its output
    by box and count.
    """
    labels, n_classes = partition_similar(np.ascontiguousarray(rects, np.int64), GROUP_EPS)
    sizes = np.bincount(labels, minlength=n_classes)
    sums = np.zeros((n_classes, 4), np.int64)
    np.add.at(sums, labels, rects.astype(np.int64))
    inv = np.float32(1.0) / sizes.astype(np.float32)
    averages = np.rint(sums.astype(np.float32) * inv[:, None]).astype(np.int64)
    weight = np.bincount(labels, weights=weights, minlength=n_classes)
    first_member = np.full(n_classes, -1, np.int64)
    first_member[labels[::-1]] = np.arange(len(labels))[::-1]
    scores = np.zeros(len(boxes))
    members = np.zeros(len(boxes), np.int64)
    for i, (box, count) in enumerate(zip(boxes, counts, strict=True)):
        match = np.flatnonzero((sizes == count) & np.all(averages == box, axis=1))
        c = int(match[0]) if match.size else int(np.argmin(np.abs(averages - box).sum(axis=1)))
        scores[i], members[i] = weight[c], first_member[c]
    return scores, labels, members


class VerifiedDetector:
    """A lenient Haar cascade whose accepted windows are verified by neural networks.

    Parameters
    ----------
    cascade : str, path, vj.Cascade or vj.CascadeDetector, optional
        The cascade (default: the project's ``"frontalface"``, or OpenCV's default
        cascade while that is not shipped). Only its first stages are run.
    verifier : FaceVerifier, optional
        The verifiers (default: the shipped ones, :func:`load_face_verifier`).
    stages : int, optional
        Cascade stages to run; default all but the last :data:`STAGES_DROPPED`.

    Attributes
    ----------
    last_stats : dict
        Statistics of the last :meth:`detect` call:

        ``windows``
            windows the cascade scanned (also ``proposed``: what the first stage saw);
        ``candidates``
            windows the cascade accepted: the regions proposed to the verifiers;
        ``stages``
            one dict per stage, ``cascade``, ``tiny``, ``skipnet``, each with
            ``decided`` (windows it answered for), ``ms`` and ``flops`` (``None`` for
            the cascade, whose work is feature look-ups, not multiply-adds);
        ``accepted``
            windows the verifiers judged to be faces;
        ``box_stage``
            for each returned box, the index in ``stages`` of the latest stage that
            accepted one of its windows;
        ``crop_ms``, ``group_ms``, ``ms``
            cropping, grouping and whole-call milliseconds.

    Examples
    --------
    >>> import skimage.data
    >>> det = VerifiedDetector("opencv:default")                  # doctest: +SKIP
    >>> boxes, scores = det.detect(skimage.data.astronaut()[..., ::-1],
    ...                            return_scores=True)             # doctest: +SKIP
    """

    def __init__(
        self,
        cascade: Any = None,
        verifier: FaceVerifier | None = None,
        *,
        stages: int | None = None,
    ) -> None:
        full = _as_cascade(cascade)
        if stages is None:
            stages = max(1, full.n_stages - STAGES_DROPPED)
        if int(stages) != stages or not 1 <= stages <= full.n_stages:
            raise ValueError(f"stages must be an integer in [1, {full.n_stages}], got {stages!r}")
        if verifier is not None and not isinstance(verifier, FaceVerifier):
            raise ValueError(f"verifier must be a FaceVerifier, got {type(verifier).__name__}")
        self.cascade = full
        self.stages = int(stages)
        self.proposer = vj.CascadeDetector(full.truncated(self.stages))
        self.verifier = verifier if verifier is not None else load_face_verifier()
        self.last_stats: dict[str, Any] = self._stats(0, 0, 0.0, None, 0, np.zeros(0, np.intp))

    @property
    def window(self) -> tuple[int, int]:
        """The cascade's window ``(width, height)``."""
        return self.cascade.window

    def detect(
        self,
        image: np.ndarray,
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        min_size: int | tuple[int, int] | None = None,
        max_size: int | tuple[int, int] | None = None,
        return_scores: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Detect faces; the call of :meth:`vj.CascadeDetector.detect`.

        Parameters
        ----------
        image : (H, W) or (H, W, 3|4) uint8 ndarray
            Grayscale, BGR or BGRA.
        scale_factor : float
            Pyramid step, > 1.
        min_neighbors : int
            Windows *judged to be faces* a group needs beyond one (0: no grouping).
        min_size, max_size : int or (width, height), optional
            Face size limits.
        return_scores : bool
            Also return each box's score: the summed face probability of its windows
            (a confidence-weighted neighbour count; higher is surer).

        Returns
        -------
        boxes : (N, 4) int32 ndarray of ``x, y, w, h``
        scores : (N,) float32 ndarray, only if ``return_scores``
        """
        t0 = time.perf_counter()
        min_neighbors = int(min_neighbors)
        if min_neighbors < 0:
            raise ValueError(f"min_neighbors must be >= 0, got {min_neighbors}")
        gray = to_gray(image)
        raw = self.proposer.candidates(gray, scale_factor, min_size, max_size)
        scan = self.proposer.last_stats
        t1 = time.perf_counter()
        crops = extract_crops(gray, raw)
        t2 = time.perf_counter()
        verdict = self.verifier.verify(crops)
        t3 = time.perf_counter()
        face = verdict.is_face
        accepted, prob = raw[face], verdict.face_probability[face]
        stage_of = verdict.decided_by[face] + 1  # stage 0 is the cascade
        boxes, counts = vj.group_rectangles(accepted, min_neighbors, GROUP_EPS)
        if min_neighbors == 0:
            scores, box_stage = prob.copy(), stage_of.copy()
        elif len(boxes):
            scores, labels, member = _group_scores(accepted, prob, boxes, counts)
            group_stage = np.zeros(labels.max() + 1, np.int64)
            np.maximum.at(group_stage, labels, stage_of)
            box_stage = group_stage[labels[member]]
        else:
            scores, box_stage = np.zeros(0), np.zeros(0, np.int64)
        order = np.arange(len(boxes))
        boxes, kept = clip_boxes(boxes, order, gray.shape)
        scores, box_stage = scores[kept], box_stage[kept]
        t4 = time.perf_counter()
        self.last_stats = self._stats(
            scan.windows,
            len(raw),
            (t1 - t0) * 1e3,
            verdict,
            int(face.sum()),
            box_stage.astype(np.intp),
            crop_ms=(t2 - t1) * 1e3,
            group_ms=(t4 - t3) * 1e3,
            ms=(t4 - t0) * 1e3,
        )
        if return_scores:
            return boxes, scores.astype(np.float32)
        return boxes

    def _stats(
        self,
        windows,
        candidates,
        cascade_ms,
        verdict,
        accepted,
        box_stage,
        crop_ms=0.0,
        group_ms=0.0,
        ms=0.0,
    ) -> dict[str, Any]:
        stages = [
            {
                "name": "cascade",
                "decided": int(windows - candidates),
                "ms": float(cascade_ms),
                "flops": None,
            }
        ]
        for k, name in enumerate(self.verifier.stage_names):
            s = None if verdict is None else verdict.stats.stages[k]
            stages.append(
                {
                    "name": name,
                    "decided": 0 if s is None else s.answered,
                    "ms": 0.0 if s is None else s.ms,
                    "flops": 0.0 if s is None else s.cost,
                }
            )
        return {
            "windows": int(windows),
            "proposed": int(windows),
            "candidates": int(candidates),
            "stages": stages,
            "accepted": int(accepted),
            "box_stage": box_stage,
            "crop_ms": float(crop_ms),
            "group_ms": float(group_ms),
            "ms": float(ms),
        }

    def warmup(self) -> VerifiedDetector:
        """Compile and load every kernel (cascade scan, both networks) before timing."""
        self.proposer.warmup()
        self.verifier.warmup()
        return self

    def __repr__(self) -> str:
        return (
            f"VerifiedDetector({self.cascade!r}, first {self.stages} stages, "
            f"verifiers {'+'.join(self.verifier.stage_names)})"
        )


def load_verifier(cascade: Any = None, **kwargs) -> VerifiedDetector:
    """The shipped verification pipeline on top of ``cascade``.

    Parameters
    ----------
    cascade : str, path, vj.Cascade or vj.CascadeDetector, optional
        See :class:`VerifiedDetector`.
    **kwargs
        Passed to :class:`VerifiedDetector` (``verifier``, ``stages``).
    """
    return VerifiedDetector(cascade, **kwargs)
