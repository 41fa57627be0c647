"""OpenCV 4's scan: the image scaled down level by level, every window of every level.

:class:`PyramidScanPlan` holds what a scan of one image size needs (built once
per size and options, then reused): the pyramid's levels packed in one buffer
(:mod:`vj.pyramid`), the rows of windows :func:`vj.scan.scan_rows` scans, the
node records for the packed tables' row stride, and how a hit becomes a box.
:class:`vj.CascadeDetector` runs it with ``scan="image"`` (the default);
:mod:`vj.scan_features` is the other scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .pyramid import MAX_BUFFER_BYTES, PyramidLayout, opencv_scales, pyramid_layout
from .scan_tables import CascadeKernelData, RecordSets, ScanRows, record_sets

__all__ = ["PyramidScanPlan"]


@dataclass(frozen=True)
class PyramidScanPlan:
    """Everything about a pyramid scan that depends only on the image size and the options.

    Row ``i`` of ``rows`` is level ``item_level[i]``, level row ``item_y[i]``;
    every level uses the one record set in ``sets``.
    """

    layout: PyramidLayout
    level_w: np.ndarray
    level_h: np.ndarray
    level_n: np.ndarray
    item_level: np.ndarray
    item_y: np.ndarray
    rows: ScanRows
    sets: RecordSets
    box_w: np.ndarray
    box_h: np.ndarray
    nch: int
    sq_ofs: int
    t_ofs: int

    @property
    def n_levels(self) -> int:
        """Pyramid levels (scales) scanned."""
        return len(self.layout)

    @property
    def stride(self) -> int:
        """Row stride of the packed buffers."""
        return self.layout.stride

    @property
    def level_offsets(self) -> np.ndarray:
        """Where each level starts in the packed buffers."""
        return self.layout.offsets

    @classmethod
    def build(cls, k: CascadeKernelData, image_size: tuple[int, int], scale_factor: float,
              min_size=(0, 0), max_size=(0, 0), min_step: int = 1) -> PyramidScanPlan:
        """The plan for ``image_size`` ``(w, h)``; the options as in ``detect``.

        ``min_step``: the smallest window step, in level pixels (see
        :func:`vj.pyramid.pyramid_layout`).

        Raises
        ------
        ValueError
            When the integral tables would need more than ``MAX_BUFFER_BYTES``.
        """
        w, h = image_size
        layout = pyramid_layout((w, h), opencv_scales((w, h), k.window, scale_factor,
                                                      min_size, max_size), min_step)
        nch = 3 if k.has_tilted else 2
        csize = layout.channel_size
        need = nch * csize * 4 + csize
        if need > MAX_BUFFER_BYTES:
            raise ValueError(
                f"image {w}x{h} needs {need / 2**30:.1f} GiB of integral tables at this "
                f"min_size; downscale it or pass a larger min_size"
            )
        ww, wh = k.window
        level_w = np.ascontiguousarray(layout.sizes[:, 0])
        level_h = np.ascontiguousarray(layout.sizes[:, 1])
        steps = layout.ysteps
        xmax = np.maximum(level_w + 1 - ww, 0)
        ymax = np.maximum(level_h + 1 - wh, 0)
        level_rows = [np.arange(0, ymax[i], steps[i], dtype=np.int64) for i in range(len(layout))]
        empty = np.zeros(0, np.int64)
        level_n = (xmax + steps - 1) // steps
        item_level = np.concatenate(
            [np.full(r.size, i, np.int64) for i, r in enumerate(level_rows)] or [empty])
        item_y = np.concatenate(level_rows or [empty])
        # Every column of a row is a scan column (also the odd ones of a step-2
        # level, so that the row loops read contiguous memory); windows sit at
        # every ``step``-th one.
        item_every = steps[item_level]
        t_ofs = csize if k.has_tilted else -1
        rec, norm = k.records(layout.stride, max(t_ofs, 0))
        return cls(
            layout=layout,
            level_w=level_w,
            level_h=level_h,
            level_n=level_n,
            item_level=item_level,
            item_y=item_y,
            rows=ScanRows(
                base=layout.offsets[item_level] + item_y * layout.stride,
                cols=np.maximum((level_n[item_level] - 1) * item_every + 1, 0),
                step=np.ones(item_level.size, np.int64),
                every=item_every,
                record_set=np.zeros(item_level.size, np.int64),
            ),
            # One record set: every level shares the packed tables' row stride.
            sets=record_sets(rec[None], norm[None], np.array([float((ww - 2) * (wh - 2))]),
                             np.array([k.dense_density])),
            box_w=np.rint(np.float32(ww) * layout.scales).astype(np.int32),
            box_h=np.rint(np.float32(wh) * layout.scales).astype(np.int32),
            nch=nch,
            sq_ofs=(nch - 1) * csize,
            t_ofs=t_ofs,
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

    def load(self, gray: np.ndarray, views: list[np.ndarray]) -> None:
        """Resize ``gray`` into every level (:meth:`views`), as OpenCV's detector does."""
        for lv, view in enumerate(views):
            inv = 1.0 / float(self.layout.scales[lv])
            # Straight into the packed buffer: no temporary image per level.
            cv2.resize(gray, view.shape[::-1], dst=view, fx=inv, fy=inv,
                       interpolation=cv2.INTER_LINEAR_EXACT)

    def boxes(self, items: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(N, 4) int32 ``x, y, w, h`` in the image of the windows at (row, column) hits."""
        lv = self.item_level[items]
        sc = self.layout.scales[lv]
        out = np.empty((items.size, 4), np.int32)
        # Rect(cvRound(x * scale), cvRound(y * scale), winSize) in float32, as OpenCV.
        out[:, 0] = np.rint(cols.astype(np.float32) * sc)
        out[:, 1] = np.rint(self.item_y[items].astype(np.float32) * sc)
        out[:, 2] = self.box_w[lv]
        out[:, 3] = self.box_h[lv]
        return out
