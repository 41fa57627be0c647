"""Numba kernels that run a cascade over every window of a packed image pyramid.

All pyramid levels' integral tables live in one flat int32 buffer: channel 0 is
the sums, channel 1 the tilted sums (when the cascade has tilted features) and
the last channel the squared sums, each ``channel_size`` long with a shared row
stride (see :mod:`vj.pyramid`). A feature's 12 corner offsets are therefore the
same at every level and every window, as in OpenCV's ``OptFeature``, and the
inner loop is nothing but loads, integer adds and float32 multiply-adds.

Arithmetic follows OpenCV bit for bit: integer rectangle sums wrapped to int32,
``w0*s0 + w1*s1 + w2*s2`` in float32, times the float32 variance factor,
compared in float32; stage sums accumulate in float64.

Speed comes from three things that leave every result unchanged:

* **Rows first.** Most windows die in the first stages, so a row of windows
  is scanned stage-major: the variance factor and the first stage of every
  column are computed in simple loops over ``x`` whose loads are contiguous,
  which LLVM turns into SIMD code (a step-2 level computes its odd columns
  too: twice the arithmetic still beats strided gathers). OpenCV's rule "skip
  the next window after a first-stage rejection" is then applied to these
  outcomes in order (a window failing the variance test does not skip). Later
  stages run stage-major too, over the 16-column chunks that still hold a live
  window, while those are dense enough; the last few survivors run the
  remaining stages one window at a time. Trees are evaluated branch-free:
  every node's outcome is a bit, and the bits index a table of leaves.
* **Exact stage sums.** A stage sum adds float32 leaf values in float64. When
  every partial sum is a multiple of the smallest leaf's ulp and stays below
  2**53 of those ulps (checked per cascade; true of OpenCV's cascades by a wide
  margin) the float64 additions are exact, so their order does not matter.
  Trees are then evaluated most-decisive first and a stage stops as soon as
  the remaining trees can no longer change its verdict.
* **One record per node.** A node's 12 corner offsets, 3 weights and threshold
  are one 64-byte row (``(M, 16)`` int32, read as float32 where they are
  floats), so each feature costs one cache line.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .cascade import Cascade

__all__ = ["CascadeKernelData", "collect_hits", "feature_offsets", "scan_rows",
           "stage_sums_are_exact"]

#: Trees with at most this many nodes are evaluated branch-free through a leaf table.
MAX_TABLE_NODES = 4
#: Columns per chunk of the stage-major scan (a couple of SIMD vectors).
CHUNK = 16
#: Columns per block of the first stage's row pass (its feature rows stay in L1).
BLOCK = 128
#: Live windows per chunk column below which the scan goes window by window.
DENSE_DENSITY = 0.2
#: int32 fields of a node record: 12 corner offsets, 3 weights, the threshold.
RECORD = 16
_W0, _W1, _W2, _THR = 12, 13, 14, 15


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


class CascadeKernelData:
    """A cascade's arrays in the form the kernels take (built once per detector).

    Trees are renumbered stage by stage: within a stage, most decisive first
    (largest leaf spread) when :func:`stage_sums_are_exact`, else in file order.
    ``tree_rmax[t]``/``tree_rmin[t]`` bound what the trees after ``t`` in its
    stage can still add: ``+inf``/``-inf`` (never conclusive) when sums are not
    exact, so only the full sum decides, as in OpenCV.

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
        lo, hi = lo[order], hi[order]
        self.tree_rmax = np.zeros(cascade.n_trees)
        self.tree_rmin = np.zeros(cascade.n_trees)
        for s in range(cascade.n_stages):
            t0, t1 = stage_start[s], stage_start[s + 1]
            if self.exact_sums:
                # Exact by the same argument as the sums themselves.
                self.tree_rmax[t0:t1] = np.append(np.cumsum(hi[t0:t1][::-1])[::-1][1:], 0.0)
                self.tree_rmin[t0:t1] = np.append(np.cumsum(lo[t0:t1][::-1])[::-1][1:], 0.0)
            else:
                self.tree_rmax[t0:t1 - 1] = np.inf
                self.tree_rmin[t0:t1 - 1] = -np.inf
        n_nodes = int(n_per_tree.max())
        # Trees deeper than the tables are walked node by node, and then the
        # stage-major scan (which needs every tree tabled) is off.
        self.row_stages = n_nodes <= MAX_TABLE_NODES
        self.tree_table = _leaf_tables(n_per_tree, self.tree_leaf_start, self.leaves,
                                       self.node_left, self.node_right,
                                       min(n_nodes, MAX_TABLE_NODES))
        self.dense_density = DENSE_DENSITY if dense_density is None else float(dense_density)

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
        rec = np.empty((self.node_feature.size, RECORD), np.int32)
        rec[:, :12] = feature_offsets(self._features, stride, tilted_channel)[self.node_feature]
        floats = rec.view(np.float32)
        floats[:, _W0:_W2 + 1] = self._features.weights[self.node_feature]
        floats[:, _THR] = self.node_threshold
        return rec, norm


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


