"""Numba kernels that evaluate a cascade's nodes, trees and stages on windows.

The windows live in the packed integral tables (see :mod:`vj.scan`, which runs
these kernels row by row); a node is one 64-byte record of
:meth:`vj.scan_tables.CascadeKernelData.records`. Two shapes of evaluation, both
bit for bit OpenCV's arithmetic:

* :func:`window_stages` runs stages on one window, tree by tree, and stops a
  stage as soon as its verdict is certain;
* :func:`dense_stage` runs one stage on spans of a row's columns, node-major
  and branch-free (a tree's node outcomes index its leaf table), so that the
  loops over columns vectorise.

:func:`row_factors` is OpenCV's variance normalisation of a row's windows.

Numba caches a kernel by its own file: :func:`vj.scan.scan_rows` inlines these,
so after changing this module delete ``vj/__pycache__/scan.*.nbi`` (or touch
``vj/scan.py``), or the cached ``scan_rows`` keeps the old code.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .scan_tables import MAX_TABLE_NODES, THR, W0, W1, W2

__all__ = ["dense_stage", "row_factors", "window_at", "window_stages"]

# Indices are cast to unsigned where they are known non-negative: that spares
# numba's negative-index wraparound test on every load.

@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def window_at(base, x, step):
    """Buffer position of the window at column ``x`` of a row starting at ``base``.

    ``step`` is None for unit steps: numba then compiles a separate version of
    every kernel taking it, whose loops read contiguous memory.
    """
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
    v = recf[k, W0] * np.float32(_rect(buf, p, rec[k, 0], rec[k, 1], rec[k, 2], rec[k, 3]))
    v = v + recf[k, W1] * np.float32(_rect(buf, p, rec[k, 4], rec[k, 5], rec[k, 6], rec[k, 7]))
    return v + recf[k, W2] * np.float32(
        _rect(buf, p, rec[k, 8], rec[k, 9], rec[k, 10], rec[k, 11]))


@nb.njit(cache=True, nogil=True, error_model="numpy")
def row_factors(buf, base, step, n, sq_ofs, norm, area, fac, ok):
    """OpenCV's ``setWindow`` for ``n`` windows of a row: float32 1/(area*std), accepted?"""
    n0, n1, n2, n3 = norm[0], norm[1], norm[2], norm[3]
    q0, q1, q2, q3 = n0 + sq_ofs, n1 + sq_ofs, n2 + sq_ofs, n3 + sq_ofs
    for j in range(n):
        p = window_at(base, j, step)
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
    return ofs, recf[k, W0], recf[k, W1], recf[k, W2], recf[k, THR]


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _span_below(buf, base, step, o, w0, w1, w2, thr, fac, x):
    # value < threshold of one node at column x, ``step`` buffer elements apart (x
    # unsigned: no wraparound test, which would keep the span loops from vectorising).
    p = window_at(base, x, step)
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
def dense_stage(buf, base, step, s, spans, n_spans, rec, recf, tree_node_start, tree_table,
                stage_tree_start, fac, acc, code):
    """Stage ``s``'s sum ``acc[x]`` at every column of the spans ``spans[:n_spans]``.

    Every node of every tree is evaluated (no early exit: the loops over ``x``
    stay branch-free and vectorise) and a tree's leaf is looked up by its node
    outcomes. The stage's nodes are the outer loop, so each record is read once.

    Parameters
    ----------
    buf : (n,) int32 ndarray
        The packed integral tables.
    base, step : int, int or None
        Column ``x`` is the window at ``base + x * step``; ``step=None`` means 1
        and gives contiguous loads, any other step gathers.
    s : int
        The stage.
    spans : (K, 2) int64 ndarray
        Column ranges ``[x0, x1)``; the first ``n_spans`` are evaluated.
    n_spans : int
    rec, recf : (M, 16) int32 and float32 ndarray
        The node records (one memory, two views).
    tree_node_start, tree_table, stage_tree_start : ndarray
        As in :class:`vj.scan_tables.CascadeTables`; every tree of stage ``s``
        must be tabled.
    fac : (N,) float32 ndarray
        Each column's variance factor.
    acc : (N,) float64 ndarray, out
        The stage sums.
    code : (N,) uint8 ndarray
        Scratch: a tree's node outcomes per column.
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
    """(leaf value, features evaluated) of tree ``t`` on the window at ``p``.

    The parameters are those of :func:`window_stages`.
    """
    k0 = tree_node_start[t]
    nk = tree_node_start[t + 1] - k0
    tu = np.uint64(t)
    if nk == 1:
        hit = _node_value(buf, p, rec, recf, k0) * fac < recf[np.uint64(k0), THR]
        return tree_table[tu, 1] if hit else tree_table[tu, 0], 1
    if nk <= MAX_TABLE_NODES:
        # All nodes, no data-dependent branch: the outcome bits index the leaf.
        # Built last node first, so the loop is a plain recurrence.
        code = 0
        for b in range(nk - 1, -1, -1):
            k = k0 + b
            v = _node_value(buf, p, rec, recf, k) * fac
            code = 2 * code + np.int64(v < recf[np.uint64(k), THR])
        return tree_table[tu, np.uint64(code)], nk
    idx = 0
    n_feat = 0
    while True:
        k = k0 + idx
        n_feat += 1
        v = _node_value(buf, p, rec, recf, k) * fac
        idx = node_left[k] if v < recf[np.uint64(k), THR] else node_right[k]
        if idx <= 0:
            break
    return leaves[tree_leaf_start[t] - idx], n_feat


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def window_stages(buf, p, fac, first, last, rec, recf, tree_node_start, tree_table,
                  node_left, node_right, tree_leaf_start, leaves, stage_tree_start,
                  stage_threshold, tree_rmax, tree_rmin, counter):
    """Run stages ``first .. last - 1`` on the window at ``p``: the failed stage, or ``last``.

    A stage stops as soon as its partial sum plus the most (least) the remaining
    trees can add falls below (reaches) its threshold.

    Parameters
    ----------
    buf : (n,) int32 ndarray
        The packed integral tables.
    p : int
        Buffer position of the window (see :func:`window_at`).
    fac : float32
        The window's variance factor.
    first, last : int
        The stages to run.
    rec, recf : (M, 16) int32 and float32 ndarray
        The node records (one memory, two views).
    tree_node_start, tree_table, node_left, node_right, tree_leaf_start : ndarray
    leaves, stage_tree_start, stage_threshold, tree_rmax, tree_rmin : ndarray
        The cascade, as in :class:`vj.scan_tables.CascadeTables`.
    counter : (1,) int64 ndarray
        The features evaluated are added to ``counter[0]``.
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
