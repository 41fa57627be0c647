"""Stage margins of the windows a scan accepted: how far each cleared its last stages.

The scan (:mod:`vj.scan`) stops a stage as soon as its verdict is certain, so the
windows it accepts carry no sum. For the few it accepts (hundreds out of hundreds of
thousands) :func:`hit_margins` evaluates the chosen stages again in full, from the same
packed integral tables and with the same arithmetic, and returns ``stage sum -
threshold`` of each: OpenCV's ``levelWeights`` (``detectMultiScale3``) is the last
stage's sum. :meth:`vj.CascadeDetector.detect` scores a detection by the best of its
windows' summed margins in the last stages (:func:`vj.grouping.group_max`) rather than
by its neighbour count.

Like :mod:`vj.scan`, this module inlines :mod:`vj.scan_stages`: after changing that
module delete ``vj/__pycache__/scan_margins.*.nbi``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .scan_stages import _tree_leaf, row_factors

__all__ = ["hit_margins"]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def hit_margins(buf, sq_ofs, rows, sets, tables, items, cols, first, out):
    """Margins of stages ``first ..`` on the hits of a scan.

    Parameters
    ----------
    buf : (n,) int32 ndarray
        The packed integral tables the scan ran on.
    sq_ofs : int
        Where the squared sums start in ``buf``.
    rows, sets, tables : ScanRows, RecordSets, CascadeTables
        As passed to :func:`vj.scan.scan_rows`.
    items, cols : (N,) int64 ndarray
        The hits: row index and column (:func:`vj.scan.collect_hits`).
    first : int
        First stage to evaluate; stages ``first .. S - 1`` are.
    out : (N, S - first) float64 ndarray, out
        ``out[m, s - first]``: stage ``s``'s full sum on hit ``m`` minus the stage's
        threshold (``>= 0`` for a window that passed it).
    """
    item_base, _, item_step, _, item_set = rows
    rec, recf, norm, area, _ = sets
    (tree_node_start, tree_table, node_left, node_right, tree_leaf_start, leaves,
     stage_tree_start, stage_threshold, _, _, _) = tables
    n_stages = stage_threshold.size
    fac = np.empty(1, np.float32)
    ok = np.empty(1, np.bool_)
    for m in range(items.size):
        i = items[m]
        st = item_set[i]
        p = item_base[i] + cols[m] * item_step[i]
        row_factors(buf, p, None, 1, sq_ofs, norm[st], area[st], fac, ok)
        for s in range(first, n_stages):
            total = 0.0
            for t in range(stage_tree_start[s], stage_tree_start[s + 1]):
                leaf, _ = _tree_leaf(buf, p, fac[0], t, rec[st], recf[st], tree_node_start,
                                     tree_table, node_left, node_right, tree_leaf_start, leaves)
                total += leaf
            out[m, s - first] = total - stage_threshold[s]
