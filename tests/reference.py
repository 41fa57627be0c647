"""Plain, obviously-right versions of the library's kernels, for tests to compare against.

Nothing here is fast: loops and direct pixel sums, written from the definitions
(OpenCV's source for the conventions), never from the kernels they check.
"""

from __future__ import annotations

import math

import numpy as np

# ------------------------------------------------------------------ features


def naive_generate_features(width: int, height: int, mode: str) -> list[tuple]:
    """OpenCV traincascade's Haar feature pool, one feature at a time.

    Follows ``CvHaarEvaluator::generateFeatures``: loops ``x, y, dx, dy`` and, at
    each step, tries the templates in OpenCV's order with OpenCV's conditions.

    Returns
    -------
    list of (name, tilted, rects)
        ``rects`` is a tuple of ``(x, y, w, h, weight)``.
    """
    core = mode in ("CORE", "ALL")
    tilted_too = mode == "ALL"
    W, H = width, height
    out = []
    for x in range(W):
        for y in range(H):
            # Every template needs x + dx <= W and y + dy <= H, so larger cells add
            # nothing; stopping there keeps this loop affordable at 24x24.
            for dx in range(1, W - x + 1):
                for dy in range(1, H - y + 1):
                    if x + 2 * dx <= W and y + dy <= H:
                        out.append(("haar_x2", False,
                                    ((x, y, 2 * dx, dy, -1.0), (x + dx, y, dx, dy, 2.0))))
                    if x + dx <= W and y + 2 * dy <= H:
                        out.append(("haar_y2", False,
                                    ((x, y, dx, 2 * dy, -1.0), (x, y + dy, dx, dy, 2.0))))
                    if x + 3 * dx <= W and y + dy <= H:
                        out.append(("haar_x3", False,
                                    ((x, y, 3 * dx, dy, -1.0), (x + dx, y, dx, dy, 3.0))))
                    if x + dx <= W and y + 3 * dy <= H:
                        out.append(("haar_y3", False,
                                    ((x, y, dx, 3 * dy, -1.0), (x, y + dy, dx, dy, 3.0))))
                    if core and x + 4 * dx <= W and y + dy <= H:
                        out.append(("haar_x4", False,
                                    ((x, y, 4 * dx, dy, -1.0), (x + dx, y, 2 * dx, dy, 2.0))))
                    if core and x + dx <= W and y + 4 * dy <= H:
                        out.append(("haar_y4", False,
                                    ((x, y, dx, 4 * dy, -1.0), (x, y + dy, dx, 2 * dy, 2.0))))
                    if x + 2 * dx <= W and y + 2 * dy <= H:
                        out.append(("haar_x2_y2", False,
                                    ((x, y, 2 * dx, 2 * dy, -1.0), (x, y, dx, dy, 2.0),
                                     (x + dx, y + dy, dx, dy, 2.0))))
                    if core and x + 3 * dx <= W and y + 3 * dy <= H:
                        out.append(("haar_point", False,
                                    ((x, y, 3 * dx, 3 * dy, -1.0),
                                     (x + dx, y + dy, dx, dy, 9.0))))
                    if not tilted_too:
                        continue
                    if x + 2 * dx <= W and y + 2 * dx + dy <= H and x - dy >= 0:
                        out.append(("tilted_haar_x2", True,
                                    ((x, y, 2 * dx, dy, -1.0), (x, y, dx, dy, 2.0))))
                    if x + dx <= W and y + dx + 2 * dy <= H and x - 2 * dy >= 0:
                        out.append(("tilted_haar_y2", True,
                                    ((x, y, dx, 2 * dy, -1.0), (x, y, dx, dy, 2.0))))
                    if x + 3 * dx <= W and y + 3 * dx + dy <= H and x - dy >= 0:
                        out.append(("tilted_haar_x3", True,
                                    ((x, y, 3 * dx, dy, -1.0),
                                     (x + dx, y + dx, dx, dy, 3.0))))
                    if x + dx <= W and y + dx + 3 * dy <= H and x - 3 * dy >= 0:
                        out.append(("tilted_haar_y3", True,
                                    ((x, y, dx, 3 * dy, -1.0),
                                     (x - dy, y + dy, dx, dy, 3.0))))
                    if x + 4 * dx <= W and y + 4 * dx + dy <= H and x - dy >= 0:
                        out.append(("tilted_haar_x4", True,
                                    ((x, y, 4 * dx, dy, -1.0),
                                     (x + dx, y + dx, 2 * dx, dy, 2.0))))
                    if x + dx <= W and y + dx + 4 * dy <= H and x - 4 * dy >= 0:
                        out.append(("tilted_haar_y4", True,
                                    ((x, y, dx, 4 * dy, -1.0),
                                     (x - dy, y + dy, dx, 2 * dy, 2.0))))
    return out


