"""Batch evaluation of Haar features on stacks of windows, bit-exact with OpenCV.

OpenCV's detector (``HaarEvaluator`` in ``cascadedetect.cpp``) computes a feature
on a window as follows, and every function here reproduces it exactly:

1. each rectangle sum is ``T[p0] - T[p1] - T[p2] + T[p3]`` on an int32 integral
   table, in C ``int`` arithmetic (wrapping modulo 2**32);
2. ``v = w0 * s0 + w1 * s1`` in float32, then ``v += w2 * s2`` when ``w2 != 0``;
3. ``v`` times the window's float32 variance-normalisation factor.

The factor comes from the window's inner rectangle ``(1, 1, w - 2, h - 2)``: with
its pixel sum ``S`` (int32), squared sum ``Q`` (uint32) and area ``A``,
``nf = A * Q - S * S`` in double; the factor is ``float32(1 / sqrt(nf))`` when
``nf > 0`` and 1 otherwise. The detector also drops the window when ``nf <= 0`` or
``A * factor >= 0.1`` (too flat to classify); :func:`window_norm_factors` reports
that as ``valid`` and leaves the choice to the caller.

Kernels are compiled without ``fastmath`` so that float32 rounding (no FMA
contraction, no reassociation) is the same as OpenCV's.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .integral import fill_packed_integrals

__all__ = [
    "corner_offsets",
    "evaluate_tables",
    "integral_stack",
    "norm_factors_from_integrals",
    "window_norm_factors",
]

# Work is cut into tiles of windows x features. A tile's windows have their
# tables transposed (entry-major, 1.3 MB for 512 24x24 windows with tilted
# tables) and every feature of the tile then streams over them; larger tiles
# amortise the transposition and the per-feature set-up, and these sizes
# measured best on AVX-512 cores with 1 MB of L2.
_SAMPLE_TILE = 512
_MIN_FEATURE_TILE = 1024
_MAX_FEATURE_TILE = 16384
# Features computed at a time before transposing into a windows-major result.
_TRANSPOSE_BLOCK = 128

# OpenCV rejects windows whose normalised area is at least this (flat windows).
_FLAT_WINDOW = 0.1


# --------------------------------------------------------------------- kernels


@nb.njit(cache=True, nogil=True, parallel=True)
def _norm_factors(sums, sqsums, width, height, factors, valid):
    """OpenCV's ``HaarEvaluator::setWindow`` for each window's tables (N, area)."""
    stride = width + 1
    p0 = stride + 1
    p1 = p0 + width - 2
    p2 = (height - 1) * stride + 1
    p3 = p2 + width - 2
    area = np.float64((width - 2) * (height - 2))
    for i in nb.prange(sums.shape[0]):
        s = sums[i]
        q = sqsums[i]
        valsum = np.int32(np.int64(s[p0]) - s[p1] - s[p2] + s[p3])
        valsqsum = (np.int64(q[p0]) - q[p1] - q[p2] + q[p3]) & 0xFFFFFFFF
        nf = area * np.float64(valsqsum) - np.float64(valsum) * np.float64(valsum)
        if nf > 0.0:
            f = np.float32(1.0 / np.sqrt(nf))
            factors[i] = f
            valid[i] = area * np.float64(f) < _FLAT_WINDOW
        else:
            factors[i] = np.float32(1.0)
            valid[i] = False


@nb.njit(cache=True, nogil=True)
def _transpose_tile(src, n0, n1, dst, base, pitch):
    """``dst[base + a * pitch + k] = src[n0 + k, a]`` for the tile's windows ``k < n1 - n0``.

    After this, entry ``a`` of every window's table is a contiguous run. Windows
    go in groups of 16 so that both sides stay in a few cache lines at a time.
    """
    area = np.uint64(src.shape[1])
    p = np.uint64(pitch)
    b = np.uint64(base)
    for g in range(np.uint64(n0), np.uint64(n1), np.uint64(16)):
        g1 = min(np.uint64(n1), g + np.uint64(16))
        for a in range(area):
            row = b + a * p - np.uint64(n0)
            for k in range(g, g1):
                dst[row + k] = src[k, a]


@nb.njit(cache=True, nogil=True)
def _eval_tile(
    tab, tilted_base, pitch, f, offsets, weights, is_tilted, index, j0, j1, dst, row0, col0
):
    """``dst[row0 + j - j0, col0 + k]`` = feature ``index[j]`` on the tile's window ``k``.

    ``tab`` holds the tile's transposed tables (:func:`_transpose_tile`, rows
    ``pitch`` apart), tilted ones from ``tilted_base``; each corner is then a
    contiguous run and the loop over windows vectorises. Only scalars are indexed
    per feature: creating array views there costs more than the arithmetic.
    """
    # Unsigned indices spare numba's negative-index check, which blocks vectorising.
    m = np.uint64(f.shape[0])
    p = np.uint64(pitch)
    zero = np.uint64(0)
    for j in range(j0, j1):
        i = index[j]
        base = np.uint64(tilted_base) if is_tilted[i] else zero
        a0 = base + np.uint64(offsets[i, 0, 0]) * p
        a1 = base + np.uint64(offsets[i, 0, 1]) * p
        a2 = base + np.uint64(offsets[i, 0, 2]) * p
        a3 = base + np.uint64(offsets[i, 0, 3]) * p
        b0 = base + np.uint64(offsets[i, 1, 0]) * p
        b1 = base + np.uint64(offsets[i, 1, 1]) * p
        b2 = base + np.uint64(offsets[i, 1, 2]) * p
        b3 = base + np.uint64(offsets[i, 1, 3]) * p
        w0 = weights[i, 0]
        w1 = weights[i, 1]
        w2 = weights[i, 2]
        r = np.uint64(row0 + j - j0)
        c = np.uint64(col0)
        if w2 != 0:
            c0 = base + np.uint64(offsets[i, 2, 0]) * p
            c1 = base + np.uint64(offsets[i, 2, 1]) * p
            c2 = base + np.uint64(offsets[i, 2, 2]) * p
            c3 = base + np.uint64(offsets[i, 2, 3]) * p
            for k in range(m):
                s0 = np.int32(np.int64(tab[a0 + k]) - tab[a1 + k] - tab[a2 + k] + tab[a3 + k])
                s1 = np.int32(np.int64(tab[b0 + k]) - tab[b1 + k] - tab[b2 + k] + tab[b3 + k])
                s2 = np.int32(np.int64(tab[c0 + k]) - tab[c1 + k] - tab[c2 + k] + tab[c3 + k])
                v = w0 * np.float32(s0) + w1 * np.float32(s1)
                v += w2 * np.float32(s2)
                dst[r, c + k] = v * f[k]
        else:
            for k in range(m):
                s0 = np.int32(np.int64(tab[a0 + k]) - tab[a1 + k] - tab[a2 + k] + tab[a3 + k])
                s1 = np.int32(np.int64(tab[b0 + k]) - tab[b1 + k] - tab[b2 + k] + tab[b3 + k])
                v = w0 * np.float32(s0) + w1 * np.float32(s1)
                dst[r, c + k] = v * f[k]


@nb.njit(cache=True, nogil=True)
def _transpose_block(buf, rows, cols, out, n0, j0):
    """``out[n0 + k, j0 + j] = buf[j, k]`` for ``j < rows``, ``k < cols``."""
    for k in range(np.uint64(cols)):
        dst = np.uint64(n0) + k
        for j in range(np.uint64(rows)):
            out[dst, np.uint64(j0) + j] = buf[j, k]


@nb.njit(cache=True, nogil=True, parallel=True)
def _eval_tiled(
    sums, tilted, factors, offsets, weights, is_tilted, index, out, with_tilted, features_major,
    feature_tile,
):
    """All selected features on all windows, in (window, feature) tiles run in parallel.

    ``out`` is ``(K, N)`` when ``features_major`` else ``(N, K)``; the latter is
    filled through a small feature-by-window buffer, transposed into whole rows.
    """
    n_samples, area = sums.shape
    n_feat = index.shape[0]
    n_stiles = (n_samples + _SAMPLE_TILE - 1) // _SAMPLE_TILE
    n_ftiles = (n_feat + feature_tile - 1) // feature_tile
    for task in nb.prange(n_stiles * n_ftiles):
        n0 = (task // n_ftiles) * _SAMPLE_TILE
        n1 = min(n_samples, n0 + _SAMPLE_TILE)
        j0 = (task % n_ftiles) * feature_tile
        j1 = min(n_feat, j0 + feature_tile)
        m = n1 - n0
        # Rows a power of two apart would share cache sets (and so would the
        # columns the transposition below reads); pad them by a cache line.
        pitch = m + 16
        tab = np.empty((2 if with_tilted else 1) * area * pitch, dtype=np.int32)
        _transpose_tile(sums, n0, n1, tab, 0, pitch)
        if with_tilted:
            _transpose_tile(tilted, n0, n1, tab, area * pitch, pitch)
        tb = area * pitch
        f = factors[n0:n1]
        if features_major:
            _eval_tile(tab, tb, pitch, f, offsets, weights, is_tilted, index, j0, j1, out, j0, n0)
        else:
            buf = np.empty((_TRANSPOSE_BLOCK, pitch), dtype=np.float32)
            for b0 in range(j0, j1, _TRANSPOSE_BLOCK):
                b1 = min(j1, b0 + _TRANSPOSE_BLOCK)
                _eval_tile(tab, tb, pitch, f, offsets, weights, is_tilted, index, b0, b1, buf, 0, 0)
                _transpose_block(buf, b1 - b0, m, out, n0, b0)


# ------------------------------------------------------------------ public API


def _check_patches(patches: np.ndarray) -> np.ndarray:
    if not isinstance(patches, np.ndarray):
        raise ValueError(f"patches must be a numpy array, got {type(patches).__name__}")
    if patches.ndim != 3:
        raise ValueError(
            f"patches must be a 3-D (N, h, w) stack, got shape {patches.shape} "
            "(use patches[None] for a single window)"
        )
    if patches.dtype != np.uint8:
        raise ValueError(f"patches must be uint8, got dtype {patches.dtype}")
    return np.ascontiguousarray(patches)


def integral_stack(
    patches: np.ndarray, tilted: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Integral images of a stack of windows, as :func:`vj.integral.integral_images`.

    Parameters
    ----------
    patches : (N, h, w) uint8 ndarray
    tilted : bool
        Also compute the 45-degree tables (needed by tilted features).

    Returns
    -------
    sums, sqsums : (N, h + 1, w + 1) int32 ndarray
        C-contiguous; squared sums wrap modulo 2**32 as OpenCV's CV_32S tables.
    tilted : (N, h + 1, w + 1) int32 ndarray or None

    Examples
    --------
    >>> s, sq, t = integral_stack(np.full((2, 3, 4), 2, np.uint8))
    >>> s.shape, int(s[1, -1, -1]), int(sq[1, -1, -1]), t
    ((2, 4, 5), 24, 48, None)
    """
    patches = _check_patches(patches)
    n, h, w = patches.shape
    nch = 3 if tilted else 2
    area = (h + 1) * (w + 1)
    tables = np.empty((nch, n, h + 1, w + 1), dtype=np.int32)
    if n:
        # Each window is one "level" of the packed-buffer kernel the detector uses:
        # row stride w + 1, one (h + 1)-row slot per window.
        padded = np.zeros((n, h + 1, w + 1), np.uint8)
        padded[:, :h, :w] = patches
        offsets = np.arange(n, dtype=np.int64) * area
        fill_packed_integrals(padded.ravel(), tables.reshape(-1), w + 1, offsets,
                              np.full(n, w, np.int64), np.full(n, h, np.int64),
                              n * area, 2 * n * area if tilted else -1)
    return tables[0], tables[1], (tables[2] if tilted else None)


