"""Offline datasets: digits upsampled, face crops from a data folder."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from vj_dynamic.bench.datasets import default_data_dir, load_digits_upsampled, load_face_crops


def test_digits_splits():
    data = load_digits_upsampled(32, seed=0)
    sizes = [len(data.y_train), len(data.y_val), len(data.y_test)]
    assert sum(sizes) == 1797 and min(sizes) > 300
    assert data.x_train.shape[1:] == (1, 32, 32) and data.x_train.dtype == torch.float32
    assert data.num_classes == 10 and data.in_channels == 1 and data.image_size == 32
    assert abs(float(data.x_train.mean())) < 1e-4 and abs(float(data.x_train.std()) - 1) < 1e-3
    for y in (data.y_train, data.y_val, data.y_test):  # stratified
        assert torch.bincount(y, minlength=10).min() > 0.08 * len(y)
    again = load_digits_upsampled(32, seed=0)
    assert torch.equal(again.x_test, data.x_test)
    other = load_digits_upsampled(32, seed=1)
    assert not torch.equal(other.y_test, data.y_test)


def test_digits_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        load_digits_upsampled(4)
    with pytest.raises(ValueError, match="fraction"):
        load_digits_upsampled(16, val_fraction=0.6, test_fraction=0.5)


def write_folder(root: Path, name: str, count: int, size: int, seed: int) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 256, (size, size), np.uint8))


def test_face_crops_from_a_folder(tmp_path):
    write_folder(tmp_path, "faces/cbcl24", 30, 24, 0)
    write_folder(tmp_path, "faces/caltech36", 20, 36, 1)
    write_folder(tmp_path, "nonfaces/cbcl24", 25, 24, 2)
    write_folder(tmp_path, "backgrounds/umd", 3, 80, 3)
    data = load_face_crops(tmp_path, 16, max_per_class=None, seed=0)
    y = torch.cat([data.y_train, data.y_val, data.y_test])
    assert data.num_classes == 2 and data.x_test.shape[1:] == (1, 16, 16)
    assert int((y == 1).sum()) == 50 and int((y == 0).sum()) == 50  # backgrounds fill the gap
    capped = load_face_crops(tmp_path, 16, max_per_class=20, seed=0)
    assert len(capped.y_train) + len(capped.y_val) + len(capped.y_test) == 40


def test_face_crops_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="missing data folder"):
        load_face_crops(tmp_path)


def test_default_data_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VJ_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("VJ_DATA")
    found = default_data_dir()
    assert found is None or found.name == "data"
