"""Numba kernels that run a cascade over every window of a packed image pyramid.

All pyramid levels' integral tables live in one flat int32 buffer: channel 0 is
the sums, channel 1 the tilted sums (when the cascade has tilted features) and
the last channel the squared sums, each ``channel_size`` long with a shared row
stride (see :mod:`vj.pyramid`). A feature's 12 corner offsets are therefore the
same at every level and every window, as in OpenCV's ``OptFeature``, and the
inner loop is nothing but loads, integer adds and float32 multiply-adds.

Arithmetic follows OpenCV bit for bit: integer rectangle sums wrapped to int32,
``w0*s0 + w1*s1 (+ w2*s2)`` in float32, times the float32 variance factor,
compared in float32; stage sums accumulate in float64.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .cascade import Cascade

__all__ = ["CascadeKernelData", "feature_offsets"]


class CascadeKernelData:
    """A cascade's arrays in the form the kernels take (built once per detector)."""

    def __init__(self, cascade: Cascade) -> None:
        f = cascade.features
        self.window = cascade.window
        self.weights = np.ascontiguousarray(f.weights[cascade.node_feature], np.float32)
        self.node_feature = cascade.node_feature
        self.node_threshold = cascade.node_threshold
        self.node_left = cascade.node_left
        self.node_right = cascade.node_right
        self.tree_nodes = cascade.tree_nodes
        self.leaf_values = cascade.leaf_values
        self.stage_trees = cascade.stage_trees
        self.stage_threshold = cascade.effective_stage_threshold
        self.has_tilted = f.has_tilted
        self.stumps = cascade.is_stump_based
        self._features = f

    def offsets(self, stride: int, tilted_channel: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-node feature corner offsets (M, 12) and normalisation offsets for ``stride``."""
        ww, wh = self.window
        norm = np.array(
            [stride + 1, stride + ww - 1, (wh - 1) * stride + 1, (wh - 1) * stride + ww - 1],
            np.int64,
        )
        ofs = feature_offsets(self._features, stride, tilted_channel)[self.node_feature]
        return np.ascontiguousarray(ofs), norm


def feature_offsets(features, stride: int, tilted_channel: int) -> np.ndarray:
    """(F, 12) int32 flat offsets of each rectangle's 4 corners (OpenCV's OptFeature).

    Upright rectangle corners: (x, y), (x+w, y), (x, y+h), (x+w, y+h); tilted:
    (x, y), (x-h, y+h), (x+w, y+w), (x+w-h, y+w+h), read from the tilted
    channel starting at ``tilted_channel``. The sum is ``p0 - p1 - p2 + p3``.
    """
    r = features.rects.astype(np.int64)
    x, y, w, h = r[..., 0], r[..., 1], r[..., 2], r[..., 3]
    up = np.stack([x + stride * y, x + w + stride * y, x + stride * (y + h),
                   x + w + stride * (y + h)], axis=-1)
    tl = np.stack([x + stride * y, x - h + stride * (y + h), x + w + stride * (y + w),
                   x + w - h + stride * (y + w + h)], axis=-1) + tilted_channel
    ofs = np.where(features.tilted[:, None, None], tl, up)
    ofs[features.weights == 0] = 0
    return np.ascontiguousarray(ofs.reshape(-1, 12), dtype=np.int32)


@nb.njit(cache=True, nogil=True, inline="always")
def _rect(buf, p, a, b, c, d):
    # int32 loads, exact modular difference, back to int32 like C int arithmetic.
    # Unsigned indices spare numba's negative-index wraparound check on each load.
    return np.int32(
        np.int64(buf[np.uint64(p + a)]) - buf[np.uint64(p + b)] - buf[np.uint64(p + c)]
        + buf[np.uint64(p + d)]
    )


@nb.njit(cache=True, nogil=True, inline="always")
def _feature(buf, p, ofs, wts, k):
    # Always three rectangles: an unused one has weight 0 and all-zero offsets, so
    # it adds exactly +0.0 -- cheaper than a badly predicted branch.
    v = wts[k, 0] * np.float32(_rect(buf, p, ofs[k, 0], ofs[k, 1], ofs[k, 2], ofs[k, 3]))
    v = v + wts[k, 1] * np.float32(_rect(buf, p, ofs[k, 4], ofs[k, 5], ofs[k, 6], ofs[k, 7]))
    return v + wts[k, 2] * np.float32(_rect(buf, p, ofs[k, 8], ofs[k, 9], ofs[k, 10], ofs[k, 11]))


@nb.njit(cache=True, nogil=True, inline="always")
def window_factor(buf, p, sq_ofs, norm, area):
    """OpenCV's ``setWindow``: (float32 1/(area*std), window accepted?)."""
    s = np.int64(_rect(buf, p, norm[0], norm[1], norm[2], norm[3]))
    sq = (np.int64(buf[sq_ofs + p + norm[0]]) - buf[sq_ofs + p + norm[1]]
          - buf[sq_ofs + p + norm[2]] + buf[sq_ofs + p + norm[3]]) & 0xFFFFFFFF
    nf = area * np.float64(sq) - np.float64(s) * np.float64(s)
    if nf > 0.0:
        fac = np.float32(1.0 / np.sqrt(nf))
        return fac, area * np.float64(fac) < 1e-1
    return np.float32(1.0), False


