"""The paper's scan: features scaled to the window instead of the image scaled down.

Viola and Jones (2004, section 5) scan a cascade over one integral image of the
original picture: at scale ``s`` every feature rectangle is scaled by ``s`` and
the window moves ``round(step * s)`` pixels, so no pyramid is ever built. OpenCV
1.x did the same (``cvSetImagesForHaarClassifierCascade``), and this module
follows its rules:

* rectangle coordinates and sizes are rounded (``cvRound``) after scaling;
* rounding changes the areas, so the first (enclosing) rectangle's weight is
  recomputed as ``-sum(weight[k] * area[k], k > 0) / area[0]``: a flat patch
  still gives exactly 0;
* the variance normalisation uses the scaled inner window ``(round(s),
  round(s), round((w - 2) s), round((h - 2) s))`` and its area, so a feature's
  normalised value is (up to rounding) the same at every scale.

The boxes are not OpenCV 4's (its pyramid resamples the image), but on real
faces both scans find the same objects; this one needs no resizing and scans
fewer windows at large scales. :class:`vj.CascadeDetector` runs it with
``scan="features"``.

References
----------
P. Viola and M. Jones, "Robust real-time face detection", IJCV 57(2), 2004.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from .pyramid import opencv_scales
from .scan_tables import RECORD, CascadeKernelData, RecordSets, ScanRows, record_sets

__all__ = ["FEATURE_STEP", "FeatureScanPlan", "scaled_features"]

#: Window step at scale ``s``: ``max(1, round(FEATURE_STEP * s))`` pixels (the
#: paper's Delta, which it sets to 1.5). OpenCV's pyramid steps 2 s pixels
#: below scale 2 and s above; 1.5 is denser at small scales and sparser at
#: large ones, where a face still gets enough windows for grouping.
FEATURE_STEP = 1.5
#: Steps up to this scan every pixel column (contiguous loads) and keep every
#: ``step``-th; larger ones read only the windows' columns (gathers).
CONTIGUOUS_STEP = 2


def scaled_features(features, scale: float) -> SimpleNamespace:
    """Features scaled by ``scale``, rounded and area-corrected (OpenCV 1.x rules).

    Parameters
    ----------
    features : HaarFeatureSet
    scale : float

    Returns
    -------
    namespace with ``rects`` (F, 3, 4) int64, ``weights`` (F, 3) float32 and
    ``tilted`` (F,) bool, the fields :func:`vj.scan_tables.feature_offsets` reads.
    """
    used = features.weights != 0
    rects = np.where(used[..., None], np.rint(features.rects * np.float64(scale)), 0)
    rects = rects.astype(np.int64)
    area = (rects[..., 2] * rects[..., 3]).astype(np.float64)
    weights = features.weights.astype(np.float64).copy()
    rest = (weights[:, 1:] * area[:, 1:]).sum(axis=1)
    # A rectangle that rounds to nothing keeps its weight (it adds 0 anyway).
    fix = area[:, 0] > 0
    weights[fix, 0] = -rest[fix] / area[fix, 0]
    return SimpleNamespace(rects=rects, weights=weights.astype(np.float32),
                           tilted=features.tilted)


def _corner_extent(f) -> tuple[int, int, int, int]:
    """(min dx, max dx, min dy, max dy) over every corner every feature reads."""
    r = f.rects
    x, y, w, h = r[..., 0], r[..., 1], r[..., 2], r[..., 3]
    t = f.tilted[:, None]
    xs = np.stack([x, x + w, np.where(t, x - h, x), np.where(t, x + w - h, x + w)])
    ys = np.stack([y, y + h, np.where(t, y + w, y + h), np.where(t, y + w + h, y + h)])
    used = (f.weights != 0)[None]
    if not used.any():
        return 0, 0, 0, 0
    return (int(xs[used.repeat(4, 0)].min()), int(xs[used.repeat(4, 0)].max()),
            int(ys[used.repeat(4, 0)].min()), int(ys[used.repeat(4, 0)].max()))


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


@dataclass(frozen=True)
class _Scale:
    """The windows of one scale that fit in the image: box, variance window, range."""

    scale: np.floating
    features: SimpleNamespace
    box_w: int
    box_h: int
    r: int
    nw: int
    nh: int
    x0: int
    x1: int
    y0: int
    y1: int
    step: int

    @property
    def col_px(self) -> int:
        # Small steps: every pixel is a scan column (contiguous loads, as in the
        # exact scan), windows every ``step`` columns; large steps: a column per
        # window, read with gathers, which beats computing step times as many
        # (and then only the first stage runs row-wide: gathers make later
        # stages cheaper window by window).
        return 1 if self.step <= CONTIGUOUS_STEP else self.step

    def norm(self, stride: int) -> list[int]:
        """Corner offsets of the scaled variance window for row stride ``stride``."""
        r, nw, nh = self.r, self.nw, self.nh
        return [r * stride + r, r * stride + r + nw, (r + nh) * stride + r,
                (r + nh) * stride + r + nw]

    def rows(self) -> np.ndarray:
        """The image rows of its windows."""
        return np.arange(self.y0, self.y1 + 1, self.step, dtype=np.int64)

    def cols(self) -> int:
        """Scan columns per row."""
        n_win = (self.x1 - self.x0) // self.step + 1
        return (n_win - 1) * self.step + 1 if self.col_px == 1 else n_win


def _fit_scale(features, window: tuple[int, int], image_size: tuple[int, int],
               s: np.floating, min_step: int = 1) -> _Scale | None:
    """Scale ``s``'s features and windows, or None when no window fits the image."""
    w, h = image_size
    ww, wh = window
    sf = scaled_features(features, float(s))
    bw, bh = int(np.rint(ww * s)), int(np.rint(wh * s))
    r = int(np.rint(s))
    nw, nh = int(np.rint((ww - 2) * s)), int(np.rint((wh - 2) * s))
    dx0, dx1, dy0, dy1 = _corner_extent(sf)
    # Windows whose every corner lies inside the tables.
    x0, y0 = max(0, -dx0), max(0, -dy0)
    x1 = w - max(dx1, bw, r + nw)
    y1 = h - max(dy1, bh, r + nh)
    if x1 < x0 or y1 < y0 or nw <= 0 or nh <= 0:
        return None
    step = max(1, int(round(max(FEATURE_STEP, min_step) * float(s))))
    return _Scale(s, sf, bw, bh, r, nw, nh, x0, x1, y0, y1, step)


