"""Weak learners: decision stumps and small trees on quantised feature values.

The search for the best split scans *every* feature on every (untrimmed)
sample each boosting round, so it is the trainer's hot loop. Per feature it
builds a 256-bin histogram of the sample weights ``w`` and of ``w * y`` from the
feature's bins (:mod:`vj.feature_bins`), then tries every split between bins
from prefix and suffix sums: ``O(N + B)`` per feature instead of the
``O(N log N)`` of sorting, and the features are spread over threads.

Two split criteria:

``"squared"`` (Gentle AdaBoost)
    weighted least squares of a regression stump; leaves are weighted means of
    ``y``. Minimising the error is maximising ``S_L**2 / W_L + S_R**2 / W_R``.
``"misclass"`` (Discrete AdaBoost)
    weighted misclassification of the better polarity.

A :class:`Tree` stores its nodes in the cascade's (OpenCV's) convention, with
thresholds that are bin edges, i.e. float32 feature values, so the tree the
trainer scores is bit-for-bit the tree the detector evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from .feature_bins import FeatureBins

__all__ = ["LOSSES", "Tree", "best_splits", "best_split", "fit_tree", "apply_tree_bins"]

LOSSES = ("squared", "misclass")

_BLOCK = 32  # features per parallel task: amortises the histogram allocation
_GROUP = 4  # features sharing one pass over the samples (fixed by the kernel)


@nb.njit(cache=True, nogil=True)
def _scan_histogram(pos, neg, suffix, misclass):
    """Best split of one feature from its class histograms ``pos[b]``, ``neg[b]`` (weights).

    Returns ``(score, k)``: the split sends bins ``< k`` left; lower score is
    better; ``k == 0`` (score inf) when no split leaves weight on both sides.
    Right-hand sums are accumulated from the right, so an empty side is exactly 0.
    """
    n_bins = pos.shape[0]
    pr = 0.0
    nr = 0.0
    for b in range(n_bins - 1, -1, -1):
        pr += pos[b]
        nr += neg[b]
        suffix[b, 0] = pr
        suffix[b, 1] = nr
    best = np.inf
    best_k = 0
    pl = 0.0
    nl = 0.0
    for k in range(1, n_bins):
        pl += pos[k - 1]
        nl += neg[k - 1]
        pr = suffix[k, 0]
        nr = suffix[k, 1]
        wl = pl + nl
        wr = pr + nr
        if wl <= 0.0 or wr <= 0.0:
            continue
        if misclass:
            # The better polarity: "left negative, right positive" or the opposite.
            score = min(pl + nr, nl + pr)
        else:
            sl = pl - nl
            sr = pr - nr
            score = -(sl * sl / wl + sr * sr / wr)
        if score < best:
            best = score
            best_k = k
    return best, best_k


@nb.njit(cache=True, nogil=True, parallel=True)
def _best_splits(bins, rows_pos, w_pos, rows_neg, w_neg, n_bins, misclass, score_out, split_out):
    """Best split of every feature on the given positive and negative samples.

    Four features share one pass over the samples (their weights are loaded
    once), and splitting the samples by class makes every update a single add.
    """
    n_feat = bins.shape[0]
    n_blocks = (n_feat + _BLOCK - 1) // _BLOCK
    for blk in nb.prange(n_blocks):
        hist = np.empty((2, _GROUP, n_bins), np.float64)
        suffix = np.empty((n_bins, 2), np.float64)
        f_end = min(n_feat, (blk + 1) * _BLOCK)
        for f0 in range(blk * _BLOCK, f_end, _GROUP):
            hist[:] = 0.0
            # A short last group repeats the last feature; its extra results are dropped.
            r0 = bins[f0]
            r1 = bins[min(f0 + 1, f_end - 1)]
            r2 = bins[min(f0 + 2, f_end - 1)]
            r3 = bins[min(f0 + 3, f_end - 1)]
            for c in range(2):
                rows = rows_pos if c == 0 else rows_neg
                w = w_pos if c == 0 else w_neg
                h = hist[c]
                for i in range(rows.shape[0]):
                    n = rows[i]
                    a = w[i]
                    h[0, r0[n]] += a
                    h[1, r1[n]] += a
                    h[2, r2[n]] += a
                    h[3, r3[n]] += a
            for q in range(min(_GROUP, f_end - f0)):
                score, k = _scan_histogram(hist[0, q], hist[1, q], suffix, misclass)
                score_out[f0 + q] = score
                split_out[f0 + q] = k


def _check_loss(loss: str) -> bool:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
    return loss == "misclass"


def best_splits(
    fb: FeatureBins, weights: np.ndarray, y: np.ndarray, rows: np.ndarray, loss: str = "squared"
) -> tuple[np.ndarray, np.ndarray]:
    """Best split of every feature on the samples ``rows``.

    Parameters
    ----------
    fb : FeatureBins
    weights : (N,) float64 ndarray
        Non-negative sample weights.
    y : (N,) ndarray
        Labels -1 / +1.
    rows : (M,) int ndarray
        The samples to fit (e.g. those left after weight trimming).
    loss : {"squared", "misclass"}

    Returns
    -------
    score : (F,) float64 ndarray
        Lower is better; inf for features with no usable split.
    split : (F,) int32 ndarray
        Bin ``k`` of each feature's best split (``bin < k`` goes left).
    """
    misclass = _check_loss(loss)
    rows = np.asarray(rows, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    positive = np.asarray(y)[rows] > 0
    rows_pos = np.ascontiguousarray(rows[positive])
    rows_neg = np.ascontiguousarray(rows[~positive])
    score = np.empty(fb.n_features, np.float64)
    split = np.empty(fb.n_features, np.int32)
    _best_splits(fb.bins, rows_pos, weights[rows_pos], rows_neg, weights[rows_neg],
                 fb.n_bins, misclass, score, split)
    return score, split


def best_split(
    fb: FeatureBins, weights: np.ndarray, y: np.ndarray, rows: np.ndarray, loss: str = "squared"
) -> tuple[int, int, float]:
    """The single best ``(feature row, split bin, score)`` over all features.

    Ties go to the lowest feature row, then the lowest split bin.
    """
    score, split = best_splits(fb, weights, y, rows, loss)
    f = int(np.argmin(score))
    return f, int(split[f]), float(score[f])


@dataclass(frozen=True)
class Tree:
    """A small decision tree in the cascade's node convention.

    Node ``j`` sends a sample left when ``value(feature_row[j]) < threshold[j]``
    (equivalently ``bin < split_bin[j]``); children ``> 0`` are nodes, ``<= 0``
    are leaves ``-child``. Node 0 is the root.
    """

    feature_row: np.ndarray  # (K,) int64, rows of the FeatureBins it was fitted on
    split_bin: np.ndarray  # (K,) int32
    threshold: np.ndarray  # (K,) float32
    left: np.ndarray  # (K,) int32
    right: np.ndarray  # (K,) int32
    leaves: np.ndarray  # (K + 1,) float32

    @property
    def n_nodes(self) -> int:
        return int(self.feature_row.size)

    def with_leaves(self, leaves: np.ndarray) -> Tree:
        """The same splits with other leaf values (e.g. scaled by AdaBoost's alpha)."""
        return Tree(self.feature_row, self.split_bin, self.threshold, self.left, self.right,
                    np.asarray(leaves, np.float32))


@nb.njit(cache=True, nogil=True, parallel=True)
def _leaf_index(bins, feature_row, split_bin, left, right, out):
    """Leaf reached by every sample."""
    for n in nb.prange(bins.shape[1]):
        j = 0
        while True:
            c = left[j] if bins[feature_row[j], n] < split_bin[j] else right[j]
            if c <= 0:
                out[n] = -c
                break
            j = c


def leaf_index(fb: FeatureBins, tree: Tree) -> np.ndarray:
    """(N,) int32 leaf of ``tree`` that each sample of ``fb`` falls in."""
    out = np.empty(fb.n_samples, np.int32)
    _leaf_index(fb.bins, tree.feature_row, tree.split_bin, tree.left, tree.right, out)
    return out


def apply_tree_bins(fb: FeatureBins, tree: Tree) -> np.ndarray:
    """(N,) float32 leaf value of ``tree`` on every sample of ``fb``."""
    return tree.leaves[leaf_index(fb, tree)]


def _leaf_value(w: np.ndarray, s: np.ndarray, misclass: bool) -> float:
    """Gentle: weighted mean of y. Discrete: sign of the weighted vote (alpha comes later)."""
    wsum = float(w.sum())
    ssum = float(s.sum())
    if misclass:
        return 1.0 if ssum >= 0 else -1.0
    return ssum / wsum if wsum > 0 else 0.0


def fit_tree(
    fb: FeatureBins,
    weights: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    *,
    loss: str = "squared",
    max_depth: int = 1,
    min_samples_split: int = 2,
) -> Tree:
    """Grow a tree of depth up to ``max_depth`` greedily (a stump when 1).

    Each node takes the best split of all features on its samples; a node with
    fewer than ``min_samples_split`` samples, or no split with weight on both
    sides, becomes a leaf. The root always splits (the stump that separates
    best, even if barely). Leaf values follow ``loss`` (see :func:`_leaf_value`).

    Returns
    -------
    Tree
    """
    misclass = _check_loss(loss)
    if max_depth < 1:
        raise ValueError(f"max_depth must be >= 1, got {max_depth}")
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if rows.size == 0:
        raise ValueError("no samples to fit a tree on")
    weights = np.asarray(weights, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    feat, split, lefts, rights, leaves = [], [], [], [], []
    # Breadth-first: (sample rows, depth, parent node, is_left_child).
    queue = [(rows, 0, -1, False)]
    while queue:
        r, depth, parent, is_left = queue.pop(0)
        f = k = -1
        if depth < max_depth and (depth == 0 or r.size >= min_samples_split):
            f, k, score = best_split(fb, weights, y, r, loss)
            if not np.isfinite(score):
                f = k = -1
        if f < 0:
            child = -len(leaves)
            leaves.append(_leaf_value(weights[r], weights[r] * y[r], misclass))
        else:
            child = len(feat)
            feat.append(f)
            split.append(k)
            lefts.append(0)
            rights.append(0)
            go_left = fb.bins[f, r] < k
            queue.append((r[go_left], depth + 1, child, True))
            queue.append((r[~go_left], depth + 1, child, False))
        if parent >= 0:
            (lefts if is_left else rights)[parent] = child
    if not feat:
        raise ValueError("no feature separates the samples (all feature values equal?)")
    feature_row = np.asarray(feat, np.int64)
    split_bin = np.asarray(split, np.int32)
    return Tree(
        feature_row=feature_row,
        split_bin=split_bin,
        threshold=fb.edges[feature_row, split_bin - 1].astype(np.float32),
        left=np.asarray(lefts, np.int32),
        right=np.asarray(rights, np.int32),
        leaves=np.asarray(leaves, np.float32),
    )