def naive_rect_sum(patch: np.ndarray, x: int, y: int, w: int, h: int, tilted: bool) -> int:
    """Exact pixel sum of an upright or OpenCV-tilted rectangle, from pixel membership.

    The tilted rectangle ``(x, y, w, h)`` (top corner ``(x, y)``, ``w`` down-right,
    ``h`` down-left) covers pixel ``(col i, row j)`` when
    ``x + y - 2 < i + j <= x + y - 2 + 2w`` and ``y - x < j - i <= y - x + 2h``:
    the four-corner difference of Lienhart's tilted table, whose entry ``(X, Y)``
    counts pixels with ``i + j <= X + Y - 2`` and ``j - i <= Y - X``. It holds
    ``2 * w * h`` pixels.
    """
    p = patch.astype(np.int64)
    if not tilted:
        return int(p[y:y + h, x:x + w].sum())
    rows, cols = np.indices(p.shape)
    a = cols + rows
    b = rows - cols
    inside = (a > x + y - 2) & (a <= x + y - 2 + 2 * w) & (b > y - x) & (b <= y - x + 2 * h)
    return int(p[inside].sum())


def _c_int(v: int) -> int:
    """``v`` as a C ``int`` (two's complement wrap to 32 bits)."""
    return (v + 2**31) % 2**32 - 2**31


def naive_haar_value(
    patch: np.ndarray, rects: np.ndarray, weights: np.ndarray, tilted: bool
) -> np.float32:
    """Raw (unnormalised) feature value, with OpenCV's float32 arithmetic.

    ``w0 * s0 + w1 * s1``, then ``+ w2 * s2`` only when ``w2 != 0``, each step
    rounded to float32; rectangle sums are C ``int`` values.
    """
    s = [
        np.float32(_c_int(naive_rect_sum(patch, *map(int, rects[k]), tilted)))
        if weights[k] != 0 else np.float32(0)
        for k in range(3)
    ]
    w = [np.float32(v) for v in weights]
    v = np.float32(w[0] * s[0]) + np.float32(w[1] * s[1])
    if w[2] != 0:
        v = np.float32(v + np.float32(w[2] * s[2]))
    return np.float32(v)


def naive_norm_factor(patch: np.ndarray) -> tuple[np.float32, bool]:
    """OpenCV ``HaarEvaluator::setWindow``: variance-normalisation factor and validity.

    Over the inner rectangle ``patch[1:h-1, 1:w-1]``: ``nf = area * sqsum - sum**2``
    in double, with the squared sum as a 32-bit unsigned; the factor is
    ``float32(1 / sqrt(nf))`` when ``nf > 0`` else 1, and the window is kept when
    ``nf > 0`` and ``area * factor < 0.1``.
    """
    h, w = patch.shape
    inner = patch[1:h - 1, 1:w - 1].astype(np.int64)
    valsum = _c_int(int(inner.sum()))
    valsqsum = int((inner * inner).sum()) % 2**32
    area = float((w - 2) * (h - 2))
    nf = area * float(valsqsum) - float(valsum) * float(valsum)
    if nf > 0:
        factor = np.float32(1.0 / math.sqrt(nf))
        return factor, bool(area * float(factor) < 0.1)
    return np.float32(1.0), False


