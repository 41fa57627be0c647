"""Haar-like features as flat typed arrays.

A feature is up to three weighted rectangles (OpenCV's representation): its
value on a window is ``sum_k weight[k] * rectsum(rect[k])``, where each rectangle
is upright or, for a *tilted* feature, rotated by 45 degrees (Lienhart). The set
is stored as arrays, never as Python objects, so kernels can read it directly:

``rects``   (F, 3, 4) int32, x, y, w, h of each rectangle (unused ones all zero)
``weights`` (F, 3) float32 (unused rectangles have weight 0)
``tilted``  (F,) bool

:meth:`HaarFeatureSet.enumerate` builds the exhaustive pool OpenCV's
``opencv_traincascade`` trains from, in its order, and
:meth:`HaarFeatureSet.evaluate` computes feature values on a stack of windows
exactly as OpenCV's detector does (the kernels live in :mod:`vj.feature_eval`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import feature_eval

__all__ = ["FEATURE_KINDS", "FEATURE_MODES", "HaarFeatureSet", "MAX_RECTS", "feature_kinds"]

MAX_RECTS = 3

#: Feature pools of ``opencv_traincascade -mode``: each includes the previous one.
FEATURE_MODES = ("BASIC", "CORE", "ALL")

_Rect = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]


class _Kind(NamedTuple):
    """A feature template: its rectangles as functions of position ``(x, y)`` and cell ``(dx, dy)``.

    ``mode`` is the index in FEATURE_MODES of the first pool that contains it.
    """

    name: str
    mode: int
    tilted: bool
    rects: Callable[..., tuple[_Rect, ...]]


# The templates of OpenCV's CvHaarEvaluator::generateFeatures, in the order it emits
# them for each (x, y, dx, dy). Every template is "whole area at weight -1 plus the
# inner part at a weight that balances the areas", so a flat patch gives 0. Tilted
# rectangles grow ``w`` down-right and ``h`` down-left from their top corner.
_KINDS: tuple[_Kind, ...] = (
    _Kind("haar_x2", 0, False, lambda x, y, dx, dy: (
        (x, y, 2 * dx, dy, -1.0), (x + dx, y, dx, dy, 2.0))),
    _Kind("haar_y2", 0, False, lambda x, y, dx, dy: (
        (x, y, dx, 2 * dy, -1.0), (x, y + dy, dx, dy, 2.0))),
    _Kind("haar_x3", 0, False, lambda x, y, dx, dy: (
        (x, y, 3 * dx, dy, -1.0), (x + dx, y, dx, dy, 3.0))),
    _Kind("haar_y3", 0, False, lambda x, y, dx, dy: (
        (x, y, dx, 3 * dy, -1.0), (x, y + dy, dx, dy, 3.0))),
    _Kind("haar_x4", 1, False, lambda x, y, dx, dy: (
        (x, y, 4 * dx, dy, -1.0), (x + dx, y, 2 * dx, dy, 2.0))),
    _Kind("haar_y4", 1, False, lambda x, y, dx, dy: (
        (x, y, dx, 4 * dy, -1.0), (x, y + dy, dx, 2 * dy, 2.0))),
    _Kind("haar_x2_y2", 0, False, lambda x, y, dx, dy: (
        (x, y, 2 * dx, 2 * dy, -1.0), (x, y, dx, dy, 2.0), (x + dx, y + dy, dx, dy, 2.0))),
    _Kind("haar_point", 1, False, lambda x, y, dx, dy: (
        (x, y, 3 * dx, 3 * dy, -1.0), (x + dx, y + dy, dx, dy, 9.0))),
    _Kind("tilted_haar_x2", 2, True, lambda x, y, dx, dy: (
        (x, y, 2 * dx, dy, -1.0), (x, y, dx, dy, 2.0))),
    _Kind("tilted_haar_y2", 2, True, lambda x, y, dx, dy: (
        (x, y, dx, 2 * dy, -1.0), (x, y, dx, dy, 2.0))),
    _Kind("tilted_haar_x3", 2, True, lambda x, y, dx, dy: (
        (x, y, 3 * dx, dy, -1.0), (x + dx, y + dx, dx, dy, 3.0))),
    _Kind("tilted_haar_y3", 2, True, lambda x, y, dx, dy: (
        (x, y, dx, 3 * dy, -1.0), (x - dy, y + dy, dx, dy, 3.0))),
    _Kind("tilted_haar_x4", 2, True, lambda x, y, dx, dy: (
        (x, y, 4 * dx, dy, -1.0), (x + dx, y + dx, 2 * dx, dy, 2.0))),
    _Kind("tilted_haar_y4", 2, True, lambda x, y, dx, dy: (
        (x, y, dx, 4 * dy, -1.0), (x - dy, y + dy, dx, 2 * dy, 2.0))),
)

#: Names of the feature templates; :func:`feature_kinds` indexes into this tuple.
FEATURE_KINDS = tuple(k.name for k in _KINDS)

_LAYOUTS = ("samples_major", "features_major")


def _mode_level(mode: str) -> int:
    name = mode.upper() if isinstance(mode, str) else None
    if name not in FEATURE_MODES:
        raise ValueError(f"unknown feature mode {mode!r}; expected one of {FEATURE_MODES}")
    return FEATURE_MODES.index(name)


def _inside(x, y, w, h, tilted: bool, width: int, height: int) -> np.ndarray:
    """Whether rectangles lie inside a ``width`` x ``height`` window (broadcasting)."""
    if tilted:
        # A tilted rectangle spans columns x - h .. x + w and rows y .. y + w + h.
        return (x - h >= 0) & (x + w <= width) & (y >= 0) & (y + w + h <= height)
    return (x >= 0) & (y >= 0) & (x + w <= width) & (y + h <= height)


def _enumerate(width: int, height: int, mode: str) -> tuple[np.ndarray, ...]:
    """Rects, weights, tilted flags and kind ids of OpenCV's feature pool, in its order."""
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    width, height = int(width), int(height)
    level = _mode_level(mode)
    kinds = [k for k, kind in enumerate(_KINDS) if kind.mode <= level]
    # OpenCV loops x, y, dx, dy (outer to inner) and tries every template at each
    # step; nonzero() on a C-ordered (x, y, dx, dy, kind) mask reproduces that order.
    x = np.arange(width).reshape(-1, 1, 1, 1)
    y = np.arange(height).reshape(1, -1, 1, 1)
    dx = np.arange(1, width + 1).reshape(1, 1, -1, 1)
    dy = np.arange(1, height + 1).reshape(1, 1, 1, -1)
    mask = np.empty((width, height, width, height, len(kinds)), dtype=np.bool_)
    for j, k in enumerate(kinds):
        ok = np.ones((), dtype=np.bool_)
        for rx, ry, rw, rh, _ in _KINDS[k].rects(x, y, dx, dy):
            ok = ok & _inside(rx, ry, rw, rh, _KINDS[k].tilted, width, height)
        mask[..., j] = ok
    xi, yi, dxi, dyi, ji = np.nonzero(mask)
    del mask
    kind = np.asarray(kinds, dtype=np.int8)[ji]
    n = kind.shape[0]
    rects = np.zeros((n, MAX_RECTS, 4), dtype=np.int32)
    weights = np.zeros((n, MAX_RECTS), dtype=np.float32)
    tilted = np.zeros(n, dtype=np.bool_)
    for j, k in enumerate(kinds):
        sel = np.nonzero(ji == j)[0]
        template = _KINDS[k].rects(xi[sel], yi[sel], dxi[sel] + 1, dyi[sel] + 1)
        for r, (rx, ry, rw, rh, wt) in enumerate(template):
            rects[sel, r] = np.stack([rx, ry, rw, rh], axis=1)
            weights[sel, r] = wt
        tilted[sel] = _KINDS[k].tilted
    return rects, weights, tilted, kind


