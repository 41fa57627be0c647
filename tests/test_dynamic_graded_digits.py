"""Digits at graded corruption levels: split by digit, every level, seeded."""

import numpy as np
import pytest
import torch
from vj_dynamic.bench.graded_digits import LEVELS, corrupt, load_graded_digits


def test_splits_levels_and_determinism():
    data = load_graded_digits(16, seed=0, train_levels=2)
    n_levels = len(LEVELS)
    for x, y, d in (
        (data.x_train, data.y_train, data.difficulty_train),
        (data.x_val, data.y_val, data.difficulty_val),
        (data.x_test, data.y_test, data.difficulty_test),
    ):
        assert x.shape[1:] == (1, 16, 16) and x.dtype == torch.float32
        assert len(x) == len(y) == len(d)
        assert set(np.unique(d)) == set(range(n_levels))
    # validation and test: every digit once at every level
    counts = np.bincount(data.difficulty_test)
    assert (counts == counts[0]).all()
    assert (
        len(data.y_train) == 2 * (1797 - 2 * counts[0])
        or abs(len(data.y_train) / 2 - (1797 - counts[0] - np.bincount(data.difficulty_val)[0]))
        <= 1
    )
    # the labels at each level are the same digits
    for level in range(1, n_levels):
        a = np.sort(data.y_test.numpy()[data.difficulty_test == 0])
        b = np.sort(data.y_test.numpy()[data.difficulty_test == level])
        np.testing.assert_array_equal(a, b)
    assert abs(float(data.x_train.mean())) < 1e-4
    again = load_graded_digits(16, seed=0, train_levels=2)
    assert torch.equal(again.x_test, data.x_test)
    assert not torch.equal(load_graded_digits(16, seed=1).x_test, data.x_test)


def test_harder_levels_change_the_image_more():
    rng = np.random.default_rng(0)
    images = np.zeros((20, 16, 16), np.float32)
    images[:, 4:12, 6:10] = 1.0
    np.testing.assert_array_equal(corrupt(images, 0, rng), images)
    change = [float(np.abs(corrupt(images, level, rng) - images).mean()) for level in range(4)]
    assert change[0] == 0 and change[1] < change[2] < change[3]
    assert (corrupt(images, 2, rng, pool=images[:3]) != images).any()


def test_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="level"):
        corrupt(np.zeros((1, 8, 8)), 4, rng)
    with pytest.raises(ValueError, match="shape"):
        corrupt(np.zeros((8, 8)), 1, rng)
    with pytest.raises(ValueError, match="size"):
        load_graded_digits(4)
    with pytest.raises(ValueError, match="train_levels"):
        load_graded_digits(16, train_levels=5)
    with pytest.raises(ValueError, match="fraction"):
        load_graded_digits(16, val_fraction=0.6, test_fraction=0.5)