def naive_feature_values(
    features, patches: np.ndarray, normalize: bool = True, feature_index=None
) -> np.ndarray:
    """(N, K) float32 values of ``features`` (a HaarFeatureSet) on each patch."""
    index = np.arange(len(features)) if feature_index is None else np.asarray(feature_index)
    out = np.zeros((len(patches), len(index)), dtype=np.float32)
    for n, patch in enumerate(patches):
        factor = naive_norm_factor(patch)[0] if normalize else np.float32(1.0)
        for j, i in enumerate(index):
            v = naive_haar_value(patch, features.rects[i], features.weights[i],
                                 bool(features.tilted[i]))
            out[n, j] = np.float32(v * factor)
    return out


# ------------------------------------------------------------------ boosting


def naive_quantile_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Edge ``j`` of a row is its sorted value at position ``floor((j + 1) * M / n_bins)``."""
    values = np.asarray(values, np.float32)
    m = values.shape[1]
    out = np.zeros((values.shape[0], n_bins - 1), np.float32)
    for f in range(values.shape[0]):
        s = sorted(values[f].tolist())
        for j in range(n_bins - 1):
            out[f, j] = s[((j + 1) * m) // n_bins]
    return out


def naive_digitize(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: how many of its feature's edges are ``<=`` it."""
    out = np.zeros(values.shape, np.uint8)
    for f in range(values.shape[0]):
        for n in range(values.shape[1]):
            out[f, n] = sum(1 for e in edges[f] if e <= values[f, n])
    return out