def _check_tables(name: str, table: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if not isinstance(table, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(table).__name__}")
    if table.dtype != np.int32:
        raise ValueError(f"{name} must be int32 integral tables, got dtype {table.dtype}")
    if table.ndim != 3:
        raise ValueError(f"{name} must have shape (N, h + 1, w + 1), got {table.shape}")
    if shape is not None and table.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {table.shape}")
    return np.ascontiguousarray(table)


def norm_factors_from_integrals(
    sums: np.ndarray, sqsums: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Variance-normalisation factors of windows from their integral tables.

    Parameters
    ----------
    sums, sqsums : (N, h + 1, w + 1) int32 ndarray
        As returned by :func:`integral_stack`; windows must be at least 3x3.

    Returns
    -------
    factors : (N,) float32 ndarray
        ``float32(1 / sqrt(nf))``, or 1 where ``nf <= 0`` (see the module notes).
    valid : (N,) bool ndarray
        Whether OpenCV's detector keeps the window (``nf > 0`` and
        ``area * factor < 0.1``).
    """
    sums = _check_tables("sums", sums)
    sqsums = _check_tables("sqsums", sqsums, sums.shape)
    n, h1, w1 = sums.shape
    if h1 < 4 or w1 < 4:
        raise ValueError(f"windows must be at least 3x3 to normalise, got {w1 - 1}x{h1 - 1}")
    factors = np.empty(n, dtype=np.float32)
    valid = np.empty(n, dtype=np.bool_)
    if n:
        _norm_factors(sums.reshape(n, -1), sqsums.reshape(n, -1), w1 - 1, h1 - 1, factors, valid)
    return factors, valid


def window_norm_factors(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Variance-normalisation factors of a stack of windows, as OpenCV's detector.

    Parameters
    ----------
    patches : (N, h, w) uint8 ndarray
        Windows of the detector's size (at least 3x3).

    Returns
    -------
    factors : (N,) float32 ndarray
    valid : (N,) bool ndarray
        See :func:`norm_factors_from_integrals`.

    Examples
    --------
    >>> f, ok = window_norm_factors(np.zeros((1, 24, 24), np.uint8))
    >>> float(f[0]), bool(ok[0])
    (1.0, False)
    """
    patches = _check_patches(patches)
    if patches.shape[1] < 3 or patches.shape[2] < 3:
        raise ValueError(
            f"windows must be at least 3x3 to normalise, got shape {patches.shape[1:]}"
        )
    sums, sqsums, _ = integral_stack(patches)
    return norm_factors_from_integrals(sums, sqsums)


def corner_offsets(
    rects: np.ndarray, weights: np.ndarray, tilted: np.ndarray, window: tuple[int, int]
) -> np.ndarray:
    """Flat table offsets of every rectangle corner, OpenCV's ``CV_(TILTED_)SUM_OFFSETS``.

    Parameters
    ----------
    rects : (F, 3, 4) int ndarray
        ``x, y, w, h`` of each rectangle.
    weights : (F, 3) float ndarray
        Rectangles of weight 0 get all-zero offsets (their sum is 0).
    tilted : (F,) bool ndarray
    window : (int, int)
        ``(w, h)``; tables have ``w + 1`` columns.

    Returns
    -------
    (F, 3, 4) int64 ndarray
        Offsets ``p0..p3`` into a flattened ``(h + 1, w + 1)`` table; a rectangle's
        sum is ``T[p0] - T[p1] - T[p2] + T[p3]``.
    """
    stride = int(window[0]) + 1
    x, y, w, h = (rects[..., c].astype(np.int64) for c in range(4))
    up = np.stack(
        [y * stride + x, y * stride + x + w, (y + h) * stride + x, (y + h) * stride + x + w],
        axis=-1,
    )
    # Tilted corners: top (x, y), left (x - h, y + h), right (x + w, y + w), bottom.
    tl = np.stack(
        [
            y * stride + x,
            (y + h) * stride + x - h,
            (y + w) * stride + x + w,
            (y + w + h) * stride + x + w - h,
        ],
        axis=-1,
    )
    ofs = np.where(np.asarray(tilted, dtype=np.bool_)[:, None, None], tl, up)
    ofs[np.asarray(weights) == 0] = 0
    return np.ascontiguousarray(ofs)


def evaluate_tables(
    sums: np.ndarray,
    tilted: np.ndarray | None,
    factors: np.ndarray | None,
    offsets: np.ndarray,
    weights: np.ndarray,
    is_tilted: np.ndarray,
    index: np.ndarray,
    window: tuple[int, int],
    *,
    out: np.ndarray | None = None,
    features_major: bool = False,
) -> np.ndarray:
    """Evaluate features given as corner offsets on stacks of integral tables.

    The engine behind :meth:`vj.features.HaarFeatureSet.evaluate_integrals`,
    which prepares ``offsets`` (:func:`corner_offsets`) and validates ``index``.

    Parameters
    ----------
    sums : (N, h + 1, w + 1) int32 ndarray
    tilted : (N, h + 1, w + 1) int32 ndarray or None
        Required when any feature in ``index`` is tilted.
    factors : (N,) float32 ndarray or None
        Per-window multipliers; None for raw values.
    offsets : (F, 3, 4) int64 ndarray
    weights : (F, 3) float32 ndarray
    is_tilted : (F,) bool ndarray
    index : (K,) int64 ndarray
        Features to evaluate, each in ``[0, F)``.
    window : (int, int)
        ``(w, h)`` the tables must match.
    out : (N, K) or (K, N) float32 ndarray, optional
    features_major : bool
        Return ``(K, N)`` instead of ``(N, K)``.

    Returns
    -------
    (N, K) or (K, N) float32 ndarray
    """
    w, h = window
    sums = _check_tables("sums", sums)
    n = sums.shape[0]
    if sums.shape[1:] != (h + 1, w + 1):
        raise ValueError(
            f"sums must have shape (N, {h + 1}, {w + 1}) for the {w}x{h} window, "
            f"got {sums.shape}"
        )
    need_tilted = bool(is_tilted[index].any())
    if tilted is None:
        if need_tilted:
            raise ValueError("tilted tables are required: some selected features are tilted")
        tilted = sums
    else:
        tilted = _check_tables("tilted", tilted, sums.shape)
    if factors is None:
        factors = np.ones(n, dtype=np.float32)
    else:
        if not isinstance(factors, np.ndarray) or factors.dtype != np.float32:
            raise ValueError("factors must be a float32 ndarray")
        if factors.shape != (n,):
            raise ValueError(f"factors must have shape ({n},), got {factors.shape}")
        factors = np.ascontiguousarray(factors)
    k = index.shape[0]
    shape = (k, n) if features_major else (n, k)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif not isinstance(out, np.ndarray) or out.dtype != np.float32:
        raise ValueError("out must be a float32 ndarray")
    elif out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {out.shape}")
    elif not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if n == 0 or k == 0:
        return out
    # Enough tiles to keep every thread busy, each as large as that allows.
    n_stiles = -(-n // _SAMPLE_TILE)
    per_tile = -(-k * n_stiles // (4 * nb.get_num_threads()))
    feature_tile = min(_MAX_FEATURE_TILE, max(_MIN_FEATURE_TILE, per_tile))
    _eval_tiled(
        sums.reshape(n, -1), tilted.reshape(n, -1), factors, offsets, weights, is_tilted,
        index, out, need_tilted, features_major, feature_tile,
    )
    return out
