"""Offline image-classification data for the dynamic networks: digits and face crops.

Both loaders return standardised ``(N, 1, size, size)`` float tensors split into train,
validation and test parts (stratified, seeded). Nothing is downloaded: scikit-learn
ships the digits, and the face crops are read from the project's shared data folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from vj.image_sources import default_data_dir, image_files, read_gray

__all__ = [
    "DatasetSplits",
    "default_data_dir",
    "load_digits_upsampled",
    "load_face_crops",
]


@dataclass(frozen=True)
class DatasetSplits:
    """Train / validation / test tensors of one dataset.

    Attributes
    ----------
    name : str
        Short description, e.g. ``"digits-32"``.
    x_train, x_val, x_test : Tensor
        ``(n, 1, size, size)`` float32, standardised with the training mean and std.
    y_train, y_val, y_test : Tensor
        ``(n,)`` int64 class labels.
    num_classes : int
        Number of classes.
    difficulty_train, difficulty_val, difficulty_test : (n,) int ndarray or None
        Difficulty level of every sample, where the dataset grades its inputs
        (:mod:`vj_dynamic.bench.graded_digits`).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    difficulty_train: np.ndarray | None = None
    difficulty_val: np.ndarray | None = None
    difficulty_test: np.ndarray | None = None

    @property
    def in_channels(self) -> int:
        """Image channels (1: grayscale)."""
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        """Side of the square images."""
        return int(self.x_train.shape[-1])

    def head(self, n: int) -> DatasetSplits:
        """The first ``n`` samples of each split (smoke tests)."""
        cut = slice(0, n)

        def part(a):
            return None if a is None else a[cut]

        return DatasetSplits(
            self.name,
            self.x_train[cut],
            self.y_train[cut],
            self.x_val[cut],
            self.y_val[cut],
            self.x_test[cut],
            self.y_test[cut],
            self.num_classes,
            part(self.difficulty_train),
            part(self.difficulty_val),
            part(self.difficulty_test),
        )


def _split(
    x: np.ndarray,
    y: np.ndarray,
    name: str,
    num_classes: int,
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> DatasetSplits:
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            "val_fraction and test_fraction must be in (0, 1) and sum to less than 1, "
            f"got {val_fraction} and {test_fraction}"
        )
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest,
        y_rest,
        test_size=val_fraction / (1 - test_fraction),
        random_state=seed + 1,
        stratify=y_rest,
    )
    mean, std = float(x_train.mean()), float(x_train.std()) or 1.0

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((a - mean) / std).astype(np.float32))

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return DatasetSplits(
        name,
        tensor(x_train),
        labels(y_train),
        tensor(x_val),
        labels(y_val),
        tensor(x_test),
        labels(y_test),
        num_classes,
    )


def load_digits_upsampled(
    size: int = 32, *, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2
) -> DatasetSplits:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), upsampled.

    Parameters
    ----------
    size : int, optional
        Output side in pixels (bilinear upsampling of the 8x8 images).
    seed : int, optional
        Seed of the stratified split.
    val_fraction, test_fraction : float, optional
        Parts of the data held out for validation and test.

    Returns
    -------
    DatasetSplits
    """
    if size < 8:
        raise ValueError(f"size must be >= 8 (the digits are 8x8), got {size}")
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return _split(
        images.numpy(), digits.target, f"digits-{size}", 10, seed, val_fraction, test_fraction
    )


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    interpolation = cv2.INTER_AREA if min(image.shape) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation).astype(np.float32) / 255.0


def _deduplicate(images: list[np.ndarray]) -> list[np.ndarray]:
    # The Caltech crops hold ~180 near-identical pairs; a coarse thumbnail catches them,
    # and keeping them would put copies of test faces in the training set.
    seen: set[bytes] = set()
    kept = []
    for image in images:
        thumb = cv2.resize(image, (8, 8), interpolation=cv2.INTER_AREA)
        key = (thumb * 15.999).astype(np.uint8).tobytes()
        if key not in seen:
            seen.add(key)
            kept.append(image)
    return kept


def _background_windows(folder: Path, count: int, size: int, rng: np.random.Generator):
    files = image_files(folder)
    windows = []
    while len(windows) < count:
        image = read_gray(files[rng.integers(len(files))])
        side_max = min(image.shape)
        if side_max < size:
            continue
        side = int(rng.integers(size, side_max + 1))
        top = int(rng.integers(image.shape[0] - side + 1))
        left = int(rng.integers(image.shape[1] - side + 1))
        windows.append(_resize(image[top : top + side, left : left + side], size))
    return windows


def load_face_crops(
    data_dir: str | Path | None = None,
    size: int = 24,
    *,
    max_per_class: int | None = 3000,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> DatasetSplits:
    """Face (label 1) versus non-face (label 0) grayscale crops from the shared data.

    Faces: ``faces/cbcl24`` and ``faces/caltech36`` (near-duplicates removed).
    Non-faces: ``nonfaces/cbcl24`` plus random square windows from
    ``backgrounds/umd`` to balance the classes.

    Parameters
    ----------
    data_dir : path, optional
        The shared data folder; defaults to :func:`default_data_dir`.
    size : int, optional
        Side of the resized crops.
    max_per_class : int or None, optional
        Cap on the examples of each class (random subset), to keep training short.
    seed : int, optional
        Seed of the subsets, background windows and split.
    val_fraction, test_fraction : float, optional
        Parts held out for validation and test.

    Returns
    -------
    DatasetSplits

    Notes
    -----
    The CBCL faces are synthetic variations of a few hundred people without identity
    labels, so the same person can fall in both train and test.
    """
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if root is None or not root.is_dir():
        raise ValueError(f"face data folder not found ({root}); pass data_dir or set VJ_DATA")
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    rng = np.random.default_rng(seed)
    faces = [_resize(read_gray(p), size) for p in image_files(root / "faces" / "cbcl24")]
    caltech = [read_gray(p) for p in image_files(root / "faces" / "caltech36")]
    faces += [_resize(image, size) for image in _deduplicate(caltech)]
    nonfaces = [_resize(read_gray(p), size) for p in image_files(root / "nonfaces" / "cbcl24")]
    n_per_class = len(faces) if max_per_class is None else min(len(faces), max_per_class)
    faces = [faces[i] for i in rng.permutation(len(faces))[:n_per_class]]
    if len(nonfaces) >= n_per_class:
        nonfaces = [nonfaces[i] for i in rng.permutation(len(nonfaces))[:n_per_class]]
    else:
        extra = n_per_class - len(nonfaces)
        nonfaces += _background_windows(root / "backgrounds" / "umd", extra, size, rng)
    x = np.stack(faces + nonfaces)[:, None]
    y = np.concatenate([np.ones(len(faces), np.int64), np.zeros(len(nonfaces), np.int64)])
    return _split(x, y, f"faces-{size}", 2, seed, val_fraction, test_fraction)