def feature_kinds(width: int, height: int, mode: str = "BASIC") -> np.ndarray:
    """Template of every feature of :meth:`HaarFeatureSet.enumerate`, as an index.

    Parameters
    ----------
    width, height : int
        Window size.
    mode : {"BASIC", "CORE", "ALL"}
        Feature pool (case-insensitive).

    Returns
    -------
    (F,) int8 ndarray
        ``FEATURE_KINDS[k]`` names the template of feature ``i`` when ``k = result[i]``.

    Examples
    --------
    >>> [FEATURE_KINDS[k] for k in feature_kinds(2, 2)][:4]
    ['haar_x2', 'haar_y2', 'haar_x2_y2', 'haar_x2']
    """
    return _enumerate(width, height, mode)[3]


@dataclass(frozen=True)
class HaarFeatureSet:
    """A set of Haar features for a fixed window size.

    Parameters
    ----------
    window : (int, int)
        Window ``(width, height)`` the rectangles are expressed in.
    rects : (F, 3, 4) int32 ndarray
    weights : (F, 3) float32 ndarray
    tilted : (F,) bool ndarray
    """

    window: tuple[int, int]
    rects: np.ndarray
    weights: np.ndarray
    tilted: np.ndarray

    def __post_init__(self) -> None:
        rects = np.ascontiguousarray(self.rects, dtype=np.int32)
        weights = np.ascontiguousarray(self.weights, dtype=np.float32)
        tilted = np.ascontiguousarray(self.tilted, dtype=np.bool_)
        if rects.ndim != 3 or rects.shape[1:] != (MAX_RECTS, 4):
            raise ValueError(f"rects must have shape (F, 3, 4), got {rects.shape}")
        n = rects.shape[0]
        if weights.shape != (n, MAX_RECTS):
            raise ValueError(f"weights must have shape ({n}, 3), got {weights.shape}")
        if tilted.shape != (n,):
            raise ValueError(f"tilted must have shape ({n},), got {tilted.shape}")
        w, h = (int(v) for v in self.window)
        if w < 1 or h < 1:
            raise ValueError(f"window must be positive, got {self.window}")
        object.__setattr__(self, "window", (w, h))
        object.__setattr__(self, "rects", rects)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "tilted", tilted)
        self._check_inside()

    def _check_inside(self) -> None:
        """Every used rectangle must lie inside the window (tilted ones too)."""
        if len(self) == 0:
            return
        w, h = self.window
        x, y, rw, rh = (self.rects[..., i].astype(np.int64) for i in range(4))
        used = self.weights != 0
        upright = ~self.tilted[:, None]
        if np.any(used & ((rw <= 0) | (rh <= 0))):
            raise ValueError("feature rectangles with non-zero weight need positive size")
        ok_up = (x >= 0) & (y >= 0) & (x + rw <= w) & (y + rh <= h)
        # A tilted rectangle spans columns x - rh .. x + rw and rows y .. y + rw + rh.
        ok_t = (x - rh >= 0) & (x + rw <= w) & (y >= 0) & (y + rw + rh <= h)
        ok = np.where(upright, ok_up, ok_t)
        bad = np.nonzero(used & ~ok)[0]
        if bad.size:
            raise ValueError(
                f"{bad.size} feature(s) have rectangles outside the {w}x{h} window "
                f"(first: feature {bad[0]}, rects {self.rects[bad[0]].tolist()})"
            )

    def __len__(self) -> int:
        return int(self.rects.shape[0])

    @property
    def has_tilted(self) -> bool:
        """Whether any feature needs the tilted integral image."""
        return bool(self.tilted.any())

    def subset(self, index: np.ndarray) -> HaarFeatureSet:
        """The features at ``index`` (an integer array or boolean mask), in that order."""
        index = np.asarray(index)
        return HaarFeatureSet(
            self.window, self.rects[index], self.weights[index], self.tilted[index]
        )

    @classmethod
    def empty(cls, window: tuple[int, int]) -> HaarFeatureSet:
        """A set with no features."""
        return cls(
            window,
            np.zeros((0, MAX_RECTS, 4), np.int32),
            np.zeros((0, MAX_RECTS), np.float32),
            np.zeros(0, np.bool_),
        )

    @classmethod
    def enumerate(cls, width: int, height: int, mode: str = "BASIC") -> HaarFeatureSet:
        """Every feature ``opencv_traincascade`` considers for a window, in its order.

        Parameters
        ----------
        width, height : int
            Window size (``-w``, ``-h`` of the trainer).
        mode : {"BASIC", "CORE", "ALL"}
            Feature pool (``-mode``, case-insensitive). BASIC holds Viola and Jones'
            edge, line and diagonal features (``haar_x2``, ``haar_y2``, ``haar_x3``,
            ``haar_y3``, ``haar_x2_y2``); CORE adds the long lines ``haar_x4``,
            ``haar_y4`` and the centre-surround ``haar_point``; ALL adds Lienhart's
            45-degree versions of the line features.

        Returns
        -------
        HaarFeatureSet
            Features in OpenCV's weighted-rectangle form: the whole template at
            weight -1 plus its inner part at +2, +3 or +9 (so ``haar_x2`` is
            right half minus left half). :func:`feature_kinds` names each template.

        Notes
        -----
        Feature ``i`` here is feature ``i`` of the trainer, so trained cascades
        index the same features. A 24x24 window has 162,336 BASIC features
        (the five types of :func:`skimage.feature.haar_like_feature`, same values
        up to the weighting convention), 210,400 CORE and 261,600 ALL.

        Examples
        --------
        >>> len(HaarFeatureSet.enumerate(24, 24))
        162336
        """
        rects, weights, tilted, _ = _enumerate(width, height, mode)
        return cls((int(width), int(height)), rects, weights, tilted)

    def evaluate(
        self,
        patches: np.ndarray,
        *,
        normalize: bool = True,
        feature_index: np.ndarray | None = None,
        out: np.ndarray | None = None,
        layout: str = "samples_major",
    ) -> np.ndarray:
        """Feature values on a stack of windows, exactly as OpenCV's detector computes them.

        Parameters
        ----------
        patches : (N, h, w) uint8 ndarray
            Windows the size of :attr:`window` (``(w, h)``).
        normalize : bool
            Multiply by each window's variance-normalisation factor
            (:func:`vj.feature_eval.window_norm_factors`), as the detector does.
        feature_index : (K,) int ndarray or (F,) bool ndarray, optional
            Evaluate only these features (in this order); default all.
        out : ndarray, optional
            C-contiguous float32 array of the result's shape to write into.
        layout : {"samples_major", "features_major"}
            ``(N, K)`` result, or ``(K, N)`` with one contiguous row per feature
            (what a boosting trainer scans).

        Returns
        -------
        (N, K) or (K, N) float32 ndarray

        Notes
        -----
        For many feature chunks over the same windows, compute the integral
        images once with :func:`vj.feature_eval.integral_stack` and call
        :meth:`evaluate_integrals` per chunk.
        """
        index = self._feature_index(feature_index)
        need_tilted = bool(self.tilted[index].any())
        self._check_patches(patches)
        sums, sqsums, tilted = feature_eval.integral_stack(patches, tilted=need_tilted)
        factors = feature_eval.norm_factors_from_integrals(sums, sqsums)[0] if normalize else None
        return self._run(sums, tilted, factors, index, out, layout)

    def evaluate_integrals(
        self,
        sums: np.ndarray,
        tilted: np.ndarray | None = None,
        factors: np.ndarray | None = None,
        *,
        feature_index: np.ndarray | None = None,
        out: np.ndarray | None = None,
        layout: str = "samples_major",
    ) -> np.ndarray:
        """Feature values from precomputed integral images of the windows.

        Parameters
        ----------
        sums : (N, h + 1, w + 1) int32 ndarray
            Summed-area tables of the windows (:func:`vj.feature_eval.integral_stack`).
        tilted : (N, h + 1, w + 1) int32 ndarray, optional
            Tilted tables; required when a selected feature is tilted.
        factors : (N,) float32 ndarray, optional
            Per-window multipliers, normally the variance-normalisation factors;
            default none (raw values).
        feature_index, out, layout
            As in :meth:`evaluate`.

        Returns
        -------
        (N, K) or (K, N) float32 ndarray
        """
        index = self._feature_index(feature_index)
        return self._run(sums, tilted, factors, index, out, layout)

    def _check_patches(self, patches: np.ndarray) -> None:
        w, h = self.window
        if not isinstance(patches, np.ndarray):
            raise ValueError(f"patches must be a numpy array, got {type(patches).__name__}")
        if patches.ndim != 3 or patches.shape[1:] != (h, w):
            raise ValueError(
                f"patches must have shape (N, {h}, {w}) for the {w}x{h} window, "
                f"got {patches.shape}"
            )

    def _feature_index(self, feature_index: np.ndarray | None) -> np.ndarray:
        """Validated int64 feature indices (all features when None)."""
        n = len(self)
        if feature_index is None:
            return np.arange(n, dtype=np.int64)
        index = np.asarray(feature_index)
        if index.dtype == np.bool_:
            if index.shape != (n,):
                raise ValueError(
                    f"a boolean feature_index must have shape ({n},), got {index.shape}"
                )
            return np.nonzero(index)[0].astype(np.int64)
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
            raise ValueError(
                f"feature_index must be a 1-D integer or boolean array, "
                f"got dtype {index.dtype} shape {index.shape}"
            )
        if index.size and (index.min() < 0 or index.max() >= n):
            raise ValueError(
                f"feature_index values must lie in [0, {n}), "
                f"got range [{index.min()}, {index.max()}]"
            )
        return np.ascontiguousarray(index, dtype=np.int64)

    def _table_offsets(self) -> np.ndarray:
        """(F, 3, 4) int64 flat offsets of each rectangle's corners in a window's tables."""
        cached = self.__dict__.get("_offsets")
        if cached is None:
            cached = feature_eval.corner_offsets(self.rects, self.weights, self.tilted, self.window)
            object.__setattr__(self, "_offsets", cached)
        return cached

    def _run(self, sums, tilted, factors, index, out, layout) -> np.ndarray:
        if layout not in _LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; expected one of {_LAYOUTS}")
        return feature_eval.evaluate_tables(
            sums,
            tilted,
            factors,
            self._table_offsets(),
            self.weights,
            self.tilted,
            index,
            self.window,
            out=out,
            features_major=layout == "features_major",
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HaarFeatureSet):
            return NotImplemented
        return (
            self.window == other.window
            and np.array_equal(self.rects, other.rects)
            and np.array_equal(self.weights, other.weights)
            and np.array_equal(self.tilted, other.tilted)
        )

    __hash__ = None  # type: ignore[assignment]
