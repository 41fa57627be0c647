"""Face detection as one prediction cascade: Viola-Jones stages, then neural verifiers.

The Haar cascade, cut short to a lenient operating point, rejects almost every window
of a frame for a few feature evaluations each. The windows it accepts are cropped with
a little context and judged by an IDK cascade of neural verifiers
(:class:`~vj_dynamic.face.verifier.FaceVerifier`): a tiny CNN answers where it is sure and a
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
from vj_dynamic.face.crops import extract_crops
from vj_dynamic.face.verifier import FaceVerifier, load_face_verifier

import vj
from vj.detector import GROUP_EPS, clip_boxes, to_gray
from vj.grouping import group_rectangles, partition_similar
from vj.models import DEFAULT_MODEL, load_default_cascade
from vj.stats import DetectionStats, StageStats

__all__ = [
    "ACCEPT",
    "DEDUP_CELL",
    "DEFAULT_CASCADE",
    "LENIENT_SHARE",
    "MIN_NEIGHBORS",
    "PROPOSER_STEP",
    "TRAINING_SHARE",
    "VerifiedDetector",
    "face_evidence",
    "group_verified",
    "group_windows",
    "lenient_stages",
    "load_verifier",
    "near_duplicates",
    "resolve_cascade",
]

#: The project's own cascade; OpenCV's default frontal-face cascade stands in while
#: it is not shipped.
DEFAULT_CASCADE = DEFAULT_MODEL

#: Near-duplicate windows (same size, within this many pyramid-level pixels) share one
#: verdict: a sixth of the 24-pixel window, well inside the shifts the verifiers are
#: trained to accept.
DEDUP_CELL = 4

#: Share of the cascade's stages run at the lenient operating point (rounded): on the
#: project's cascade (24 stages) 12, on OpenCV's default (25 stages) 12. Chosen with
#: :data:`PROPOSER_STEP` on the even-numbered half of the real-photo validation set
#: (``photos/wider_val``, scale 1.1, ``min_neighbors`` 1); see BENCHMARKS.md ("The
#: proposer: stages and window step").
LENIENT_SHARE = 0.5

#: Share used to cut the verifiers' training windows (13 of 24 stages). The shipped
#: verifiers were trained on these while detection ran 14 stages; detection now runs
#: one stage more leniently than the training windows, which measured as well.
TRAINING_SHARE = 0.54

#: Window step of the proposer, in pyramid-level pixels, at every scale
#: (:class:`vj.CascadeDetector`'s ``min_step``; OpenCV's scan steps 2 below scale 2 and
#: 1 from there on, four times the windows for faces of 48 px and more). On the even
#: half of the validation photos, 12 stages at step 2 found 54.1 / 68.0 / 75.3 % of the
#: faces at 10 / 100 / 500 false positives against 52.8 / 67.2 / 75.7 for 14 stages at
#: OpenCV's steps, and 55.1 against 52.6 % of the darkest third at 100; on the odd half
#: 55.3 / 69.0 / 73.8 against 56.3 / 70.0 / 75.5. At 640 x 480 from 48 px the pipeline
#: then takes 0.74-0.85x the time of the full cascade alone instead of 1.3-1.5x.
PROPOSER_STEP = 2

#: Face probability above which a window counts as a face and votes for its group.
ACCEPT = 0.5

#: ``min_neighbors`` of :meth:`VerifiedDetector.detect` unless told otherwise: a face
#: needs two verified windows. The verifiers give the precision; on the real-photo
#: validation photos 1 keeps the detection rate of 2 and 3 at every false-positive
#: budget up to 200 and finds 3-5 points more faces with every detection counted.
MIN_NEIGHBORS = 1


def resolve_cascade(cascade: Any = None) -> vj.Cascade:
    """The :class:`vj.Cascade` behind a name, path, cascade or detector (``None``: the default).

    ``None`` means the default model (:func:`vj.models.load_default_cascade`).
    """
    if isinstance(cascade, vj.CascadeDetector):
        return cascade.cascade
    if isinstance(cascade, vj.Cascade):
        return cascade
    if cascade is None:
        return load_default_cascade()[0]
    if isinstance(cascade, (str, os.PathLike)):
        return vj.load_cascade(cascade)
    raise ValueError(
        "cascade must be a built-in name, a file path, a vj.Cascade or a vj.CascadeDetector, "
        f"got {type(cascade).__name__}"
    )


def lenient_stages(cascade: vj.Cascade, share: float = LENIENT_SHARE) -> int:
    """Stages run at the lenient operating point: ``share`` of them (rounded), at least one."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    return max(1, round(share * cascade.n_stages))