def naive_split_scores(
    bins: np.ndarray, n_bins: int, weights: np.ndarray, y: np.ndarray, rows: np.ndarray,
    loss: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Best split of each feature by trying every bin boundary.

    Sums are accumulated one sample at a time in the order of ``rows`` (left
    sums from the lowest bin up, right sums from the highest bin down), the
    order the kernel uses, so the scores agree to the last bit. A split needs
    positive weight on both sides; ``"squared"`` scores ``-(S_L^2/W_L + S_R^2/W_R)``
    (``S = P - N``, ``W = P + N``), ``"misclass"`` the lighter of the two
    polarities' misclassified weight. Ties keep the lowest bin.
    """
    n_feat = bins.shape[0]
    scores = np.full(n_feat, np.inf)
    splits = np.zeros(n_feat, np.int32)
    for f in range(n_feat):
        pos = [0.0] * n_bins
        neg = [0.0] * n_bins
        for n in rows:
            if y[n] > 0:
                pos[bins[f, n]] += float(weights[n])
        for n in rows:
            if y[n] <= 0:
                neg[bins[f, n]] += float(weights[n])
        right = {}
        pr = nr = 0.0
        for b in range(n_bins - 1, -1, -1):
            pr += pos[b]
            nr += neg[b]
            right[b] = (pr, nr)
        pl = nl = 0.0
        for k in range(1, n_bins):
            pl += pos[k - 1]
            nl += neg[k - 1]
            pr, nr = right[k]
            wl, wr = pl + nl, pr + nr
            if wl <= 0 or wr <= 0:
                continue
            if loss == "misclass":
                s = min(pl + nr, nl + pr)
            else:
                s = -((pl - nl) * (pl - nl) / wl + (pr - nr) * (pr - nr) / wr)
            if s < scores[f]:
                scores[f], splits[f] = s, k
    return scores, splits


def naive_best_stump(
    values: np.ndarray, weights: np.ndarray, y: np.ndarray, rows: np.ndarray, loss: str,
    n_bins: int,
) -> tuple[int, float, float, float]:
    """Best stump on raw values (F, N): ``(feature, threshold, left leaf, right leaf)``.

    Edges are quantiles of all samples; the split ``bin < k`` is ``value < edge[k-1]``.
    Leaves: weighted mean of ``y`` (``"squared"``) or the sign of the weighted vote.
    """
    edges = naive_quantile_edges(values, n_bins)
    bins = naive_digitize(values, edges)
    scores, splits = naive_split_scores(bins, n_bins, weights, y, rows, loss)
    f = int(np.argmin(scores))
    thr = float(edges[f, splits[f] - 1])
    leaves = []
    for side in (values[f, rows] < thr, values[f, rows] >= thr):
        r = np.asarray(rows)[side]
        w, s = float(np.sum(weights[r])), float(np.sum(weights[r] * y[r]))
        leaves.append((1.0 if s >= 0 else -1.0) if loss == "misclass" else s / w)
    return f, thr, leaves[0], leaves[1]


def naive_trim_rows(weights: np.ndarray, rows: np.ndarray, trim_rate: float) -> np.ndarray:
    """Take samples heaviest first (ties: lower row first) until ``trim_rate`` of the weight."""
    order = sorted(rows.tolist(), key=lambda r: (-weights[r], list(rows).index(r)))
    total = float(np.cumsum(weights[rows][np.argsort(-weights[rows], kind="stable")])[-1])
    kept, acc = [], 0.0
    for r in order:
        kept.append(r)
        acc += float(weights[r])
        if acc >= trim_rate * total:
            break
    return np.sort(np.asarray(kept, np.int64))


# --------------------------------------------------------------------------
# Integral images, grouping and cascade scanning (detection engine)
# --------------------------------------------------------------------------


def naive_integrals(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum, squared-sum and tilted tables straight from their definitions (int64)."""
    img = image.astype(np.int64)
    h, w = img.shape
    s = np.zeros((h + 1, w + 1), np.int64)
    s[1:, 1:] = img.cumsum(0).cumsum(1)
    sq = np.zeros((h + 1, w + 1), np.int64)
    sq[1:, 1:] = (img * img).cumsum(0).cumsum(1)
    t = np.zeros((h + 1, w + 1), np.int64)
    cols = np.arange(w)
    for y in range(h + 1):
        for x in range(w + 1):
            acc = 0
            for j in range(y):
                acc += int(img[j, np.abs(cols - x + 1) <= y - 1 - j].sum())
            t[y, x] = acc
    return s, sq, t


def naive_group_rectangles(rects, threshold: int, eps: float = 0.2):
    """OpenCV's groupRectangles, written plainly: components, averages, filters."""
    rects = [tuple(int(v) for v in r) for r in rects]
    n = len(rects)
    if threshold <= 0 or n == 0:
        return [list(r) for r in rects], [1] * n

    def similar(a, b):
        d = eps * (min(a[2], b[2]) + min(a[3], b[3])) * 0.5
        return (abs(a[0] - b[0]) <= d and abs(a[1] - b[1]) <= d
                and abs(a[0] + a[2] - b[0] - b[2]) <= d
                and abs(a[1] + a[3] - b[1] - b[3]) <= d)

    label = [-1] * n
    nclasses = 0
    for i in range(n):  # breadth-first connected components, numbered by first member
        if label[i] >= 0:
            continue
        label[i] = nclasses
        queue = [i]
        while queue:
            k = queue.pop()
            for j in range(n):
                if label[j] < 0 and similar(rects[k], rects[j]):
                    label[j] = nclasses
                    queue.append(j)
        nclasses += 1
    sums = [[0, 0, 0, 0] for _ in range(nclasses)]
    counts = [0] * nclasses
    for r, c in zip(rects, label, strict=True):
        counts[c] += 1
        for k in range(4):
            sums[c][k] += r[k]
    avg = []
    for c in range(nclasses):
        s = np.float32(1.0) / np.float32(counts[c])
        avg.append([int(np.rint(np.float32(v) * s)) for v in sums[c]])
    out, weights = [], []
    for i in range(nclasses):
        n1 = counts[i]
        if n1 <= threshold:
            continue
        r1 = avg[i]
        swallowed = False
        for j in range(nclasses):
            n2 = counts[j]
            if j == i or n2 <= threshold:
                continue
            r2 = avg[j]
            dx, dy = int(np.rint(r2[2] * eps)), int(np.rint(r2[3] * eps))
            if (r1[0] >= r2[0] - dx and r1[1] >= r2[1] - dy
                    and r1[0] + r1[2] <= r2[0] + r2[2] + dx
                    and r1[1] + r1[3] <= r2[1] + r2[3] + dy
                    and (n2 > max(3, n1) or n1 < 3)):
                swallowed = True
                break
        if not swallowed:
            out.append(r1)
            weights.append(n1)
    return out, weights


def naive_cascade_at(cascade, sums, sqsums, tilted, x: int, y: int) -> int:
    """Stages passed by the window at (x, y) of one pyramid level (-1: low variance).

    ``sums``/``sqsums``/``tilted`` are that level's int64 tables. Arithmetic is
    OpenCV's: float32 feature values, float64 stage sums.
    """
    value = naive_window_values(cascade, sums, sqsums, tilted, x, y)
    return -1 if value is None else naive_stages_passed(cascade, value)


def naive_margins_at(cascade, sums, sqsums, tilted, x: int, y: int) -> list[float] | None:
    """Every stage's full sum minus its threshold at (x, y) (None: low variance)."""
    value = naive_window_values(cascade, sums, sqsums, tilted, x, y)
    if value is None:
        return None
    return [total - float(cascade.effective_stage_threshold[s])
            for s, total in enumerate(naive_stage_sums(cascade, value))]


def naive_window_values(cascade, sums, sqsums, tilted, x: int, y: int):
    """``value(feature_index) -> float32`` at (x, y) of a level, or None (low variance)."""
    ww, wh = cascade.window
    nw, nh = ww - 2, wh - 2

    def up(t, rx, ry, rw, rh):
        return int(t[ry, rx] - t[ry, rx + rw] - t[ry + rh, rx] + t[ry + rh, rx + rw])

    vs = up(sums, x + 1, y + 1, nw, nh)
    vsq = up(sqsums, x + 1, y + 1, nw, nh) & 0xFFFFFFFF
    area = float(nw * nh)
    nf = area * vsq - float(vs) * vs
    if nf <= 0:
        return None
    fac = np.float32(1.0 / np.sqrt(nf))
    if area * float(fac) >= 0.1:
        return None
    f = cascade.features

    def value(fi):
        acc = np.float32(0)
        for k in range(3):
            rx, ry, rw, rh = (int(v) for v in f.rects[fi, k])
            if f.weights[fi, k] == 0:
                continue
            if f.tilted[fi]:
                t = tilted
                s = int(t[y + ry, x + rx] - t[y + ry + rh, x + rx - rh]
                        - t[y + ry + rw, x + rx + rw] + t[y + ry + rw + rh, x + rx + rw - rh])
            else:
                s = up(sums, x + rx, y + ry, rw, rh)
            acc = np.float32(acc + np.float32(f.weights[fi, k] * np.float32(s)))
        return np.float32(acc * fac)

    return value


def naive_leaf_index(bins: np.ndarray, feature_row, split_bin, left, right) -> np.ndarray:
    """Leaf each sample reaches from node 0: left when ``bin < split``; a child <= 0 is a leaf."""
    out = np.zeros(bins.shape[1], np.int32)
    for n in range(bins.shape[1]):
        j = 0
        while True:
            child = left[j] if bins[feature_row[j], n] < split_bin[j] else right[j]
            if child <= 0:
                out[n] = -child
                break
            j = child
    return out


def naive_stages_passed(cascade, value) -> int:
    """Stages a window passes, given ``value(feature_index) -> float32`` for it.

    OpenCV's stage logic: walk each tree, add its leaf (float64 sum), stop at the
    first stage whose sum is below its threshold.
    """
    for s, total in enumerate(naive_stage_sums(cascade, value)):
        if total < float(cascade.effective_stage_threshold[s]):
            return s
    return cascade.n_stages


def naive_stage_sums(cascade, value):
    """Each stage's sum in turn (a generator: a caller may stop at a failed stage)."""
    node = leaf = tree = 0
    for s in range(cascade.n_stages):
        total = 0.0
        for _ in range(int(cascade.stage_trees[s])):
            idx = 0
            while True:
                k = node + idx
                v = value(int(cascade.node_feature[k]))
                idx = int(cascade.node_left[k] if v < cascade.node_threshold[k]
                          else cascade.node_right[k])
                if idx <= 0:
                    break
            total += float(cascade.leaf_values[leaf - idx])
            node += int(cascade.tree_nodes[tree])
            leaf += int(cascade.tree_nodes[tree]) + 1
            tree += 1
        yield total
