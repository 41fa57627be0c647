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
from .scan import RECORD, CascadeKernelData, feature_offsets

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
    ``tilted`` (F,) bool, the fields :func:`vj.scan.feature_offsets` reads.
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
class FeatureScanPlan:
    """Everything the scaled-feature scan of one image size needs.

    Rows of windows are the scan items: item ``i`` is scale ``item_set[i]``,
    image row ``item_y[i]``; its windows start at ``x_lo[scale]`` and sit
    ``steps[scale]`` pixels apart; scan column ``c`` is pixel
    ``x_lo + c * col_px[scale]``. ``rec[scale]`` are the node records for the
    integral tables' row stride ``stride``.
    """

    scales: np.ndarray
    steps: np.ndarray
    box_w: np.ndarray
    box_h: np.ndarray
    x_lo: np.ndarray
    col_px: np.ndarray
    rec: np.ndarray
    norm: np.ndarray
    area: np.ndarray
    item_set: np.ndarray
    item_y: np.ndarray
    item_base: np.ndarray
    item_cols: np.ndarray
    item_step: np.ndarray
    item_every: np.ndarray
    stride: int
    nch: int
    sq_ofs: int
    t_ofs: int

    @classmethod
    def build(cls, k: CascadeKernelData, features, image_size: tuple[int, int],
              scale_factor: float, min_size=(0, 0), max_size=(0, 0)) -> FeatureScanPlan:
        w, h = image_size
        ww, wh = k.window
        stride = w + 1
        csize = stride * (h + 1)
        nch = 3 if k.has_tilted else 2
        t_ofs = csize if k.has_tilted else -1
        scales = opencv_scales(image_size, k.window, scale_factor, min_size, max_size)
        kept, recs, norms, areas, steps, box_w, box_h, x_lo = [], [], [], [], [], [], [], []
        col_px = []
        sets, ys, bases, cols = [], [], [], []
        for s in scales:
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
                continue
            step = max(1, int(round(FEATURE_STEP * float(s))))
            rec = np.empty((k.node_feature.size, RECORD), np.int32)
            rec[:, :12] = feature_offsets(sf, stride, max(t_ofs, 0))[k.node_feature]
            fl = rec.view(np.float32)
            fl[:, 12:15] = sf.weights[k.node_feature]
            fl[:, 15] = k.node_threshold
            i = len(recs)
            kept.append(s)
            recs.append(rec)
            norms.append([r * stride + r, r * stride + r + nw, (r + nh) * stride + r,
                          (r + nh) * stride + r + nw])
            areas.append(float(nw * nh))
            steps.append(step)
            box_w.append(bw)
            box_h.append(bh)
            x_lo.append(x0)
            rows = np.arange(y0, y1 + 1, step, dtype=np.int64)
            sets.append(np.full(rows.size, i, np.int64))
            ys.append(rows)
            bases.append(rows * stride + x0)
            n_win = (x1 - x0) // step + 1
            # Small steps: every pixel is a scan column (contiguous loads, as in the
            # exact scan), windows every ``step`` columns; large steps: a column per
            # window, read with gathers, which beats computing step times as many
            # (and then only the first stage runs row-wide: gathers make later
            # stages cheaper window by window).
            col_px.append(1 if step <= CONTIGUOUS_STEP else step)
            cols.append(np.full(rows.size, (n_win - 1) * step + 1 if col_px[-1] == 1
                                else n_win, np.int64))
        n_nodes = k.node_feature.size
        item_set = _cat(sets)
        return cls(
            scales=np.array(kept, np.float32),
            steps=np.array(steps, np.int64),
            box_w=np.array(box_w, np.int32),
            box_h=np.array(box_h, np.int32),
            x_lo=np.array(x_lo, np.int64),
            rec=np.array(recs, np.int32).reshape(-1, n_nodes, RECORD),
            norm=np.array(norms, np.int64).reshape(-1, 4),
            area=np.array(areas, np.float64),
            item_set=item_set,
            item_y=_cat(ys),
            item_base=_cat(bases),
            item_cols=_cat(cols),
            col_px=np.array(col_px, np.int64),
            item_step=np.array(col_px, np.int64)[item_set] if item_set.size else item_set,
            item_every=(np.array(steps, np.int64) // np.array(col_px, np.int64))[item_set]
            if item_set.size else item_set,
            stride=stride,
            nch=nch,
            sq_ofs=(nch - 1) * csize,
            t_ofs=t_ofs,
        )

    def allocate(self) -> tuple[np.ndarray, ...]:
        """Scratch buffers: padded image, integral tables, hits and counters."""
        n_items = self.item_set.size
        max_n = max(int(self.item_cols.max()) if n_items else 0, 1)
        csize = self.sq_ofs // (self.nch - 1)
        return (np.zeros(csize, np.uint8), np.empty(self.nch * csize, np.int32),
                np.empty((n_items, max_n), np.int32), np.empty(n_items, np.int64),
                np.empty((n_items, 2), np.int64))
