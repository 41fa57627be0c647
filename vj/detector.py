"""Multi-scale detection with a cascade: OpenCV 4's ``detectMultiScale``, exactly and fast.

For each pyramid scale the image is resized with OpenCV's ``INTER_LINEAR_EXACT``
(the resize OpenCV's detector uses), all levels' integral tables are built in
one pass into a packed buffer (:mod:`vj.scan_pyramid` plans it), one parallel
kernel scans every window of every level (:mod:`vj.scan`), and the hits are
grouped with OpenCV's ``groupRectangles``. With ``scan="features"`` the plan is
:mod:`vj.scan_features`' instead, and the rest is the same.
"""

from __future__ import annotations

import threading
import time

import cv2
import numba
import numpy as np

from .cascade import Cascade
from .grouping import group_max, group_rectangles
from .integral import fill_packed_integrals
from .scan import CascadeKernelData, collect_hits, scan_rows
from .scan_features import FeatureScanPlan
from .scan_margins import hit_margins
from .scan_pyramid import PyramidScanPlan
from .stats import DetectionStats

__all__ = ["CascadeDetector", "clip_boxes", "to_gray"]

GROUP_EPS = 0.2

#: The ``scan`` choices of :meth:`CascadeDetector.detect`.
SCANS = ("image", "features")
#: The ``score`` choices of :meth:`CascadeDetector.detect`.
SCORES = ("margin", "neighbors")
#: Last stages whose margins make a detection's score (fewer if the cascade has fewer).
#: Chosen on the even-numbered half of the WIDER FACE validation photos (4 to 7 stages
#: rank alike) and checked on the odd half and on OpenCV's cascades; see BENCHMARKS.md.
SCORE_STAGES = 5
#: Scan plans a detector keeps (one per image size and options, oldest dropped first).
MAX_PLANS = 8


def to_gray(image: np.ndarray) -> np.ndarray:
    """A C-contiguous 2-D uint8 view/copy of a grayscale, BGR or BGRA uint8 image.

    Raises
    ------
    ValueError
        For any other dtype, shape or an empty image, naming what is wrong.
    """
    if not isinstance(image, np.ndarray):
        image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8 (grayscale, BGR or BGRA), got dtype {image.dtype}; "
            "convert with e.g. np.clip(img * 255, 0, 255).astype(np.uint8)"
        )
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        if image.shape[2] == 3:
            image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2GRAY)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGRA2GRAY)
        else:
            raise ValueError(f"image must have 1, 3 or 4 channels, got shape {image.shape}")
    elif image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W) or 3-D (H, W, C), got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    return np.ascontiguousarray(image)


