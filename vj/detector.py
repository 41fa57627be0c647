"""Multi-scale detection with a cascade: OpenCV 4's ``detectMultiScale``, exactly and fast.

For each pyramid scale the image is resized with OpenCV's ``INTER_LINEAR_EXACT``
(the resize OpenCV's detector uses), all levels' integral tables are built in
one parallel pass into a packed buffer, one parallel kernel scans every window
of every level, and the hits are grouped with OpenCV's ``groupRectangles``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import cv2
import numba
import numpy as np

from .cascade import Cascade
from .grouping import group_rectangles
from .integral import fill_packed_integrals
from .pyramid import MAX_BUFFER_BYTES, PyramidLayout, opencv_scales, pyramid_layout
from .scan import CascadeKernelData, collect_hits, scan_rows
from .scan_features import FeatureScanPlan
from .stats import DetectionStats

__all__ = ["CascadeDetector", "clip_boxes", "to_gray"]

GROUP_EPS = 0.2

#: The ``scan`` choices of :meth:`CascadeDetector.detect`.
SCANS = ("image", "features")


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


@dataclass(frozen=True)
class _ScanPlan:
    """Everything about a scan that depends only on the image size and the options."""

    layout: PyramidLayout
    level_w: np.ndarray
    level_h: np.ndarray
    level_n: np.ndarray
    item_level: np.ndarray
    item_y: np.ndarray
    item_base: np.ndarray
    item_cols: np.ndarray
    item_step: np.ndarray
    item_every: np.ndarray
    item_set: np.ndarray
    box_w: np.ndarray
    box_h: np.ndarray
    nch: int
    sq_ofs: int
    t_ofs: int
    win_area: np.ndarray

    @classmethod
    def build(cls, det: CascadeDetector, w: int, h: int, sf: float, mins, maxs) -> _ScanPlan:
        scales = opencv_scales((w, h), det.window, sf, mins, maxs)
        layout = pyramid_layout((w, h), scales)
        k = det._k
        nch = 3 if k.has_tilted else 2
        csize = layout.channel_size
        need = nch * csize * 4 + csize
        if need > MAX_BUFFER_BYTES:
            raise ValueError(
                f"image {w}x{h} needs {need / 2**30:.1f} GiB of integral tables at this "
                f"min_size; downscale it or pass a larger min_size"
            )
        ww, wh = det.window
        level_w = np.ascontiguousarray(layout.sizes[:, 0])
        level_h = np.ascontiguousarray(layout.sizes[:, 1])
        steps = layout.ysteps
        xmax = np.maximum(level_w + 1 - ww, 0)
        ymax = np.maximum(level_h + 1 - wh, 0)
        rows = [np.arange(0, ymax[i], steps[i], dtype=np.int64) for i in range(len(layout))]
        empty = np.zeros(0, np.int64)
        level_n = (xmax + steps - 1) // steps
        item_level = np.concatenate(
            [np.full(r.size, i, np.int64) for i, r in enumerate(rows)] or [empty])
        item_y = np.concatenate(rows or [empty])
        # Every column of a row is a scan column (also the odd ones of a step-2
        # level, so that the row loops read contiguous memory); windows sit at
        # every ``step``-th one.
        item_every = steps[item_level]
        return cls(
            layout=layout,
            level_w=level_w,
            level_h=level_h,
            level_n=level_n,
            item_level=item_level,
            item_y=item_y,
            item_base=layout.offsets[item_level] + item_y * layout.stride,
            item_cols=np.maximum((level_n[item_level] - 1) * item_every + 1, 0),
            item_step=np.ones(item_level.size, np.int64),
            item_every=item_every,
            item_set=np.zeros(item_level.size, np.int64),
            box_w=np.rint(np.float32(ww) * layout.scales).astype(np.int32),
            box_h=np.rint(np.float32(wh) * layout.scales).astype(np.int32),
            nch=nch,
            sq_ofs=(nch - 1) * csize,
            t_ofs=csize if k.has_tilted else -1,
            win_area=np.array([float((ww - 2) * (wh - 2))]),
        )

    def allocate(self) -> tuple[np.ndarray, ...]:
        """Scratch buffers: resized levels, integral tables, hits and counters."""
        csize = self.layout.channel_size
        n_items = self.item_level.size
        max_n = max(int(self.level_n.max()) if self.level_n.size else 0, 1)
        return (np.empty(csize, np.uint8), np.empty(self.nch * csize, np.int32),
                np.empty((n_items, max_n), np.int32), np.empty(n_items, np.int64),
                np.empty((n_items, 2), np.int64))

    def views(self, rbuf: np.ndarray) -> list[np.ndarray]:
        """Each level's ``(h, w)`` image inside the packed uint8 buffer."""
        lay = self.layout
        return [np.lib.stride_tricks.as_strided(rbuf[int(lay.offsets[i]):],
                                                shape=(int(self.level_h[i]), int(self.level_w[i])),
                                                strides=(lay.stride, 1))
                for i in range(len(lay))]


