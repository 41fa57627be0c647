"""Digits with graded corruption: one test set whose inputs range from easy to hard.

A dynamic network can only show that it adapts to its input on data whose difficulty
varies, and the difficulty must be of the kind more computation resolves: noise or
occlusion that destroys the digit makes every network fail alike. scikit-learn's 8x8
digits are upsampled, then each copy gets one of four levels, generated here from a
seed (nothing is downloaded):

====== =========================================================================
level  corruption (pixel values in [0, 1] before standardisation)
====== =========================================================================
0      none
1      rotation up to 15 degrees, scale 0.9-1.1, small shift, noise std 0.05
2      rotation up to 35 degrees, scale 0.8-1.15, one distractor digit, noise 0.1
3      rotation up to 50 degrees, scale 0.75-1.2, two distractor digits, noise 0.15
====== =========================================================================

A distractor is another digit of the same split, shifted off-centre by 30-50 % of the
side and drawn at 55 % intensity: the label is the brighter, central digit.

The images are split first (so
that no digit lends a corrupted copy to another split), then every validation and test
digit appears once at every level: accuracy can be reported per level on the same
digits. Each training digit appears at ``train_levels`` levels drawn at random.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from vj_dynamic.bench.datasets import DatasetSplits

__all__ = ["LEVELS", "corrupt", "load_graded_digits"]

#: Per level: (largest rotation in degrees, scale range, distractor digits, noise std).
LEVELS = (
    (0.0, (1.0, 1.0), 0, 0.0),
    (15.0, (0.9, 1.1), 0, 0.05),
    (35.0, (0.8, 1.15), 1, 0.1),
    (50.0, (0.75, 1.2), 2, 0.15),
)

# Distractors: another digit of the same split, shifted by this share of the side and
# drawn at this share of the main digit's intensity.
_DISTRACTOR_SHIFT = (0.3, 0.5)
_DISTRACTOR_GAIN = 0.55


def _warp(image: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    size = image.shape[0]
    matrix = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle, scale)
    matrix[:, 2] += shift
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)


def corrupt(
    images: np.ndarray, level: int, rng: np.random.Generator, pool: np.ndarray | None = None
) -> np.ndarray:
    """Apply corruption ``level`` (see :data:`LEVELS`) to images ``(N, S, S)`` in [0, 1].

    Parameters
    ----------
    images : (N, S, S) float32 ndarray
        Clean images, values in ``[0, 1]``.
    level : int
        Index into :data:`LEVELS`.
    rng : Generator
        Draws rotations, scales, distractors and noise.
    pool : (M, S, S) float32 ndarray, optional
        Clean images the distractors are drawn from (default: ``images``).

    Returns
    -------
    (N, S, S) float32 ndarray
        A corrupted copy, clipped to [0, 1] before the noise; ``images`` is not modified.
    """
    if not 0 <= level < len(LEVELS):
        raise ValueError(f"level must be in 0..{len(LEVELS) - 1}, got {level}")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape (N, S, S), got {images.shape}")
    pool = images if pool is None else np.asarray(pool, dtype=np.float32)
    max_angle, (scale_lo, scale_hi), n_distractors, noise = LEVELS[level]
    size = images.shape[1]
    out = images.copy()
    for i in range(len(out)):
        if max_angle > 0:
            angle = rng.uniform(-max_angle, max_angle)
            shift = tuple(rng.uniform(-0.06, 0.06, 2) * size)
            out[i] = _warp(out[i], angle, rng.uniform(scale_lo, scale_hi), shift)
        for _ in range(n_distractors):
            other = pool[rng.integers(len(pool))]
            offset = rng.uniform(*_DISTRACTOR_SHIFT, 2) * size * rng.choice([-1, 1], 2)
            moved = _warp(other, rng.uniform(-max_angle, max_angle), 1.0, tuple(offset))
            out[i] = np.maximum(out[i], _DISTRACTOR_GAIN * moved)
    np.clip(out, 0.0, 1.0, out=out)
    if noise > 0:
        out += rng.normal(0.0, noise, out.shape).astype(np.float32)
    return out


def _upsampled_digits(size: int) -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images[:, 0].numpy(), digits.target.astype(np.int64)


def _at_levels(images, labels, levels_per_image: np.ndarray, rng):
    """Each image at each of its levels: images, labels and levels, level by level."""
    xs, ys, ds = [], [], []
    for level in range(len(LEVELS)):
        rows = np.flatnonzero((levels_per_image == level).any(axis=1))
        xs.append(corrupt(images[rows], level, rng, pool=images))
        ys.append(labels[rows])
        ds.append(np.full(rows.size, level, np.int64))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ds)


def load_graded_digits(
    size: int = 32,
    *,
    seed: int = 0,
    train_levels: int = 2,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> DatasetSplits:
    """The digits at four corruption levels, split by digit (see the module docstring).

    Parameters
    ----------
    size : int, optional
        Side of the images (bilinear upsampling of the 8x8 digits).
    seed : int, optional
        Seed of the split and of every corruption.
    train_levels : int, optional
        Distinct levels at which each training digit appears (1 to 4).
    val_fraction, test_fraction : float, optional
        Parts of the digits held out for validation and test.

    Returns
    -------
    DatasetSplits
        With ``difficulty_train``, ``difficulty_val`` and ``difficulty_test``: the level of
        every sample. Standardised with the training mean and std.
    """
    if size < 8:
        raise ValueError(f"size must be >= 8 (the digits are 8x8), got {size}")
    if not 1 <= train_levels <= len(LEVELS):
        raise ValueError(f"train_levels must be in 1..{len(LEVELS)}, got {train_levels}")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            "val_fraction and test_fraction must be in (0, 1) and sum to less than 1, "
            f"got {val_fraction} and {test_fraction}"
        )
    images, labels = _upsampled_digits(size)
    index = np.arange(len(labels))
    rest, test = train_test_split(
        index, test_size=test_fraction, random_state=seed, stratify=labels
    )
    train, val = train_test_split(
        rest,
        test_size=val_fraction / (1 - test_fraction),
        random_state=seed + 1,
        stratify=labels[rest],
    )
    rng = np.random.default_rng(seed)
    n_levels = len(LEVELS)
    train_choice = np.argsort(rng.random((train.size, n_levels)), axis=1)[:, :train_levels]
    every = np.tile(np.arange(n_levels), (1, 1))
    parts = [
        _at_levels(images[train], labels[train], train_choice, rng),
        _at_levels(images[val], labels[val], np.tile(every, (val.size, 1)), rng),
        _at_levels(images[test], labels[test], np.tile(every, (test.size, 1)), rng),
    ]
    # Shuffle each split (its first samples, e.g. for a smoke test, mix every level).
    parts = [tuple(a[order] for a in p) for p in parts for order in [rng.permutation(len(p[1]))]]
    mean, std = float(parts[0][0].mean()), float(parts[0][0].std()) or 1.0

    def tensors(part):
        x, y, _ = part
        return torch.from_numpy(((x - mean) / std)[:, None].astype(np.float32)), torch.from_numpy(y)

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (tensors(p) for p in parts)
    return DatasetSplits(
        f"graded-digits-{size}",
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
        10,
        difficulty_train=parts[0][2],
        difficulty_val=parts[1][2],
        difficulty_test=parts[2][2],
    )
