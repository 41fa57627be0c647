"""Photometric augmentation of windows (vj.augment)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vj.augment import Photometric, augment_windows

OFF = Photometric(p_exposure=0, p_gamma=0, p_light=0, p_blur=0, p_lowres=0, p_noise=0,
                  p_jpeg=0)


def _faces(n=16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:24, 0:24]
    base = 120 + 60 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    return np.clip(base[None] + rng.normal(0, 10, (n, 24, 24)), 0, 255).astype(np.uint8)


def test_deterministic_and_input_untouched():
    w = _faces()
    before = w.copy()
    a = augment_windows(w, np.random.default_rng(3))
    b = augment_windows(w, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(w, before)
    assert a.dtype == np.uint8 and a.shape == w.shape
    assert not np.array_equal(a, w)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(6, 30), st.integers(0, 2**31 - 1))
def test_all_off_is_identity(n, side, seed):
    w = np.random.default_rng(seed).integers(0, 256, (n, side, side), dtype=np.uint8)
    np.testing.assert_array_equal(augment_windows(w, np.random.default_rng(seed), OFF), w)


def test_each_degradation_does_what_it_says():
    w = _faces(64)
    rng = np.random.default_rng(0)

    def only(**kw):
        return augment_windows(w, rng, Photometric(**{**OFF.__dict__, **kw}))

    dim = only(p_exposure=1, contrast=(0.3, 0.3), level=(40, 40)).astype(float)
    assert abs(dim.mean() - 40) < 2
    np.testing.assert_allclose(dim.std(axis=(1, 2)), 0.3 * w.std(axis=(1, 2)), rtol=0.1)
    dark = only(p_gamma=1, gamma=(2.0, 2.0))
    assert dark.mean() < 0.8 * w.mean()
    blurred = only(p_blur=1, blur=(1.5, 1.5)).astype(float)
    assert np.abs(np.diff(blurred, axis=2)).mean() < 0.6 * np.abs(np.diff(w.astype(float),
                                                                           axis=2)).mean()
    ramp = only(p_light=1, light=(0.5)).astype(float)
    assert (ramp <= w + 0.5).all() and ramp.mean() < w.mean()
    noisy = only(p_noise=1, noise=(8.0, 8.0)).astype(float)
    assert 6 < (noisy - w).std() < 10
    assert only(p_jpeg=1, jpeg=(10, 10)).shape == w.shape
    small = only(p_lowres=1, lowres=(0.4, 0.4)).astype(float)
    assert np.abs(np.diff(small, axis=1)).mean() < np.abs(np.diff(w.astype(float), axis=1)).mean()


@pytest.mark.parametrize("bad", [dict(p_blur=1.5), dict(gamma=(2.0, 1.0)), dict(light=1.0),
                                 dict(jpeg=(0, 50)), dict(lowres=(0.5, 1.5))])
def test_bad_settings_are_named(bad):
    with pytest.raises(ValueError, match=next(iter(bad)).split("_")[-1]):
        Photometric(**bad)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="uint8"):
        augment_windows(np.zeros((2, 8, 8), np.float32), np.random.default_rng(0))