# --------------------------------------------------------------------- kernels
# Indices are cast to unsigned where they are known non-negative: that spares
# numba's negative-index wraparound test on every load.

@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _at(base, x, step):
    # Buffer position of column x. ``step`` is None for unit steps: numba then
    # compiles a separate version whose loops read contiguous memory.
    if step is None:
        return base + np.int64(x)
    return base + np.int64(x) * step


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _rect(buf, p, a, b, c, d):
    # int32 loads, exact modular difference, back to int32 like C int arithmetic.
    return np.int32(
        np.int64(buf[np.uint64(p + a)]) - buf[np.uint64(p + b)] - buf[np.uint64(p + c)]
        + buf[np.uint64(p + d)]
    )


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _node_value(buf, p, rec, recf, k):
    # Always three rectangles: an unused one has weight 0 and all-zero offsets, so
    # it adds exactly +0.0 -- cheaper than a badly predicted branch.
    k = np.uint64(k)
    v = recf[k, _W0] * np.float32(_rect(buf, p, rec[k, 0], rec[k, 1], rec[k, 2], rec[k, 3]))
    v = v + recf[k, _W1] * np.float32(_rect(buf, p, rec[k, 4], rec[k, 5], rec[k, 6], rec[k, 7]))
    return v + recf[k, _W2] * np.float32(
        _rect(buf, p, rec[k, 8], rec[k, 9], rec[k, 10], rec[k, 11]))


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _row_factors(buf, base, step, n, sq_ofs, norm, area, fac, ok):
    """OpenCV's ``setWindow`` for ``n`` windows of a row: float32 1/(area*std), accepted?"""
    n0, n1, n2, n3 = norm[0], norm[1], norm[2], norm[3]
    q0, q1, q2, q3 = n0 + sq_ofs, n1 + sq_ofs, n2 + sq_ofs, n3 + sq_ofs
    for j in range(n):
        p = _at(base, j, step)
        s = np.float64(_rect(buf, p, n0, n1, n2, n3))
        sq = np.float64(np.uint32(_rect(buf, p, q0, q1, q2, q3)))
        nf = area * sq - s * s
        pos = nf > 0.0
        f = np.float32(1.0 / np.sqrt(nf if pos else 1.0))
        f = f if pos else np.float32(1.0)
        fac[j] = f
        ok[j] = pos & (area * np.float64(f) < 1e-1)


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _record(rec, recf, k):
    # One node's fields as scalars, so span loops keep them in registers.
    k = np.uint64(k)
    ofs = (rec[k, 0], rec[k, 1], rec[k, 2], rec[k, 3], rec[k, 4], rec[k, 5],
           rec[k, 6], rec[k, 7], rec[k, 8], rec[k, 9], rec[k, 10], rec[k, 11])
    return ofs, recf[k, _W0], recf[k, _W1], recf[k, _W2], recf[k, _THR]


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _span_below(buf, base, step, o, w0, w1, w2, thr, fac, x):
    # value < threshold of one node at column x, ``step`` buffer elements apart (x
    # unsigned: no wraparound test, which would keep the span loops from vectorising).
    p = _at(base, x, step)
    v = w0 * np.float32(_rect(buf, p, o[0], o[1], o[2], o[3]))
    v = v + w1 * np.float32(_rect(buf, p, o[4], o[5], o[6], o[7]))
    v = (v + w2 * np.float32(_rect(buf, p, o[8], o[9], o[10], o[11]))) * fac[x]
    return v < thr


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _span_stump(buf, base, step, x0, x1, o, w0, w1, w2, thr, below, above, fac, acc):
    """Add a stump's leaf to ``acc[x]`` for columns ``x0 .. x1`` of a row."""
    for x in range(np.uint64(x0), np.uint64(x1)):
        acc[x] += below if _span_below(buf, base, step, o, w0, w1, w2, thr, fac, x) else above


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _span_node(buf, base, step, x0, x1, o, w0, w1, w2, thr, bit, fac, code):
    """Set bit ``bit`` of ``code[x]`` to a node's ``value < threshold``, columns x0 .. x1."""
    keep = np.uint8(0) if bit == 0 else np.uint8(0xFF)
    one = np.uint8(1 << bit)
    zero = np.uint8(0)
    for x in range(np.uint64(x0), np.uint64(x1)):
        hit = _span_below(buf, base, step, o, w0, w1, w2, thr, fac, x)
        code[x] = (code[x] & keep) | (one if hit else zero)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _dense_stage(buf, base, step, s, spans, n_spans, rec, recf, tree_node_start, tree_table,
                 stage_tree_start, fac, acc, code):
    """Stage ``s``'s sum ``acc[x]`` at every column of the spans ``spans[:n_spans]``.

    Column ``x`` is the window at ``base + x * step``; ``step=None`` means 1 and
    gives contiguous loads, any other step gathers.

    Every node of every tree is evaluated (no early exit: the loops over ``x``
    stay branch-free and vectorise) and a tree's leaf is looked up by its node
    outcomes. The stage's nodes are the outer loop, so each record is read once.
    """
    for si in range(n_spans):
        for x in range(np.uint64(spans[si, 0]), np.uint64(spans[si, 1])):
            acc[x] = 0.0
    for t in range(stage_tree_start[s], stage_tree_start[s + 1]):
        k0 = tree_node_start[t]
        nk = tree_node_start[t + 1] - k0
        tu = np.uint64(t)
        if nk == 1:
            o, w0, w1, w2, thr = _record(rec, recf, k0)
            below = tree_table[tu, 1]
            above = tree_table[tu, 0]
            for si in range(n_spans):
                _span_stump(buf, base, step, spans[si, 0], spans[si, 1], o, w0, w1, w2, thr,
                            below, above, fac, acc)
        else:
            for b in range(nk):
                o, w0, w1, w2, thr = _record(rec, recf, k0 + b)
                for si in range(n_spans):
                    _span_node(buf, base, step, spans[si, 0], spans[si, 1], o, w0, w1, w2,
                               thr, b, fac, code)
            for si in range(n_spans):
                for x in range(np.uint64(spans[si, 0]), np.uint64(spans[si, 1])):
                    acc[x] += tree_table[tu, np.uint64(code[x])]


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _tree_leaf(buf, p, fac, t, rec, recf, tree_node_start, tree_table, node_left, node_right,
               tree_leaf_start, leaves):
    """(leaf value, features evaluated) of tree ``t`` on the window at ``p``."""
    k0 = tree_node_start[t]
    nk = tree_node_start[t + 1] - k0
    tu = np.uint64(t)
    if nk == 1:
        hit = _node_value(buf, p, rec, recf, k0) * fac < recf[np.uint64(k0), _THR]
        return tree_table[tu, 1] if hit else tree_table[tu, 0], 1
    if nk <= MAX_TABLE_NODES:
        # All nodes, no data-dependent branch: the outcome bits index the leaf.
        # Built last node first, so the loop is a plain recurrence.
        code = 0
        for b in range(nk - 1, -1, -1):
            k = k0 + b
            v = _node_value(buf, p, rec, recf, k) * fac
            code = 2 * code + np.int64(v < recf[np.uint64(k), _THR])
        return tree_table[tu, np.uint64(code)], nk
    idx = 0
    n_feat = 0
    while True:
        k = k0 + idx
        n_feat += 1
        v = _node_value(buf, p, rec, recf, k) * fac
        idx = node_left[k] if v < recf[np.uint64(k), _THR] else node_right[k]
        if idx <= 0:
            break
    return leaves[tree_leaf_start[t] - idx], n_feat


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _window_stages(buf, p, fac, first, last, rec, recf, tree_node_start, tree_table,
                   node_left, node_right, tree_leaf_start, leaves, stage_tree_start,
                   stage_threshold, tree_rmax, tree_rmin, counter):
    """Run stages ``first .. last - 1`` on the window at ``p``: the failed stage, or ``last``.

    A stage stops as soon as its partial sum plus the most (least) the remaining
    trees can add falls below (reaches) its threshold. Adds the features
    evaluated to ``counter[0]``.
    """
    n_feat = 0
    for s in range(first, last):
        thr = stage_threshold[s]
        total = 0.0
        passed = False
        for t in range(stage_tree_start[s], stage_tree_start[s + 1]):
            leaf, nf = _tree_leaf(buf, p, fac, t, rec, recf, tree_node_start, tree_table,
                                  node_left, node_right, tree_leaf_start, leaves)
            total += leaf
            n_feat += nf
            tu = np.uint64(t)
            if total + tree_rmax[tu] < thr:
                break
            if total + tree_rmin[tu] >= thr:
                passed = True
                break
        if not passed:
            counter[0] += n_feat
            return s
    counter[0] += n_feat
    return last


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _scan_row(buf, base, step, n_cols, every, sq_ofs, norm, area, rec, recf, tree_node_start,
              tree_table, node_left, node_right, tree_leaf_start, leaves, stage_tree_start,
              stage_threshold, tree_rmax, tree_rmin, table, dense_density, fac, ok, live, acc,
              code, spans, counter, hits):
    """Scan one row: windows at columns ``0, every, 2 every, ..`` below ``n_cols``.

    Column ``c`` is buffer position ``base + c * step`` (``None``: 1). Accepted
    columns go to ``hits`` in increasing order; returns (accepted, windows scanned).
    """
    n_stages = stage_threshold.size
    _row_factors(buf, base, step, n_cols, sq_ofs, norm, area, fac, ok)
    if table:
        # Block by block, so that the rows a block's features read stay in L1
        # while all of the stage's nodes pass over them.
        for b0 in range(0, n_cols, BLOCK):
            spans[0, 0] = b0
            spans[0, 1] = min(b0 + BLOCK, n_cols)
            _dense_stage(buf, base, step, 0, spans, 1, rec, recf, tree_node_start,
                         tree_table, stage_tree_start, fac, acc, code)
        counter[0] += n_cols * tree_node_start[stage_tree_start[1]]
    # OpenCV's order: a window rejected by stage 0 hides the next one.
    for x in range(n_cols):
        live[x] = False
    n_win = 0
    n_live = 0
    x = 0
    while x < n_cols:
        n_win += 1
        if ok[x]:
            if table:
                passed = acc[x] >= stage_threshold[0]
            else:
                passed = _window_stages(buf, _at(base, x, step), fac[x], 0, 1, rec, recf,
                                        tree_node_start, tree_table, node_left, node_right,
                                        tree_leaf_start, leaves, stage_tree_start,
                                        stage_threshold, tree_rmax, tree_rmin, counter) == 1
            if passed:
                live[x] = True
                n_live += 1
            else:
                x += every
        x += every
    s = 1
    while table and s < n_stages and n_live > 0:
        n_spans = 0
        for c0 in range(0, n_cols, CHUNK):
            c1 = min(c0 + CHUNK, n_cols)
            any_live = False
            for x in range(c0, c1):
                any_live |= live[x]
            if any_live:
                if n_spans > 0 and spans[n_spans - 1, 1] == c0:
                    spans[n_spans - 1, 1] = c1
                else:
                    spans[n_spans, 0] = c0
                    spans[n_spans, 1] = c1
                    n_spans += 1
        n_span_cols = 0
        for si in range(n_spans):
            n_span_cols += spans[si, 1] - spans[si, 0]
        if n_live < dense_density * n_span_cols:
            break
        _dense_stage(buf, base, step, s, spans, n_spans, rec, recf, tree_node_start,
                     tree_table, stage_tree_start, fac, acc, code)
        counter[0] += n_span_cols * (tree_node_start[stage_tree_start[s + 1]]
                                     - tree_node_start[stage_tree_start[s]])
        thr = stage_threshold[s]
        n_live = 0
        for si in range(n_spans):
            for x in range(np.uint64(spans[si, 0]), np.uint64(spans[si, 1])):
                keep = live[x] & (acc[x] >= thr)
                live[x] = keep
                n_live += keep
        s += 1
    n_hit = 0
    if n_live > 0:
        for x in range(n_cols):
            if live[x]:
                if s == n_stages or _window_stages(
                        buf, _at(base, x, step), fac[x], s, n_stages, rec, recf,
                        tree_node_start, tree_table, node_left, node_right, tree_leaf_start,
                        leaves, stage_tree_start, stage_threshold, tree_rmax, tree_rmin,
                        counter) == n_stages:
                    hits[n_hit] = x
                    n_hit += 1
    return n_hit, n_win


