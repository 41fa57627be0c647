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

This module scans rows (:func:`scan_rows`); :mod:`vj.scan_stages` evaluates
nodes, trees and stages on windows and spans of a row; :mod:`vj.scan_tables`
builds the arrays both read, which :func:`scan_rows` takes in three bundles
(``ScanRows``, ``RecordSets``, ``CascadeTables``). Numba caches a kernel by its
own file only, so after changing either of those modules delete
``vj/__pycache__/scan.*.nbi`` (or touch this file): the cached :func:`scan_rows`
inlines their code and types.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .scan_stages import dense_stage, row_factors, window_at, window_stages
from .scan_tables import CascadeKernelData, feature_offsets, stage_sums_are_exact

__all__ = ["CascadeKernelData", "collect_hits", "feature_offsets", "scan_rows",
           "stage_sums_are_exact"]

#: Columns per chunk of the stage-major scan (a couple of SIMD vectors).
CHUNK = 16
#: Columns per block of the first stage's row pass (its feature rows stay in L1).
BLOCK = 128


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _live_spans(n_cols, live, spans):
    """Merge the ``CHUNK``-column chunks that hold a live window into ``spans``.

    Returns (spans, columns they cover).
    """
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
    return n_spans, n_span_cols


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _scan_row(buf, base, step, n_cols, every, sq_ofs, norm, area, rec, recf, tree_node_start,
              tree_table, node_left, node_right, tree_leaf_start, leaves, stage_tree_start,
              stage_threshold, tree_rmax, tree_rmin, table, dense_density, fac, ok, live, acc,
              code, spans, counter, hits):
    """Scan one row: windows at columns ``0, every, 2 every, ..`` below ``n_cols``.

    Every array comes on its own: numba counts a reference each time an array
    is taken out of a bundle (a tuple), and a version that passed bundles down
    to the row loops ran 1.7x slower. For the same reason it stays one function,
    a few lines over the usual length: its steps share most of these arrays.

    Parameters
    ----------
    buf : (n,) int32 ndarray
        The packed integral tables.
    base : int
        Buffer position of column 0.
    step : int or None
        Buffer elements between columns; None for 1, which compiles a version
        whose row loops read contiguous memory (see :func:`window_at`).
    n_cols, every : int
        Scan columns, and a window at every ``every``-th one.
    sq_ofs : int
        Where the squared sums start in ``buf``.
    norm : (4,) int64 ndarray
        Corner offsets of the variance window.
    area : float
        Its area.
    rec, recf : (M, 16) int32 and float32 ndarray
        The node records (one memory, two views).
    tree_node_start, tree_table, node_left, node_right, tree_leaf_start : ndarray
    leaves, stage_tree_start, stage_threshold, tree_rmax, tree_rmin : ndarray
        The cascade, as in :class:`vj.scan_tables.CascadeTables`.
    table : bool
        Every tree is tabled (``CascadeTables.row_stages``): stages may run
        stage-major over the row.
    dense_density : float
        Fraction of live windows in the live chunks above which a stage still
        runs stage-major.
    fac, ok, live, acc, code : (N,) ndarray
        Scratch, ``N >= n_cols``: float32 variance factors, bool variance test
        passed, bool window live, float64 stage sums, uint8 node outcomes.
    spans : (K, 2) int64 ndarray
        Scratch for the live chunks' column ranges, ``K >= n_cols / CHUNK``.
    counter : (1,) int64 ndarray
        The features evaluated are added to ``counter[0]``.
    hits : (N,) int32 ndarray, out
        The accepted columns, in increasing order.

    Returns
    -------
    (accepted windows, windows scanned)
    """
    n_stages = stage_threshold.size
    row_factors(buf, base, step, n_cols, sq_ofs, norm, area, fac, ok)
    if table:
        # Block by block, so that the rows a block's features read stay in L1
        # while all of the stage's nodes pass over them.
        for b0 in range(0, n_cols, BLOCK):
            spans[0, 0] = b0
            spans[0, 1] = min(b0 + BLOCK, n_cols)
            dense_stage(buf, base, step, 0, spans, 1, rec, recf, tree_node_start,
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
                passed = window_stages(buf, window_at(base, x, step), fac[x], 0, 1, rec, recf,
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
        n_spans, n_span_cols = _live_spans(n_cols, live, spans)
        if n_live < dense_density * n_span_cols:
            break
        dense_stage(buf, base, step, s, spans, n_spans, rec, recf, tree_node_start,
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
                if s == n_stages or window_stages(
                        buf, window_at(base, x, step), fac[x], s, n_stages, rec, recf,
                        tree_node_start, tree_table, node_left, node_right, tree_leaf_start,
                        leaves, stage_tree_start, stage_threshold, tree_rmax, tree_rmin,
                        counter) == n_stages:
                    hits[n_hit] = x
                    n_hit += 1
    return n_hit, n_win


@nb.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def scan_rows(buf, sq_ofs, rows, sets, tables, nthreads, hit_x, hit_count, stats):
    """Scan rows of windows (OpenCV's invoker loop, stage-major per row).

    Parameters
    ----------
    buf : (n,) int32 ndarray
        The packed integral tables (see :mod:`vj.pyramid`).
    sq_ofs : int
        Where the squared sums start in ``buf``.
    rows : ScanRows
        The rows: row ``i`` holds ``rows.cols[i]`` columns at buffer positions
        ``rows.base[i] + c * rows.step[i]``, with a window at every
        ``rows.every[i]``-th column, and uses record set ``rows.record_set[i]``.
    sets : RecordSets
        Node records, variance window and stage-major threshold of each set.
    tables : CascadeTables
        The cascade in kernel order (:attr:`CascadeKernelData.tables`).
    nthreads : int
        Threads to deal the rows to.
    hit_x : (N, max columns) int32 ndarray, out
        Row ``i``'s accepted columns go to ``hit_x[i, :hit_count[i]]``, in
        increasing order.
    hit_count : (N,) int64 ndarray, out
    stats : (N, 2) int64 ndarray, out
        ``stats[i] = (windows scanned, features evaluated)``.

    Notes
    -----
    Per row: the variance factor and stage 0 for every column (vectorised); then
    OpenCV's skip rule in order; then further stages stage-major over the chunks
    of ``CHUNK`` columns that hold a live window, for as long as at least
    ``dense_density`` of those columns are live; the rest window by window
    (:func:`vj.scan_stages.window_stages`). Without ``tables.row_stages`` (trees
    too deep for tables) every stage runs window by window. Rows are dealt to
    ``nthreads`` threads round-robin so that every thread gets big and small
    levels alike (numba's dynamic scheduling costs more than it balances here).
    """
    # Unbundled once, here (see _scan_row). The row loop stays in the prange
    # body: moved into a function of its own it ran 2.5x slower.
    item_base, item_cols, item_step, item_every, item_set = rows
    rec, recf, norm, area, dense_density = sets
    (tree_node_start, tree_table, node_left, node_right, tree_leaf_start, leaves,
     stage_tree_start, stage_threshold, tree_rmax, tree_rmin, row_stages) = tables

    # The one call of the row scan. Numba inlines this closure where it is
    # called, so each call below gets its own type of ``step``.
    def scan_row(i, step, fac, ok, live, acc, code, spans, counter):
        st = item_set[i]
        return _scan_row(
            buf, item_base[i], step, item_cols[i], item_every[i], sq_ofs, norm[st], area[st],
            rec[st], recf[st], tree_node_start, tree_table, node_left, node_right,
            tree_leaf_start, leaves, stage_tree_start, stage_threshold, tree_rmax, tree_rmin,
            row_stages, dense_density[st], fac, ok, live, acc, code, spans, counter, hit_x[i])

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
            counter[0] = 0
            if item_step[i] == 1:
                # None rather than 1: a version of the row scan for unit steps,
                # whose loops become contiguous SIMD loads.
                n_hit, n_win = scan_row(i, None, fac, ok, live, acc, code, spans, counter)
            else:
                n_hit, n_win = scan_row(i, item_step[i], fac, ok, live, acc, code, spans,
                                        counter)
            hit_count[i] = n_hit
            stats[i, 0] = n_win
            stats[i, 1] = counter[0]


@nb.njit(cache=True, nogil=True)
def collect_hits(hit_x, hit_count):
    """Flatten the per-row hits of :func:`scan_rows`: (row index, column) pairs."""
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
