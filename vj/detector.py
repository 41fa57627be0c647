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
from .pyramid import MAX_BUFFER_BYTES, opencv_scales, pyramid_layout
from .scan import CascadeKernelData, scan_levels

__all__ = ["CascadeDetector", "DetectionStats", "clip_boxes", "to_gray"]

GROUP_EPS = 0.2


@dataclass
class DetectionStats:
    """What the last ``detect`` call did.

    Attributes
    ----------
    windows : int
        Windows scanned (all pyramid levels).
    features : int
        Features evaluated over all windows.
    candidates : int
        Windows accepted by every stage, before grouping.
    levels : int
        Pyramid levels scanned.
    ms : float
        Wall-clock milliseconds of the call.
    """

    windows: int = 0
    features: int = 0
    candidates: int = 0
    levels: int = 0
    ms: float = 0.0

    @property
    def features_per_window(self) -> float:
        return self.features / self.windows if self.windows else 0.0


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
        self._offsets_cache: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
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

        Returns
        -------
        boxes : (N, 4) int32 ndarray of ``x, y, w, h``
        scores : (N,) float32 ndarray, only if ``return_scores``
        """
        t0 = time.perf_counter()
        gray = to_gray(image)
        raw = self.candidates(gray, scale_factor, min_size, max_size)
        stats = self.last_stats
        boxes, counts = group_rectangles(raw, int(min_neighbors), GROUP_EPS)
        boxes, counts = clip_boxes(boxes, counts, gray.shape)
        stats.ms = (time.perf_counter() - t0) * 1e3
        if return_scores:
            return boxes, counts.astype(np.float32)
        return boxes

    def candidates(
        self,
        image: np.ndarray,
        scale_factor: float = 1.1,
        min_size: int | tuple[int, int] | None = None,
        max_size: int | tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Every window the cascade accepts, before grouping: (N, 4) int32 ``x, y, w, h``.

        Ordered by pyramid level, then row, then column.
        """
        gray = to_gray(image)
        sf = float(scale_factor)
        if not np.isfinite(sf) or sf <= 1.0:
            raise ValueError(f"scale_factor must be a finite number > 1, got {scale_factor!r}")
        mins = _size_arg("min_size", min_size)
        maxs = _size_arg("max_size", max_size)
        t0 = time.perf_counter()
        h, w = gray.shape
        scales = opencv_scales((w, h), self.window, sf, mins, maxs)
        layout = pyramid_layout((w, h), scales)
        stats = DetectionStats(levels=len(layout))
        if len(layout) == 0:
            self.last_stats = stats
            return np.zeros((0, 4), np.int32)
        k = self._k
        nch = 3 if k.has_tilted else 2
        need = nch * layout.channel_size * 4 + layout.channel_size
        if need > MAX_BUFFER_BYTES:
            raise ValueError(
                f"image {w}x{h} needs {need / 2**30:.1f} GiB of integral tables at this "
                f"min_size; downscale it or pass a larger min_size"
            )
        csize = layout.channel_size
        rbuf = np.empty(csize, np.uint8)
        for lv in range(len(layout)):
            lw, lh = (int(v) for v in layout.sizes[lv])
            view = np.lib.stride_tricks.as_strided(
                rbuf[layout.offsets[lv]:], shape=(lh, lw), strides=(layout.stride, 1)
            )
            sc = float(layout.scales[lv])
            resized = cv2.resize(gray, (lw, lh), fx=1.0 / sc, fy=1.0 / sc,
                                 interpolation=cv2.INTER_LINEAR_EXACT)
            view[...] = resized
        buf = np.empty(nch * csize, np.int32)
        t_ofs = csize if k.has_tilted else -1
        sq_ofs = (nch - 1) * csize
        lw_arr = np.ascontiguousarray(layout.sizes[:, 0])
        lh_arr = np.ascontiguousarray(layout.sizes[:, 1])
        fill_packed_integrals(rbuf, buf, layout.stride, layout.offsets, lw_arr, lh_arr,
                              sq_ofs, t_ofs)

        ww, wh = self.window
        xmax = np.maximum(lw_arr + 1 - ww, 0)
        ymax = np.maximum(lh_arr + 1 - wh, 0)
        item_level = np.concatenate(
            [np.full(len(range(0, ymax[i], layout.ysteps[i])), i, np.int64)
             for i in range(len(layout))])
        item_y = np.concatenate(
            [np.arange(0, ymax[i], layout.ysteps[i], dtype=np.int64) for i in range(len(layout))])
        ofs, norm = self._offsets(layout.stride, t_ofs if t_ofs >= 0 else 0)
        hits = np.zeros((item_level.size, max(int(xmax.max()), 1)), np.uint8)
        scan_stats = np.zeros((item_level.size, 2), np.int64)
        scan_levels(buf, sq_ofs, layout.stride, layout.offsets, xmax, ymax, layout.ysteps,
                    item_level, item_y, float((ww - 2) * (wh - 2)), norm, ofs, k.weights,
                    k.node_threshold, k.node_left, k.node_right, k.tree_nodes,
                    k.leaf_values, k.stage_trees, k.stage_threshold, k.stumps,
                    numba.get_num_threads(), hits, scan_stats)
        items, xs = np.nonzero(hits)
        lv = item_level[items]
        sc = layout.scales[lv]
        out = np.empty((items.size, 4), np.int32)
        # Rect(cvRound(x * scale), cvRound(y * scale), winSize) in float32, as OpenCV.
        out[:, 0] = np.rint(xs.astype(np.float32) * sc)
        out[:, 1] = np.rint(item_y[items].astype(np.float32) * sc)
        out[:, 2] = np.rint(np.float32(ww) * layout.scales)[lv]
        out[:, 3] = np.rint(np.float32(wh) * layout.scales)[lv]
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
    def _offsets(self, stride: int, t_ofs: int) -> tuple[np.ndarray, np.ndarray]:
        key = (stride, t_ofs)
        with self._lock:
            hit = self._offsets_cache.get(key)
            if hit is None:
                if len(self._offsets_cache) > 16:
                    self._offsets_cache.clear()
                hit = self._k.offsets(stride, t_ofs)
                self._offsets_cache[key] = hit
        return hit

    def __repr__(self) -> str:
        return f"CascadeDetector({self.cascade!r})"