@nb.njit(cache=True, nogil=True, inline="always")
def run_cascade(buf, p, fac, ofs, wts, node_threshold, node_left, node_right,
                tree_nodes, leaf_values, stage_trees, stage_threshold, stumps, counter):
    """Evaluate the cascade at window origin ``p``.

    ``ofs`` (M, 12) and ``wts`` (M, 3) hold each *node's* feature offsets and
    weights (node-major, so the cascade reads them in order).

    Returns the number of stages passed (``== n_stages``: accepted). Adds the
    number of features evaluated to ``counter[0]``.
    """
    node = 0
    leaf = 0
    tree = 0
    n_feat = 0
    for s in range(stage_trees.size):
        total = 0.0
        for _ in range(stage_trees[s]):
            if stumps:
                val = _feature(buf, p, ofs, wts, node) * fac
                n_feat += 1
                if val < node_threshold[node]:
                    total += leaf_values[leaf]
                else:
                    total += leaf_values[leaf + 1]
                node += 1
                leaf += 2
            else:
                idx = 0
                while True:
                    k = node + idx
                    val = _feature(buf, p, ofs, wts, k) * fac
                    n_feat += 1
                    idx = node_left[k] if val < node_threshold[k] else node_right[k]
                    if idx <= 0:
                        break
                total += leaf_values[leaf - idx]
                n = tree_nodes[tree]
                node += n
                leaf += n + 1
            tree += 1
        if total < stage_threshold[s]:
            counter[0] += n_feat
            return s
    counter[0] += n_feat
    return stage_trees.size


@nb.njit(cache=True, nogil=True, parallel=True)
def scan_levels(buf, sq_ofs, stride, level_offset, level_xmax, level_ymax, level_step,
                item_level, item_y, win_area, norm, ofs, wts, node_threshold,
                node_left, node_right, tree_nodes, leaf_values, stage_trees, stage_threshold,
                stumps, nthreads, hits, stats):
    """Scan the rows ``item_y`` of levels ``item_level`` (OpenCV's invoker loop).

    ``hits[i, x] = 1`` where the window at column ``x`` of work item ``i`` passes
    every stage. ``stats[i] = (windows scanned, features evaluated)``. Work items
    are dealt to ``nthreads`` threads round-robin so big and small levels mix.
    """
    n_items = item_level.size
    n_stages = stage_trees.size
    for t in nb.prange(nthreads):
        counter = np.zeros(1, np.int64)
        for i in range(t, n_items, nthreads):
            lv = item_level[i]
            y = item_y[i]
            step = level_step[lv]
            row = level_offset[lv] + y * stride
            xmax = level_xmax[lv]
            counter[0] = 0
            n_win = 0
            x = 0
            while x < xmax:
                p = row + x
                n_win += 1
                fac, ok = window_factor(buf, p, sq_ofs, norm, win_area)
                if ok:
                    res = run_cascade(buf, p, fac, ofs, wts, node_threshold,
                                      node_left, node_right, tree_nodes, leaf_values,
                                      stage_trees, stage_threshold, stumps, counter)
                    if res == n_stages:
                        hits[i, x] = 1
                    elif res == 0:
                        # OpenCV skips the next column after a first-stage rejection.
                        x += step
                x += step
            stats[i, 0] = n_win
            stats[i, 1] = counter[0]