class CascadeDetector:
    """Detect objects with a :class:`~vj.cascade.Cascade`, like ``cv2.CascadeClassifier``.

    Parameters
    ----------
    cascade : Cascade

    Examples
    --------
    >>> import vj, skimage.data
    >>> det = vj.load("opencv:default")
    >>> boxes = det.detect(skimage.data.astronaut()[..., ::-1])
    >>> boxes.shape[1]
    4
    """

    def __init__(self, cascade: Cascade) -> None:
        if not isinstance(cascade, Cascade):
            raise TypeError(f"expected a vj.Cascade, got {type(cascade).__name__}")
        self.cascade = cascade
        self._k = CascadeKernelData(cascade)
        self._records_cache: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
        self._plans: dict[tuple, _ScanPlan] = {}
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
            Also return each box's score: its number of raw detections
            (``detectMultiScale2``'s ``numDetections``); higher is more confident.
        scan : {"image", "features"}
            ``"image"`` (default) scales the image, exactly as OpenCV 4 does.
            ``"features"`` scales the features instead (Viola-Jones 2004, see
            :mod:`vj.scan_features`): no pyramid, fewer windows at large
            scales; it finds the same objects but not identical boxes.

        Returns
        -------
        boxes : (N, 4) int32 ndarray of ``x, y, w, h``
        scores : (N,) float32 ndarray, only if ``return_scores``
        """
        t0 = time.perf_counter()
        gray = to_gray(image)
        raw = self.candidates(gray, scale_factor, min_size, max_size, scan=scan)
        stats = self.last_stats
        boxes, counts = group_rectangles(raw, int(min_neighbors), GROUP_EPS)
        boxes, counts = clip_boxes(boxes, counts, gray.shape)
        stats.ms = (time.perf_counter() - t0) * 1e3
        stats.accepted = stats.candidates
        stats.stages = [stats.cascade_stage()]
        stats.box_stage = np.zeros(len(boxes), np.intp)
        if return_scores:
            return boxes, counts.astype(np.float32)
        return boxes

    def candidates(
        self,
        image: np.ndarray,
        scale_factor: float = 1.1,
        min_size: int | tuple[int, int] | None = None,
        max_size: int | tuple[int, int] | None = None,
        scan: str = "image",
    ) -> np.ndarray:
        """Every window the cascade accepts, before grouping: (N, 4) int32 ``x, y, w, h``.

        Ordered by scale, then row, then column. ``scan`` is as in :meth:`detect`.
        """
        if scan not in SCANS:
            raise ValueError(f"scan must be one of {', '.join(map(repr, SCANS))}, got {scan!r}")
        gray = to_gray(image)
        sf = float(scale_factor)
        if not np.isfinite(sf) or sf <= 1.0:
            raise ValueError(f"scale_factor must be a finite number > 1, got {scale_factor!r}")
        mins = _size_arg("min_size", min_size)
        maxs = _size_arg("max_size", max_size)
        if scan == "features":
            return self._feature_candidates(gray, sf, mins, maxs)
        t0 = time.perf_counter()
        h, w = gray.shape
        plan = self._plan(w, h, sf, mins, maxs)
        layout = plan.layout
        stats = DetectionStats(levels=len(layout))
        if len(layout) == 0:
            self.last_stats = stats
            return np.zeros((0, 4), np.int32)
        rbuf, buf, hit_x, hit_count, scan_stats = self._buffers(plan)
        stride = layout.stride
        for lv, view in enumerate(self._level_views()):
            inv = 1.0 / float(layout.scales[lv])
            # Straight into the packed buffer: no temporary image per level.
            cv2.resize(gray, view.shape[::-1], dst=view, fx=inv, fy=inv,
                       interpolation=cv2.INTER_LINEAR_EXACT)
        nthreads = numba.get_num_threads()
        # The tables take a few milliseconds: one thread does them, because waking
        # a thread pool for so little costs more than it saves on a busy machine.
        numba.set_num_threads(1)
        try:
            fill_packed_integrals(rbuf, buf, stride, layout.offsets, plan.level_w,
                                  plan.level_h, plan.sq_ofs, plan.t_ofs)
        finally:
            numba.set_num_threads(nthreads)
        k = self._k
        rec, recf, norm = self._records(stride, max(plan.t_ofs, 0))
        scan_rows(buf, plan.sq_ofs, plan.item_base, plan.item_cols, plan.item_step,
                  plan.item_every, plan.item_set, norm, plan.win_area, rec, recf,
                  k.tree_node_start, k.tree_table, k.node_left, k.node_right, k.tree_leaf_start,
                  k.leaves, k.stage_tree_start, k.stage_threshold, k.tree_rmax, k.tree_rmin,
                  k.row_stages, np.array([k.dense_density]), nthreads, hit_x, hit_count,
                  scan_stats)
        items, xs = collect_hits(hit_x, hit_count)
        lv = plan.item_level[items]
        sc = layout.scales[lv]
        out = np.empty((items.size, 4), np.int32)
        # Rect(cvRound(x * scale), cvRound(y * scale), winSize) in float32, as OpenCV.
        out[:, 0] = np.rint(xs.astype(np.float32) * sc)
        out[:, 1] = np.rint(plan.item_y[items].astype(np.float32) * sc)
        out[:, 2] = plan.box_w[lv]
        out[:, 3] = plan.box_h[lv]
        stats.windows = int(scan_stats[:, 0].sum())
        stats.features = int(scan_stats[:, 1].sum())
        stats.candidates = int(items.size)
        stats.ms = (time.perf_counter() - t0) * 1e3
        self.last_stats = stats
        return out

    def _feature_candidates(self, gray: np.ndarray, sf: float, mins, maxs) -> np.ndarray:
        t0 = time.perf_counter()
        h, w = gray.shape
        key = ("features", w, h, sf, mins, maxs)
        with self._lock:
            plan = self._plans.get(key)
        if plan is None:
            plan = FeatureScanPlan.build(self._k, self.cascade.features, (w, h), sf, mins, maxs)
            with self._lock:
                if len(self._plans) >= 8:
                    self._plans.pop(next(iter(self._plans)))
                self._plans[key] = plan
        stats = DetectionStats(levels=int(plan.scales.size))
        if plan.item_set.size == 0:
            self.last_stats = stats
            return np.zeros((0, 4), np.int32)
        rbuf, buf, hit_x, hit_count, scan_stats = self._buffers(plan)
        stride = plan.stride
        rbuf[:h * stride].reshape(h, stride)[:, :w] = gray
        one = np.zeros(1, np.int64)
        nthreads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            fill_packed_integrals(rbuf, buf, stride, one, one + w, one + h, plan.sq_ofs,
                                  plan.t_ofs)
        finally:
            numba.set_num_threads(nthreads)
        k = self._k
        scan_rows(buf, plan.sq_ofs, plan.item_base, plan.item_cols, plan.item_step,
                  plan.item_every, plan.item_set, plan.norm, plan.area, plan.rec,
                  plan.rec.view(np.float32), k.tree_node_start, k.tree_table, k.node_left,
                  k.node_right, k.tree_leaf_start, k.leaves, k.stage_tree_start,
                  k.stage_threshold, k.tree_rmax, k.tree_rmin, k.row_stages,
                  np.where(plan.col_px == 1, k.dense_density, np.inf), nthreads, hit_x,
                  hit_count, scan_stats)
        items, cols = collect_hits(hit_x, hit_count)
        sc = plan.item_set[items]
        out = np.empty((items.size, 4), np.int32)
        out[:, 0] = plan.x_lo[sc] + cols * plan.col_px[sc]
        out[:, 1] = plan.item_y[items]
        out[:, 2] = plan.box_w[sc]
        out[:, 3] = plan.box_h[sc]
        stats.windows = int(scan_stats[:, 0].sum())
        stats.features = int(scan_stats[:, 1].sum())
        stats.candidates = int(items.size)
        stats.ms = (time.perf_counter() - t0) * 1e3
        self.last_stats = stats
        return out

    def warmup(self) -> CascadeDetector:
        """Run once on a small synthetic image so kernels are compiled/loaded."""
        ww, wh = self.window
        rng = np.random.default_rng(0)
        img = rng.integers(0, 256, (2 * wh + 3, 2 * ww + 5), dtype=np.uint8)
        self.detect(img)
        return self

    # -------------------------------------------------------------- helpers
    def _plan(self, w: int, h: int, sf: float, mins, maxs) -> _ScanPlan:
        key = (w, h, sf, mins, maxs)
        with self._lock:
            plan = self._plans.get(key)
        if plan is None:
            plan = _ScanPlan.build(self, w, h, sf, mins, maxs)
            with self._lock:
                if len(self._plans) >= 8:
                    self._plans.pop(next(iter(self._plans)))
                self._plans[key] = plan
        return plan

    def _buffers(self, plan: _ScanPlan | FeatureScanPlan) -> tuple[np.ndarray, ...]:
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
            views = plan.views(bufs[0]) if isinstance(plan, _ScanPlan) else []
            slot = slots[kind] = (plan, bufs, views)
        return slot[1]

    def _level_views(self) -> list[np.ndarray]:
        # The pyramid levels inside this thread's current uint8 buffer.
        return self._local.slots[_ScanPlan][2]

    def _records(self, stride: int, t_ofs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = (stride, t_ofs)
        with self._lock:
            hit = self._records_cache.get(key)
            if hit is None:
                if len(self._records_cache) > 16:
                    self._records_cache.clear()
                rec, norm = self._k.records(stride, t_ofs)
                # One record set (the scan's rows may each name theirs).
                hit = (rec[None], rec.view(np.float32)[None], norm[None])
                self._records_cache[key] = hit
        return hit

    def __repr__(self) -> str:
        return f"CascadeDetector({self.cascade!r})"