def near_duplicates(boxes: np.ndarray, window: int, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows that show nearly the same pixels: same size, within ``cell`` level pixels.

    A cascade accepts a face in many windows a step or two apart on the same pyramid
    level; their crops differ by a pixel or two at the network's resolution. Each box
    is put in the ``cell x cell`` square of its own level's pixel grid, and one box per
    square (the first) stands for the others.

    Parameters
    ----------
    boxes : (N, 4) int ndarray
        ``x, y, w, h``.
    window : int
        Width of the cascade's window (a box of width ``w`` lies on the level scaled
        by ``w / window``).
    cell : int
        Side of the squares, in level pixels; ``1`` keeps every distinct box.

    Returns
    -------
    representatives : (K,) int64 ndarray
        Index of the box that stands for each square, in order of first appearance.
    owner : (N,) int64 ndarray
        For every box, the position in ``representatives`` of its square's box.
    """
    boxes = np.asarray(boxes)
    if len(boxes) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    scale = boxes[:, 2] / float(window)
    cx = np.floor(np.rint(boxes[:, 0] / scale) / cell).astype(np.int64)
    cy = np.floor(np.rint(boxes[:, 1] / scale) / cell).astype(np.int64)
    size = boxes[:, 2].astype(np.int64) * (1 << 16) + boxes[:, 3]
    if max(np.abs(cx).max(), np.abs(cy).max()) < (1 << 14) and size.max() < (1 << 32):
        # One int64 per box: sorting it is several times faster than sorting rows.
        key = (size << 30) + ((cx + (1 << 14)) << 15) + (cy + (1 << 14))
        _, first, owner = np.unique(key, return_index=True, return_inverse=True)
    else:
        rows = np.stack([size, cx, cy], axis=1)
        _, first, owner = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order].astype(np.int64), rank[owner.reshape(-1)].astype(np.int64)


def face_evidence(probability: np.ndarray) -> np.ndarray:
    """A window's vote for its group: ``-ln(1 - p)`` for face probability ``p``.

    A plain count (OpenCV's score) treats a window at ``p = 0.51`` like one at
    ``p = 0.9999``; summing probabilities hardly does better, since accepted windows
    all lie between one half and one. Measured in nats of surprise that the window is
    not a face, a sure window counts for many unsure ones, and on the ``tune`` scenes
    this ranks detections best of the scores tried (count, probability, ``p^8``,
    ``2p - 1``). ``p`` is capped at ``1 - 1e-6`` (at most ~13.8 per window).
    """
    p = np.minimum(np.asarray(probability, np.float64), 1.0 - 1e-6)
    return -np.log1p(-p)


def group_verified(
    rects: np.ndarray, weights: np.ndarray, stages: np.ndarray, min_neighbors: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group verified windows exactly as ``vj.group_rectangles``, and score each group.

    Parameters
    ----------
    rects : (N, 4) int ndarray
        Windows judged to be faces.
    weights : (N,) float ndarray
        Their votes (:func:`face_evidence` of their face probabilities).
    stages : (N,) int ndarray
        The stage that judged each.
    min_neighbors : int
        As for ``vj.group_rectangles`` (0: every window is its own group).

    Returns
    -------
    boxes : (K, 4) int32 ndarray
        Equal to ``vj.group_rectangles(rects, min_neighbors)[0]``.
    counts : (K,) int32 ndarray
        Windows per group.
    scores : (K,) float64 ndarray
        Summed weight of each group's windows.
    box_stage : (K,) int64 ndarray
        The latest stage that judged one of each group's windows.

    Notes
    -----
    The groups are those of :func:`vj.group_rectangles` itself (its ``return_labels``),
    so the boxes keep OpenCV's exact partition, averaging and nested-group filter.
    """
    rects = np.ascontiguousarray(rects, np.int64).reshape(-1, 4)
    weights = np.asarray(weights, np.float64)
    stages = np.asarray(stages, np.int64)
    boxes, counts, labels = group_rectangles(rects, min_neighbors, GROUP_EPS,
                                             return_labels=True)
    member = labels >= 0
    scores = np.bincount(labels[member], weights=weights[member], minlength=len(boxes))
    box_stage = np.zeros(len(boxes), np.int64)
    np.maximum.at(box_stage, labels[member], stages[member])
    return boxes, counts, scores, box_stage


class _Settler:
    """The ``settle`` callback of :meth:`FaceVerifier.verify` for one frame's crops.

    Parameters
    ----------
    boxes : (K, 4) int ndarray
        The boxes the crops show.
    windows : (K,) int ndarray
        Candidate windows each crop stands for (its near-duplicates).
    min_neighbors : int
        A group whose sure face windows number more than this is settled.
    """

    def __init__(self, boxes: np.ndarray, windows: np.ndarray, min_neighbors: int) -> None:
        self.labels, self.n = partition_similar(
            np.ascontiguousarray(boxes, np.int64), GROUP_EPS)
        self.windows = windows
        self.min_neighbors = min_neighbors
        self.count = 0

    def __call__(self, probabilities: np.ndarray, deferred: np.ndarray) -> np.ndarray:
        sure_face = ~deferred & (probabilities[:, 1] > 0.5)
        votes = np.bincount(self.labels, weights=self.windows * sure_face, minlength=self.n)
        settled = deferred & (votes > self.min_neighbors)[self.labels]
        self.count = int(settled.sum())
        return settled


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
        Cascade stages to run; default :func:`lenient_stages`.
    step : int, optional
        Smallest window step of the cascade's scan, in pyramid-level pixels
        (:class:`vj.CascadeDetector`'s ``min_step``); default :data:`PROPOSER_STEP`.
    dedup_cell : int, optional
        Windows of one size within this many pyramid-level pixels of each other are
        judged once, by one crop (:func:`near_duplicates`); ``1`` judges every window.
    settle : bool, optional
        Spend the SkipNet only where a detection depends on it. Crops the tiny CNN is
        unsure about then go to the SkipNet unless their group of similar windows (the
        grouping's own partition) already holds more than ``min_neighbors`` windows the
        tiny CNN is sure are a face: that face is found whatever the SkipNet says, and
        the tiny CNN's answer stands for them. The same faces are found, their boxes
        can move slightly (those windows vote with the tiny CNN's answer), and their
        scores drop (at the tiny CNN's lower probability), which makes ranking
        detections by score worse (see BENCHMARKS.md). Off by default; the webcam app
        turns it on, as it shows boxes and does not rank them.
    accept : float, optional
        Face probability above which a verified window counts as a face
        (:data:`ACCEPT`).

    Attributes
    ----------
    last_stats : vj.stats.DetectionStats
        Statistics of the last :meth:`detect` call: ``windows`` the cascade scanned,
        ``candidates`` it accepted (the regions proposed to the verifiers), crops
        ``verified`` (one per group of near-duplicate candidates), of those ``settled``
        (unsure crops that skipped the SkipNet because their group was already
        accepted, see ``settle``), windows ``accepted`` as faces; ``stages``: the
        cascade, ``tiny`` and ``skipnet``, each with ``decided`` (they add up to
        ``windows``), ``ms`` and ``flops`` (``None`` for the cascade, whose work is
        feature look-ups); ``box_stage``: for each returned box, the index in
        ``stages`` of the latest stage that accepted one of its windows;
        ``crop_ms``, ``group_ms``, ``ms``: cropping, grouping and whole-call times.

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
        step: int = PROPOSER_STEP,
        dedup_cell: int = DEDUP_CELL,
        settle: bool = False,
        accept: float = ACCEPT,
    ) -> None:
        full = resolve_cascade(cascade)
        if stages is None:
            stages = lenient_stages(full)
        if int(stages) != stages or not 1 <= stages <= full.n_stages:
            raise ValueError(f"stages must be an integer in [1, {full.n_stages}], got {stages!r}")
        if isinstance(step, bool) or int(step) != step or step < 1:
            raise ValueError(f"step must be a positive integer, got {step!r}")
        if int(dedup_cell) != dedup_cell or dedup_cell < 1:
            raise ValueError(f"dedup_cell must be a positive integer, got {dedup_cell!r}")
        if verifier is not None and not isinstance(verifier, FaceVerifier):
            raise ValueError(f"verifier must be a FaceVerifier, got {type(verifier).__name__}")
        self.cascade = full
        self.stages = int(stages)
        self.dedup_cell = int(dedup_cell)
        self.settle = bool(settle)
        if not 0.0 <= accept < 1.0:
            raise ValueError(f"accept must be in [0, 1), got {accept!r}")
        self.accept = float(accept)
        self.proposer = vj.CascadeDetector(full.truncated(self.stages), min_step=step)
        self.verifier = verifier if verifier is not None else load_face_verifier()
        self.last_stats = DetectionStats(stages=self._stages(0, 0, 0.0, None, []))

    @property
    def window(self) -> tuple[int, int]:
        """The cascade's window ``(width, height)``."""
        return self.cascade.window

    def detect(
        self,
        image: np.ndarray,
        scale_factor: float = 1.1,
        min_neighbors: int = MIN_NEIGHBORS,
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
            Also return each box's score: the evidence of its windows,
            ``sum(-ln(1 - p))`` over their face probabilities ``p``
            (:func:`face_evidence`); higher is surer.

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
        reps, owner = near_duplicates(raw, self.window[0], self.dedup_cell)
        crops = extract_crops(gray, raw[reps])
        settle = None
        if self.settle and min_neighbors > 0 and len(reps) > 1:
            settle = _Settler(raw[reps], np.bincount(owner, minlength=len(reps)), min_neighbors)
        t2 = time.perf_counter()
        verdict = self.verifier.verify(crops, settle=settle)
        t3 = time.perf_counter()
        # Every window takes the verdict of the window that stands for it.
        probability = verdict.face_probability[owner]
        stage_of = verdict.decided_by[owner] + 1  # stage 0 is the cascade
        face = probability > self.accept
        boxes, scores, box_stage = group_windows(raw, probability, stage_of, min_neighbors,
                                                 gray.shape, self.accept)
        t4 = time.perf_counter()
        decided = np.bincount(stage_of, minlength=len(self.verifier.stage_names) + 1)[1:]
        self.last_stats = DetectionStats(
            windows=scan.windows, features=scan.features, candidates=len(raw),
            levels=scan.levels, ms=(t4 - t0) * 1e3,
            stages=self._stages(scan.windows, len(raw), (t1 - t0) * 1e3, verdict, decided),
            box_stage=box_stage.astype(np.intp), verified=len(reps), accepted=int(face.sum()),
            settled=0 if settle is None else settle.count, crop_ms=(t2 - t1) * 1e3,
            group_ms=(t4 - t3) * 1e3,
        )  # fmt: skip
        if return_scores:
            return boxes, scores.astype(np.float32)
        return boxes

    def judge(
        self,
        image: np.ndarray,
        scale_factor: float = 1.1,
        min_size: int | tuple[int, int] | None = None,
        max_size: int | tuple[int, int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every window the cascade accepts with its verdict, before grouping.

        :meth:`detect` without ``settle`` equals :func:`group_windows` of these, so an
        evaluation can judge a photo once and group it at many operating points.

        Returns
        -------
        windows : (N, 4) int32 ndarray
            The cascade's accepted windows, ``x, y, w, h``.
        probability : (N,) float64 ndarray
            Face probability of each (from the crop that stands for it).
        stage : (N,) int64 ndarray
            Stage that decided it: 1 the tiny CNN, 2 the SkipNet (0 is the cascade).
        """
        gray = to_gray(image)
        raw = self.proposer.candidates(gray, scale_factor, min_size, max_size)
        reps, owner = near_duplicates(raw, self.window[0], self.dedup_cell)
        verdict = self.verifier.verify(extract_crops(gray, raw[reps]))
        return raw, verdict.face_probability[owner], verdict.decided_by[owner] + 1

    def _stages(self, windows, candidates, cascade_ms, verdict, decided) -> list[StageStats]:
        """The cascade's stage, then each verifier stage's decided / ms / FLOPs."""
        stages = [StageStats("cascade", int(windows - candidates), float(cascade_ms))]
        for k, name in enumerate(self.verifier.stage_names):
            s = None if verdict is None else verdict.stats.stages[k]
            stages.append(StageStats(name, int(decided[k]) if len(decided) else 0,
                                     0.0 if s is None else s.ms,
                                     0.0 if s is None else s.cost))
        return stages

    def warmup(self) -> VerifiedDetector:
        """Compile and load every kernel (cascade scan, both networks) before timing."""
        self.proposer.warmup()
        self.verifier.warmup()
        return self

    def __repr__(self) -> str:
        return (
            f"VerifiedDetector({self.cascade!r}, first {self.stages} stages, "
            f"step {self.proposer.min_step}, "
            f"verifiers {'+'.join(self.verifier.stage_names)})"
        )


def group_windows(
    windows: np.ndarray,
    probability: np.ndarray,
    stage: np.ndarray,
    min_neighbors: int,
    shape: tuple[int, ...],
    accept: float = ACCEPT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections from judged windows (:meth:`VerifiedDetector.judge`), as ``detect`` makes them.

    Windows with face probability above ``accept`` vote with their
    :func:`face_evidence`; they are grouped by :func:`group_verified` and the boxes
    clipped to an image of ``shape``.

    Returns
    -------
    boxes : (K, 4) int32 ndarray
    scores : (K,) float64 ndarray
        Summed evidence of each box's windows.
    box_stage : (K,) int64 ndarray
        The latest stage that accepted one of each box's windows.
    """
    probability = np.asarray(probability, np.float64)
    face = probability > accept
    boxes, _, scores, box_stage = group_verified(
        np.asarray(windows)[face], face_evidence(probability[face]),
        np.asarray(stage)[face], min_neighbors)
    boxes, kept = clip_boxes(boxes, np.arange(len(boxes)), shape)
    return boxes, scores[kept], box_stage[kept]


def load_verifier(cascade: Any = None, **kwargs) -> VerifiedDetector:
    """The shipped verification pipeline on top of ``cascade``.

    Parameters
    ----------
    cascade : str, path, vj.Cascade or vj.CascadeDetector, optional
        See :class:`VerifiedDetector`.
    **kwargs
        Passed to :class:`VerifiedDetector` (``verifier``, ``stages``, ``dedup_cell``).
    """
    return VerifiedDetector(cascade, **kwargs)