@nb.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def scan_rows(buf, sq_ofs, item_base, item_cols, item_step, item_every, item_set, norm, area,
              rec, recf, tree_node_start, tree_table, node_left, node_right, tree_leaf_start,
              leaves, stage_tree_start, stage_threshold, tree_rmax, tree_rmin, row_stages,
              dense_density, nthreads, hit_x, hit_count, stats):
    """Scan rows of windows (OpenCV's invoker loop, stage-major per row).

    Row ``i`` holds ``item_cols[i]`` columns at buffer positions
    ``item_base[i] + c * item_step[i]``, with a window at every
    ``item_every[i]``-th column; it uses node records ``rec[item_set[i]]``, the
    variance rectangle ``norm[item_set[i]]`` of area ``area[item_set[i]]`` and
    the stage-major threshold ``dense_density[item_set[i]]`` (below). The
    accepted columns go to ``hit_x[i, :hit_count[i]]`` in increasing order;
    ``stats[i] = (windows scanned, features evaluated)``.

    Per row: the variance factor and stage 0 for every column (vectorised); then
    OpenCV's skip rule in order; then further stages stage-major over the chunks
    of ``CHUNK`` columns that hold a live window, for as long as at least
    ``dense_density`` of those columns are live; the rest window by window
    (:func:`_window_stages`). Without ``row_stages`` (trees too deep for tables)
    every stage runs window by window. Rows are dealt to ``nthreads`` threads
    round-robin so that every thread gets big and small levels alike (numba's
    dynamic scheduling costs more than it balances here).
    """
    n_items = item_base.size
    max_n = 1
    for i in range(n_items):
        max_n = max(max_n, item_cols[i])
    max_chunks = (max_n + CHUNK - 1) // CHUNK
    for th in nb.prange(nthreads):
        counter = np.zeros(1, np.int64)
        fac = np.empty(max_n, np.float32)
        ok = np.empty(max_n, np.bool_)
        live = np.zeros(max_n, np.bool_)
        acc = np.empty(max_n, np.float64)
        code = np.empty(max_n, np.uint8)
        spans = np.empty((max_chunks, 2), np.int64)
        for i in range(th, n_items, nthreads):
            st = item_set[i]
            counter[0] = 0
            if item_step[i] == 1:
                # None rather than 1: a version of the row scan for unit steps, whose
                # loops become contiguous SIMD loads.
                n_hit, n_win = _scan_row(
                    buf, item_base[i], None, item_cols[i], item_every[i], sq_ofs, norm[st],
                    area[st], rec[st], recf[st], tree_node_start, tree_table, node_left,
                    node_right, tree_leaf_start, leaves, stage_tree_start, stage_threshold,
                    tree_rmax, tree_rmin, row_stages, dense_density[st], fac, ok, live, acc, code,
                    spans, counter, hit_x[i])
            else:
                n_hit, n_win = _scan_row(
                    buf, item_base[i], item_step[i], item_cols[i], item_every[i], sq_ofs,
                    norm[st], area[st], rec[st], recf[st], tree_node_start, tree_table,
                    node_left, node_right, tree_leaf_start, leaves, stage_tree_start,
                    stage_threshold, tree_rmax, tree_rmin, row_stages, dense_density[st], fac, ok,
                    live, acc, code, spans, counter, hit_x[i])
            hit_count[i] = n_hit
            stats[i, 0] = n_win
            stats[i, 1] = counter[0]


@nb.njit(cache=True, nogil=True)
def collect_hits(hit_x, hit_count):
    """Flatten the per-row hits of :func:`scan_levels`: (row index, column) pairs."""
    total = 0
    for i in range(hit_count.size):
        total += hit_count[i]
    rows = np.empty(total, np.int64)
    cols = np.empty(total, np.int64)
    m = 0
    for i in range(hit_count.size):
        for c in range(hit_count[i]):
            rows[m] = i
            cols[m] = hit_x[i, c]
            m += 1
    return rows, cols
