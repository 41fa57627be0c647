"""Merging overlapping detections: OpenCV's ``groupRectangles``, reproduced exactly.

Raw detections are partitioned into classes of *similar* rectangles (all four
edges within ``eps * (min width + min height) / 2`` of each other, transitively),
each class is averaged, classes with ``min_neighbors`` or fewer members are
dropped, and so is a class lying inside a bigger, better-supported one.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["group_max", "group_rectangles", "partition_similar"]


@nb.njit(cache=True, nogil=True)
def _similar(rects, i, j, eps):
    # Scalar reads: row slices (rects[i]) cost an array view per pair in the O(N^2) loop.
    ax, ay, aw, ah = rects[i, 0], rects[i, 1], rects[i, 2], rects[i, 3]
    bx, by, bw, bh = rects[j, 0], rects[j, 1], rects[j, 2], rects[j, 3]
    delta = eps * (min(aw, bw) + min(ah, bh)) * 0.5
    return (abs(ax - bx) <= delta and abs(ay - by) <= delta
            and abs(ax + aw - bx - bw) <= delta
            and abs(ay + ah - by - bh) <= delta)


@nb.njit(cache=True, nogil=True)
def partition_similar(rects, eps):
    """Class labels of the connected components of the "similar" relation.

    Classes are numbered in order of their first member (``cv::partition``).
    """
    n = rects.shape[0]
    parent = np.full(n, -1, np.int64)
    rank = np.zeros(n, np.int64)
    for i in range(n):
        root = i
        while parent[root] >= 0:
            root = parent[root]
        for j in range(n):
            if i == j or not _similar(rects, i, j, eps):
                continue
            root2 = j
            while parent[root2] >= 0:
                root2 = parent[root2]
            if root2 != root:
                if rank[root] > rank[root2]:
                    parent[root2] = root
                else:
                    parent[root] = root2
                    if rank[root] == rank[root2]:
                        rank[root2] += 1
                    root = root2
                k = j
                while parent[k] >= 0:
                    nxt = parent[k]
                    parent[k] = root
                    k = nxt
                k = i
                while parent[k] >= 0:
                    nxt = parent[k]
                    parent[k] = root
                    k = nxt
    labels = np.empty(n, np.int64)
    cls_of_root = np.full(n, -1, np.int64)
    nclasses = 0
    for i in range(n):
        root = i
        while parent[root] >= 0:
            root = parent[root]
        if cls_of_root[root] < 0:
            cls_of_root[root] = nclasses
            nclasses += 1
        labels[i] = cls_of_root[root]
    return labels, nclasses


@nb.njit(cache=True, nogil=True)
def _group(rects, threshold, eps):
    labels, nclasses = partition_similar(rects, eps)
    acc = np.zeros((nclasses, 4), np.int64)
    count = np.zeros(nclasses, np.int64)
    for i in range(rects.shape[0]):
        c = labels[i]
        for k in range(4):
            acc[c, k] += rects[i, k]
        count[c] += 1
    avg = np.empty((nclasses, 4), np.int64)
    for c in range(nclasses):
        s = np.float32(1.0) / np.float32(count[c])
        for k in range(4):
            # saturate_cast<int>(int * float) rounds half to even in float32.
            avg[c, k] = np.int64(np.rint(np.float32(acc[c, k]) * s))
    keep = np.zeros(nclasses, np.bool_)
    for i in range(nclasses):
        n1 = count[i]
        if n1 <= threshold:
            continue
        r1 = avg[i]
        inside = False
        for j in range(nclasses):
            n2 = count[j]
            if j == i or n2 <= threshold:
                continue
            r2 = avg[j]
            dx = np.int64(np.rint(r2[2] * eps))
            dy = np.int64(np.rint(r2[3] * eps))
            if (r1[0] >= r2[0] - dx and r1[1] >= r2[1] - dy
                    and r1[0] + r1[2] <= r2[0] + r2[2] + dx
                    and r1[1] + r1[3] <= r2[1] + r2[3] + dy
                    and (n2 > max(3, n1) or n1 < 3)):
                inside = True
                break
        keep[i] = not inside
    # Each rectangle's group among the kept ones (-1: its group was dropped).
    new_index = np.full(nclasses, -1, np.int64)
    k = 0
    for c in range(nclasses):
        if keep[c]:
            new_index[c] = k
            k += 1
    member_of = np.empty(rects.shape[0], np.int64)
    for i in range(rects.shape[0]):
        member_of[i] = new_index[labels[i]]
    return avg[keep], count[keep], member_of


def group_rectangles(
    rects: np.ndarray, min_neighbors: int = 3, eps: float = 0.2, *, return_labels: bool = False
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group raw detections like ``cv2.groupRectangles`` (and ``detectMultiScale``).

    Parameters
    ----------
    rects : (N, 4) int ndarray
        Raw windows ``x, y, w, h``.
    min_neighbors : int
        A group needs more than this many members. ``0`` returns the input
        unchanged, each with weight 1 (as OpenCV does).
    eps : float
        Relative similarity tolerance (OpenCV's detector uses 0.2).
    return_labels : bool, optional
        Also return which group each input rectangle joined, so that callers can
        aggregate their own per-window values (scores, stages) over the same groups.

    Returns
    -------
    boxes : (K, 4) int32 ndarray
        The averaged group rectangles, in order of the groups' first members.
    neighbors : (K,) int32 ndarray
        Members per group (``detectMultiScale2``'s ``numDetections``).
    labels : (N,) int64 ndarray, only if ``return_labels``
        Index into ``boxes`` of each input rectangle's group; -1 where the group was
        dropped (too few members, or inside a better-supported group).
    """
    rects = np.asarray(rects)
    if rects.ndim != 2 or rects.shape[1] != 4:
        raise ValueError(f"rects must have shape (N, 4), got {rects.shape}")
    min_neighbors = int(min_neighbors)
    if min_neighbors < 0:
        raise ValueError(f"min_neighbors must be >= 0, got {min_neighbors}")
    if min_neighbors == 0 or rects.shape[0] == 0:
        out = rects.astype(np.int32), np.ones(rects.shape[0], np.int32)
        return (*out, np.arange(rects.shape[0], dtype=np.int64)) if return_labels else out
    boxes, counts, labels = _group(np.ascontiguousarray(rects, np.int64), min_neighbors,
                                   float(eps))
    out = boxes.astype(np.int32), counts.astype(np.int32)
    return (*out, labels) if return_labels else out


def group_max(labels: np.ndarray, n_groups: int, values: np.ndarray) -> np.ndarray:
    """The largest of ``values`` over each group's members.

    Parameters
    ----------
    labels : (N,) int ndarray
        Group of each member (:func:`group_rectangles` with ``return_labels``); -1:
        none.
    n_groups : int
    values : (N,) ndarray

    Returns
    -------
    (n_groups,) float64 ndarray
        ``-inf`` for a group without members.
    """
    labels = np.asarray(labels, np.int64).reshape(-1)
    values = np.asarray(values, np.float64).reshape(-1)
    if labels.shape != values.shape:
        raise ValueError(f"labels and values must have the same length, got {labels.size} "
                         f"and {values.size}")
    out = np.full(int(n_groups), -np.inf)
    kept = labels >= 0
    np.maximum.at(out, labels[kept], values[kept])
    return out