def clip_boxes(
    boxes: np.ndarray, scores: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Intersect boxes with the image and drop empty ones (OpenCV's ``clipObjects``).

    Rounding can push a window at the border a pixel or two past the image.
    """
    h, w = shape[:2]
    x0 = np.clip(boxes[:, 0], 0, w)
    y0 = np.clip(boxes[:, 1], 0, h)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, w)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, h)
    keep = (x1 > x0) & (y1 > y0)
    out = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1).astype(np.int32)
    return out[keep], scores[keep]


def _size_arg(name: str, value) -> tuple[int, int]:
    if value is None:
        return (0, 0)
    if np.isscalar(value):
        value = (value, value)
    try:
        w, h = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be an int or a (width, height) pair, got {value!r}"
        ) from None
    if w < 0 or h < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return (w, h)


class CascadeDetector:
    """Detect objects with a :class:`~vj.cascade.Cascade`, like ``cv2.CascadeClassifier``.

    Parameters
    ----------
    cascade : Cascade
    min_step : int, optional
        Smallest step between windows, in pixels of the pyramid level (a window
        is 24 of them for a 24-pixel cascade). ``1`` (default) scans as OpenCV
        does: every second window below scale 2, every window from scale 2 on
        (faces of twice the window and larger). ``2`` steps 2 at every scale: a
        quarter of the windows there, for a front end whose windows are checked
        again (the verified pipeline's proposer).

    Examples
    --------
    >>> import vj, skimage.data
    >>> det = vj.load("opencv:default")
    >>> boxes = det.detect(skimage.data.astronaut()[..., ::-1])
    >>> boxes.shape[1]
    4
    """

    def __init__(self, cascade: Cascade, *, min_step: int = 1) -> None:
        if not isinstance(cascade, Cascade):
            raise TypeError(f"expected a vj.Cascade, got {type(cascade).__name__}")
        if isinstance(min_step, bool) or int(min_step) != min_step or min_step < 1:
            raise ValueError(f"min_step must be a positive integer, got {min_step!r}")
        self.cascade = cascade
        self.min_step = int(min_step)
        self._k = CascadeKernelData(cascade)
        self._plans: dict[tuple, PyramidScanPlan | FeatureScanPlan] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self.last_stats = DetectionStats()

    # ------------------------------------------------------------ public API
    @property
    def window(self) -> tuple[int, int]:
        return self.cascade.window

    def detect(
        self,
        image: np.ndarray,
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        min_size: int | tuple[int, int] | None = None,
        max_size: int | tuple[int, int] | None = None,
        return_scores: bool = False,
        scan: str = "image",
        score: str = "margin",
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Detect objects; the same boxes as OpenCV 4's ``detectMultiScale``.

        Parameters
        ----------
        image : (H, W) or (H, W, 3|4) uint8 ndarray
            Grayscale, BGR or BGRA.
        scale_factor : float
            Pyramid step, > 1.
        min_neighbors : int
            Raw detections a group needs beyond one (0 disables grouping).
        min_size, max_size : int or (width, height), optional
            Object size limits.
        return_scores : bool
            Also return each box's score; higher is more confident.
        scan : {"image", "features"}
            ``"image"`` (default) scales the image, exactly as OpenCV 4 does.
            ``"features"`` scales the features instead (Viola-Jones 2004, see
            :mod:`vj.scan_features`): no pyramid, fewer windows at large
            scales; it finds the same objects but not identical boxes.
        score : {"margin", "neighbors"}
            What ``return_scores`` returns. ``"margin"`` (default): the best of the
            box's raw windows by how far it cleared the cascade's last
            :data:`SCORE_STAGES` stages (the sum of ``stage sum - threshold`` over
            them; :meth:`candidates` with ``margin_stages``). ``"neighbors"``: its
            number of raw windows (``detectMultiScale2``'s ``numDetections``). On
            real photographs ranking by margin finds 5-20 points more of the faces
            at few false positives (BENCHMARKS.md); the boxes are the same.

        Returns
        -------
        boxes : (N, 4) int32 ndarray of ``x, y, w, h``
        scores : (N,) float32 ndarray, only if ``return_scores``
        """
        t0 = time.perf_counter()
        if score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(map(repr, SCORES))}, "
                             f"got {score!r}")
        gray = to_gray(image)
        by_margin = return_scores and score == "margin"
        k = min(SCORE_STAGES, self.cascade.n_stages) if by_margin else 0
        raw = self.candidates(gray, scale_factor, min_size, max_size, scan=scan,
                              margin_stages=k)
        if by_margin:
            raw, margins = raw
        stats = self.last_stats
        boxes, counts, labels = group_rectangles(raw, int(min_neighbors), GROUP_EPS,
                                                 return_labels=True)
        scores = (group_max(labels, len(boxes), margins.sum(axis=1)) if by_margin
                  else counts.astype(np.float64))
        boxes, scores = clip_boxes(boxes, scores, gray.shape)
        stats.ms = (time.perf_counter() - t0) * 1e3
        stats.accepted = stats.candidates
        stats.stages = [stats.cascade_stage()]
        stats.box_stage = np.zeros(len(boxes), np.intp)
        if return_scores:
            return boxes, scores.astype(np.float32)
        return boxes

    def candidates(
        self,
        image: np.ndarray,
        scale_factor: float = 1.1,
        min_size: int | tuple[int, int] | None = None,
        max_size: int | tuple[int, int] | None = None,
        scan: str = "image",
        margin_stages: int = 0,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Every window the cascade accepts, before grouping: (N, 4) int32 ``x, y, w, h``.

        Ordered by scale, then row, then column. ``scan`` is as in :meth:`detect`.
        With ``margin_stages`` ``k > 0``, also each window's margins in the last ``k``
        stages, ``(N, k)`` float64: the stage's full sum minus its threshold
        (:func:`vj.scan_margins.hit_margins`; the last column is OpenCV's
        ``levelWeights``).
        """
        k = int(margin_stages)
        if k != margin_stages or not 0 <= k <= self.cascade.n_stages:
            raise ValueError(f"margin_stages must be an integer in [0, "
                             f"{self.cascade.n_stages}], got {margin_stages!r}")
        if scan not in SCANS:
            raise ValueError(f"scan must be one of {', '.join(map(repr, SCANS))}, got {scan!r}")
        gray = to_gray(image)
        sf = float(scale_factor)
        if not np.isfinite(sf) or sf <= 1.0:
            raise ValueError(f"scale_factor must be a finite number > 1, got {scale_factor!r}")
        mins = _size_arg("min_size", min_size)
        maxs = _size_arg("max_size", max_size)
        t0 = time.perf_counter()
        h, w = gray.shape
        plan = self._plan(scan, w, h, sf, mins, maxs)
        stats = DetectionStats(levels=plan.n_levels)
        if plan.rows.base.size == 0:
            self.last_stats = stats
            empty = np.zeros((0, 4), np.int32)
            return (empty, np.zeros((0, k))) if k else empty
        items, cols, margins = self._scan(plan, gray, stats, k)
        out = plan.boxes(items, cols)
        stats.ms = (time.perf_counter() - t0) * 1e3
        self.last_stats = stats
        return (out, margins) if k else out

    def warmup(self) -> CascadeDetector:
        """Run once on a small synthetic image so kernels are compiled/loaded."""
        ww, wh = self.window
        rng = np.random.default_rng(0)
        img = rng.integers(0, 256, (2 * wh + 3, 2 * ww + 5), dtype=np.uint8)
        self.detect(img)
        return self

    # -------------------------------------------------------------- helpers
    def _plan(self, scan: str, w: int, h: int, sf: float,
              mins, maxs) -> PyramidScanPlan | FeatureScanPlan:
        # Built outside the lock (it takes a while); a concurrent call for the
        # same key at worst builds the same plan twice.
        key = (scan, w, h, sf, mins, maxs)
        with self._lock:
            plan = self._plans.get(key)
        if plan is None:
            if scan == "features":
                plan = FeatureScanPlan.build(self._k, self.cascade.features, (w, h), sf, mins,
                                             maxs, self.min_step)
            else:
                plan = PyramidScanPlan.build(self._k, (w, h), sf, mins, maxs, self.min_step)
            with self._lock:
                if len(self._plans) >= MAX_PLANS:
                    self._plans.pop(next(iter(self._plans)))
                self._plans[key] = plan
        return plan

    def _scan(self, plan: PyramidScanPlan | FeatureScanPlan, gray: np.ndarray,
              stats: DetectionStats, margin_stages: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Load ``gray``, build its integral tables and scan them: the (row, column) hits.

        Fills ``stats``'s windows, features and candidates. With ``margin_stages``,
        also the hits' margins in that many last stages (else None).
        """
        (rbuf, buf, hit_x, hit_count, scan_stats), views = self._buffers(plan)
        plan.load(gray, views)
        nthreads = numba.get_num_threads()
        # The tables take a few milliseconds: one thread does them, because waking
        # a thread pool for so little costs more than it saves on a busy machine.
        numba.set_num_threads(1)
        try:
            fill_packed_integrals(rbuf, buf, plan.stride, plan.level_offsets, plan.level_w,
                                  plan.level_h, plan.sq_ofs, plan.t_ofs)
        finally:
            numba.set_num_threads(nthreads)
        scan_rows(buf, plan.sq_ofs, plan.rows, plan.sets, self._k.tables, nthreads, hit_x,
                  hit_count, scan_stats)
        items, cols = collect_hits(hit_x, hit_count)
        stats.windows = int(scan_stats[:, 0].sum())
        stats.features = int(scan_stats[:, 1].sum())
        stats.candidates = int(items.size)
        margins = None
        if margin_stages:
            # Before the tables are reused: the buffers are this thread's own.
            first = self.cascade.n_stages - margin_stages
            margins = np.empty((items.size, margin_stages), np.float64)
            hit_margins(buf, plan.sq_ofs, plan.rows, plan.sets, self._k.tables, items, cols,
                        first, margins)
        return items, cols, margins

    def _buffers(self, plan: PyramidScanPlan | FeatureScanPlan
                 ) -> tuple[tuple[np.ndarray, ...], list[np.ndarray]]:
        # Per thread, so that concurrent detect calls never share scratch memory;
        # only the last image geometry is kept, which bounds the memory held.
        # One set per scan kind, so that alternating scans do not reallocate.
        slots = getattr(self._local, "slots", None)
        if slots is None:
            slots = self._local.slots = {}
        kind = type(plan)
        slot = slots.get(kind)
        if slot is None or slot[0] is not plan:
            bufs = plan.allocate()
            slot = slots[kind] = (plan, bufs, plan.views(bufs[0]))
        return slot[1], slot[2]

    def __repr__(self) -> str:
        step = f", min_step={self.min_step}" if self.min_step != 1 else ""
        return f"CascadeDetector({self.cascade!r}{step})"
