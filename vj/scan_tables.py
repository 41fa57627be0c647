"""The arrays the scan kernels of :mod:`vj.scan` read, and how they are built.

A cascade is prepared once per detector (:class:`CascadeKernelData`): trees
renumbered in the order the kernels evaluate them, leaf tables for branch-free
trees and the bounds that let a stage stop early. Per row stride of the integral
tables its nodes become 64-byte records (:meth:`CascadeKernelData.records`).

The kernels take these in three bundles, namedtuples of arrays (numba passes
them like separate arguments):

* :class:`CascadeTables`, the cascade in kernel order;
* :class:`RecordSets`, one or more sets of node records with their variance
  window (one for a pyramid scan, one per scale for the scaled-feature scan);
* :class:`ScanRows`, the rows of windows to scan and the record set of each.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .cascade import Cascade

__all__ = ["CascadeKernelData", "CascadeTables", "RecordSets", "ScanRows", "feature_offsets",
           "record_sets", "stage_sums_are_exact"]

#: Trees with at most this many nodes are evaluated branch-free through a leaf table.
MAX_TABLE_NODES = 4
#: Live windows per chunk column below which the scan goes window by window.
DENSE_DENSITY = 0.2
#: int32 fields of a node record: 12 corner offsets, 3 weights, the threshold.
RECORD = 16
#: Record fields (read as float32) of the three weights and the threshold.
W0, W1, W2, THR = 12, 13, 14, 15


class CascadeTables(NamedTuple):
    """A cascade in the kernels' order (``T`` trees, ``M`` nodes, ``S`` stages).

    Attributes
    ----------
    tree_node_start : (T + 1,) int32 ndarray
        Tree ``t``'s nodes are ``tree_node_start[t] .. tree_node_start[t + 1] - 1``.
    tree_table : (T, 2**n) float64 ndarray
        The leaf a tabled tree reaches; bit ``b`` of the column is node ``b``'s
        ``value < threshold``.
    node_left, node_right : (M,) int32 ndarray
        Children of each node (``<= 0``: leaf ``-child``), for untabled trees.
    tree_leaf_start : (T + 1,) int32 ndarray
        Tree ``t``'s leaves start at ``leaves[tree_leaf_start[t]]``.
    leaves : (L,) float64 ndarray
    stage_tree_start : (S + 1,) int32 ndarray
        Stage ``s``'s trees are ``stage_tree_start[s] .. stage_tree_start[s + 1] - 1``.
    stage_threshold : (S,) float64 ndarray
    tree_rmax, tree_rmin : (T,) float64 ndarray
        The most and least the trees after ``t`` in its stage can still add.
    row_stages : bool
        Every tree is tabled, so stages may run stage-major over a row.
    """

    tree_node_start: np.ndarray
    tree_table: np.ndarray
    node_left: np.ndarray
    node_right: np.ndarray
    tree_leaf_start: np.ndarray
    leaves: np.ndarray
    stage_tree_start: np.ndarray
    stage_threshold: np.ndarray
    tree_rmax: np.ndarray
    tree_rmin: np.ndarray
    row_stages: bool


class RecordSets(NamedTuple):
    """``K`` sets of node records; a scanned row names the one it uses.

    Attributes
    ----------
    rec : (K, M, 16) int32 ndarray
        Node records (see :meth:`CascadeKernelData.records`).
    recf : (K, M, 16) float32 ndarray
        The same memory read as float32 (the weights and thresholds).
    norm : (K, 4) int64 ndarray
        Corner offsets of the variance window.
    area : (K,) float64 ndarray
        Its area in pixels.
    dense_density : (K,) float64 ndarray
        Fraction of live windows in the live chunks above which a stage still
        runs stage-major (``inf``: only the first stage does).
    """

    rec: np.ndarray
    recf: np.ndarray
    norm: np.ndarray
    area: np.ndarray
    dense_density: np.ndarray


class ScanRows(NamedTuple):
    """Rows of windows: row ``i`` has ``cols[i]`` scan columns.

    Attributes
    ----------
    base : (N,) int64 ndarray
        Buffer position of column 0.
    cols : (N,) int64 ndarray
        Scan columns; column ``c`` is at ``base + c * step``.
    step : (N,) int64 ndarray
        Buffer elements between columns.
    every : (N,) int64 ndarray
        A window sits at every ``every``-th column.
    record_set : (N,) int64 ndarray
        The :class:`RecordSets` entry the row uses.
    """

    base: np.ndarray
    cols: np.ndarray
    step: np.ndarray
    every: np.ndarray
    record_set: np.ndarray


def record_sets(rec: np.ndarray, norm: np.ndarray, area: np.ndarray,
                dense_density: np.ndarray) -> RecordSets:
    """:class:`RecordSets` of ``(K, M, 16)`` int32 records ``rec`` (``recf`` is a view)."""
    return RecordSets(rec, rec.view(np.float32), norm, area, dense_density)


def stage_sums_are_exact(cascade: Cascade) -> bool:
    """Whether every float64 sum of a stage's leaf values is exact (order-free).

    Each leaf value is a float32, hence an integer multiple of its ulp; every
    sum of leaves of a stage is a multiple of the smallest such ulp ``q`` and at
    most ``B`` (the sum of the leaves' magnitudes) in size. When ``B / q < 2**53``
    all those sums are representable in float64, so each addition is exact.
    """
    starts = cascade.tree_leaf_start
    stage_start = cascade.stage_tree_start
    for s in range(cascade.n_stages):
        t0 = int(stage_start[s])
        t1 = t0 + int(cascade.stage_trees[s])
        lo = int(starts[t0])
        hi = int(starts[t1 - 1]) + int(cascade.tree_nodes[t1 - 1]) + 1
        v = cascade.leaf_values[lo:hi].astype(np.float64)
        v = v[v != 0]
        if v.size == 0:
            continue
        q = np.ldexp(1.0, np.frexp(np.abs(v))[1] - 24).min()
        if np.abs(v).sum() / q >= 2.0**53:
            return False
    return True


def _leaf_tables(n_per_tree, leaf_start, leaves, left, right, n_nodes):
    """(T, 2**n_nodes) float64: the leaf a tree reaches for each set of node outcomes.

    Bit ``b`` of the column index is ``value < threshold`` at the tree's node ``b``.
    """
    n_trees = n_per_tree.size
    table = np.zeros((n_trees, 1 << max(n_nodes, 1)))
    k0 = 0
    for t in range(n_trees):
        if n_per_tree[t] > n_nodes:
            k0 += int(n_per_tree[t])
            continue
        for code in range(1 << n_nodes):
            idx = 0
            while True:
                k = k0 + idx
                idx = int(left[k] if (code >> idx) & 1 else right[k])
                if idx <= 0:
                    break
            table[t, code] = leaves[leaf_start[t] - idx]
        k0 += int(n_per_tree[t])
    return table


def _remaining_bounds(stage_start, lo, hi, exact):
    """(tree_rmax, tree_rmin): the most and least the trees after ``t`` can add.

    ``+inf``/``-inf`` (never conclusive) when sums are not exact, so that only
    the full sum decides, as in OpenCV.
    """
    rmax = np.zeros(lo.size)
    rmin = np.zeros(lo.size)
    for s in range(stage_start.size - 1):
        t0, t1 = stage_start[s], stage_start[s + 1]
        if exact:
            # Exact by the same argument as the sums themselves.
            rmax[t0:t1] = np.append(np.cumsum(hi[t0:t1][::-1])[::-1][1:], 0.0)
            rmin[t0:t1] = np.append(np.cumsum(lo[t0:t1][::-1])[::-1][1:], 0.0)
        else:
            rmax[t0:t1 - 1] = np.inf
            rmin[t0:t1 - 1] = -np.inf
    return rmax, rmin


class CascadeKernelData:
    """A cascade's arrays in the form the kernels take (built once per detector).

    Trees are renumbered stage by stage: within a stage, most decisive first
    (largest leaf spread) when :func:`stage_sums_are_exact`, else in file order.
    ``tree_rmax[t]``/``tree_rmin[t]`` bound what the trees after ``t`` in its
    stage can still add: ``+inf``/``-inf`` (never conclusive) when sums are not
    exact, so only the full sum decides, as in OpenCV. ``tables`` bundles the
    arrays the kernels read (:class:`CascadeTables`).

    Parameters
    ----------
    cascade : Cascade
    dense_density : float, optional
        Fraction of live windows among the columns of live chunks above which
        a stage is still evaluated stage-major (default ``DENSE_DENSITY``).
    """

    def __init__(self, cascade: Cascade, dense_density: float | None = None) -> None:
        f = cascade.features
        self.window = cascade.window
        self.has_tilted = f.has_tilted
        self.stumps = cascade.is_stump_based
        self.n_stages = cascade.n_stages
        self.exact_sums = stage_sums_are_exact(cascade)
        self._features = f

        node_start = cascade.tree_node_start
        leaf_start = cascade.tree_leaf_start
        stage_start = np.append(cascade.stage_tree_start, cascade.n_trees).astype(np.int32)
        leaves = cascade.leaf_values.astype(np.float64)
        lo = np.array([leaves[leaf_start[t]:leaf_start[t] + cascade.tree_nodes[t] + 1].min()
                       for t in range(cascade.n_trees)])
        hi = np.array([leaves[leaf_start[t]:leaf_start[t] + cascade.tree_nodes[t] + 1].max()
                       for t in range(cascade.n_trees)])
        order = np.arange(cascade.n_trees)
        if self.exact_sums:
            for s in range(cascade.n_stages):
                t0, t1 = stage_start[s], stage_start[s + 1]
                order[t0:t1] = t0 + np.argsort(-(hi[t0:t1] - lo[t0:t1]), kind="stable")
        nodes = np.concatenate([np.arange(node_start[t], node_start[t] + cascade.tree_nodes[t])
                                for t in order])
        leaf_idx = np.concatenate([np.arange(leaf_start[t], leaf_start[t] + cascade.tree_nodes[t]
                                             + 1) for t in order])
        n_per_tree = cascade.tree_nodes[order]
        self.node_feature = cascade.node_feature[nodes]
        self.node_threshold = cascade.node_threshold[nodes]
        self.node_left = np.ascontiguousarray(cascade.node_left[nodes])
        self.node_right = np.ascontiguousarray(cascade.node_right[nodes])
        # T + 1 entries each: tree t's nodes are node_start[t] .. node_start[t + 1].
        self.tree_node_start = np.concatenate([[0], np.cumsum(n_per_tree)]).astype(np.int32)
        self.tree_leaf_start = np.concatenate([[0], np.cumsum(n_per_tree + 1)]).astype(np.int32)
        self.leaves = np.ascontiguousarray(leaves[leaf_idx])
        self.stage_tree_start = stage_start
        self.stage_threshold = cascade.effective_stage_threshold.astype(np.float64)
        self.tree_rmax, self.tree_rmin = _remaining_bounds(stage_start, lo[order], hi[order],
                                                           self.exact_sums)
        n_nodes = int(n_per_tree.max())
        # Trees deeper than the tables are walked node by node, and then the
        # stage-major scan (which needs every tree tabled) is off.
        self.row_stages = n_nodes <= MAX_TABLE_NODES
        self.tree_table = _leaf_tables(n_per_tree, self.tree_leaf_start, self.leaves,
                                       self.node_left, self.node_right,
                                       min(n_nodes, MAX_TABLE_NODES))
        self.dense_density = DENSE_DENSITY if dense_density is None else float(dense_density)
        self.tables = CascadeTables(
            self.tree_node_start, self.tree_table, self.node_left, self.node_right,
            self.tree_leaf_start, self.leaves, self.stage_tree_start, self.stage_threshold,
            self.tree_rmax, self.tree_rmin, self.row_stages)

    def records(self, stride: int, tilted_channel: int) -> tuple[np.ndarray, np.ndarray]:
        """Node records for row stride ``stride`` and the variance-window offsets.

        Returns
        -------
        rec : (M, 16) int32 ndarray
            Per node (in kernel order): 12 corner offsets, then the 3 weights and
            the threshold as float32 bit patterns (read with ``rec.view(np.float32)``).
        norm : (4,) int64 ndarray
            Corner offsets of the window's inner rectangle (OpenCV's ``normrect``).
        """
        ww, wh = self.window
        norm = np.array(
            [stride + 1, stride + ww - 1, (wh - 1) * stride + 1, (wh - 1) * stride + ww - 1],
            np.int64,
        )
        return self.node_records(self._features, stride, tilted_channel), norm

    def node_records(self, features, stride: int, tilted_channel: int) -> np.ndarray:
        """(M, 16) int32 records of the nodes (kernel order) reading ``features``.

        ``features`` is the cascade's feature set or a scaled copy of it (any
        object with ``rects``, ``weights`` and ``tilted``, as for
        :func:`feature_offsets`); thresholds are the cascade's.
        """
        rec = np.empty((self.node_feature.size, RECORD), np.int32)
        rec[:, :12] = feature_offsets(features, stride, tilted_channel)[self.node_feature]
        floats = rec.view(np.float32)
        floats[:, W0:W2 + 1] = features.weights[self.node_feature]
        floats[:, THR] = self.node_threshold
        return rec


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