@dataclass(frozen=True)
class FeatureScanPlan:
    """Everything the scaled-feature scan of one image size needs.

    Rows of windows are the scan items: row ``i`` of ``rows`` is scale
    ``rows.record_set[i]``, image row ``item_y[i]``; its windows start at
    ``x_lo[scale]`` and sit ``steps[scale]`` pixels apart; scan column ``c`` is
    pixel ``x_lo + c * col_px[scale]``. ``sets`` holds each scale's node
    records for the integral tables' row stride ``stride``. The image is the
    scan's one "level": ``level_offsets``, ``level_w`` and ``level_h`` are
    ``[0]``, ``[w]`` and ``[h]``.
    """

    scales: np.ndarray
    steps: np.ndarray
    box_w: np.ndarray
    box_h: np.ndarray
    x_lo: np.ndarray
    col_px: np.ndarray
    sets: RecordSets
    rows: ScanRows
    item_y: np.ndarray
    level_offsets: np.ndarray
    level_w: np.ndarray
    level_h: np.ndarray
    stride: int
    nch: int
    sq_ofs: int
    t_ofs: int

    @property
    def n_levels(self) -> int:
        """Scales scanned."""
        return int(self.scales.size)

    @classmethod
    def build(cls, k: CascadeKernelData, features, image_size: tuple[int, int],
              scale_factor: float, min_size=(0, 0), max_size=(0, 0),
              min_step: int = 1) -> FeatureScanPlan:
        """The plan for ``image_size`` ``(w, h)``; ``features`` are the cascade's.

        Windows step ``round(max(FEATURE_STEP, min_step) * s)`` pixels at scale ``s``.
        """
        w, h = image_size
        stride = w + 1
        csize = stride * (h + 1)
        nch = 3 if k.has_tilted else 2
        t_ofs = csize if k.has_tilted else -1
        fits = [f for s in opencv_scales(image_size, k.window, scale_factor, min_size, max_size)
                if (f := _fit_scale(features, k.window, image_size, s, min_step)) is not None]
        recs = [k.node_records(f.features, stride, max(t_ofs, 0)) for f in fits]
        level_rows = [f.rows() for f in fits]
        item_set = _cat([np.full(r.size, i, np.int64) for i, r in enumerate(level_rows)])
        item_y = _cat(level_rows)
        steps = np.array([f.step for f in fits], np.int64)
        col_px = np.array([f.col_px for f in fits], np.int64)
        x_lo = np.array([f.x0 for f in fits], np.int64)
        return cls(
            scales=np.array([f.scale for f in fits], np.float32),
            steps=steps,
            box_w=np.array([f.box_w for f in fits], np.int32),
            box_h=np.array([f.box_h for f in fits], np.int32),
            x_lo=x_lo,
            col_px=col_px,
            sets=record_sets(
                np.array(recs, np.int32).reshape(-1, k.node_feature.size, RECORD),
                np.array([f.norm(stride) for f in fits], np.int64).reshape(-1, 4),
                np.array([float(f.nw * f.nh) for f in fits], np.float64),
                # Gathered rows (col_px > 1) run only the first stage row-wide.
                np.where(col_px == 1, k.dense_density, np.inf)),
            rows=ScanRows(
                base=item_y * stride + x_lo[item_set],
                cols=_cat([np.full(r.size, f.cols(), np.int64)
                           for f, r in zip(fits, level_rows, strict=True)]),
                step=col_px[item_set] if item_set.size else item_set,
                every=(steps // col_px)[item_set] if item_set.size else item_set,
                record_set=item_set,
            ),
            item_y=item_y,
            level_offsets=np.zeros(1, np.int64),
            level_w=np.zeros(1, np.int64) + w,
            level_h=np.zeros(1, np.int64) + h,
            stride=stride,
            nch=nch,
            sq_ofs=(nch - 1) * csize,
            t_ofs=t_ofs,
        )

    def allocate(self) -> tuple[np.ndarray, ...]:
        """Scratch buffers: padded image, integral tables, hits and counters."""
        n_items = self.rows.record_set.size
        max_n = max(int(self.rows.cols.max()) if n_items else 0, 1)
        csize = self.sq_ofs // (self.nch - 1)
        return (np.zeros(csize, np.uint8), np.empty(self.nch * csize, np.int32),
                np.empty((n_items, max_n), np.int32), np.empty(n_items, np.int64),
                np.empty((n_items, 2), np.int64))

    def views(self, rbuf: np.ndarray) -> list[np.ndarray]:
        """The image's ``(h, w)`` place in the padded uint8 buffer (one "level")."""
        w, h = int(self.level_w[0]), int(self.level_h[0])
        return [rbuf[:h * self.stride].reshape(h, self.stride)[:, :w]]

    def load(self, gray: np.ndarray, views: list[np.ndarray]) -> None:
        """Copy ``gray`` into the padded buffer (:meth:`views`)."""
        views[0][...] = gray

    def boxes(self, items: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(N, 4) int32 ``x, y, w, h`` of the windows at (row, column) hits."""
        sc = self.rows.record_set[items]
        out = np.empty((items.size, 4), np.int32)
        out[:, 0] = self.x_lo[sc] + cols * self.col_px[sc]
        out[:, 1] = self.item_y[items]
        out[:, 2] = self.box_w[sc]
        out[:, 3] = self.box_h[sc]
        return out
