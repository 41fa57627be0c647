"""Haar-like features as flat typed arrays.

A feature is up to three weighted rectangles (OpenCV's representation): its
value on a window is ``sum_k weight[k] * rectsum(rect[k])``, where each rectangle
is upright or, for a *tilted* feature, rotated by 45 degrees (Lienhart). The set
is stored as arrays, never as Python objects, so kernels can read it directly:

``rects``   (F, 3, 4) int32, x, y, w, h of each rectangle (unused ones all zero)
``weights`` (F, 3) float32 (unused rectangles have weight 0)
``tilted``  (F,) bool
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HaarFeatureSet", "MAX_RECTS"]

MAX_RECTS = 3


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
