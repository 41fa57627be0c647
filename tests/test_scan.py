"""The scan kernel against a plain-Python cascade evaluation, window by window."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from reference import naive_cascade_at, naive_integrals

import vj
from vj.pyramid import opencv_scales, pyramid_layout

ALT = vj.load_cascade("opencv:alt").truncated(3)        # stumps, tilted features
ALT2 = vj.load_cascade("opencv:alt2").truncated(2)      # depth-2 trees


def naive_levels(cascade, img, scale_factor, min_step=1):
    """Each level of the detector's pyramid: scale, size, step and plain integral tables.

    The step is OpenCV's (2 below scale 2, else 1), or ``min_step`` where larger.
    """
    h, w = img.shape
    layout = pyramid_layout((w, h), opencv_scales((w, h), cascade.window, scale_factor))
    for lv, sc in enumerate(layout.scales):
        lw, lh = (int(v) for v in layout.sizes[lv])
        level = cv2.resize(img, (lw, lh), fx=1 / float(sc), fy=1 / float(sc),
                           interpolation=cv2.INTER_LINEAR_EXACT)
        step = max(2 if sc < 2 else 1, min_step)
        yield sc, lw, lh, step, naive_integrals(level)


def _naive_candidates(cascade, img, scale_factor, min_step=1):
    """OpenCV's scan loop in plain Python over the same pyramid."""
    ww, wh = cascade.window
    out = []
    for sc, lw, lh, step, (s, sq, t) in naive_levels(cascade, img, scale_factor, min_step):
        for y in range(0, max(lh + 1 - wh, 0), step):
            x = 0
            while x < lw + 1 - ww:
                res = naive_cascade_at(cascade, s, sq, t, x, y)
                if res == cascade.n_stages:
                    out.append(tuple(int(np.rint(np.float32(v) * sc)) for v in (x, y, ww, wh)))
                if res == 0:
                    x += step
                x += step
    return out


@st.composite
def blobby_images(draw):
    """Small images with structure (so some windows pass the first stages)."""
    h, w = draw(st.integers(20, 34)), draw(st.integers(20, 40))
    base = draw(arrays(np.uint8, (4, 4), elements=st.integers(0, 255)))
    img = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
    noise = draw(arrays(np.int16, (h, w), elements=st.integers(-20, 20)))
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


@settings(max_examples=12, deadline=None)
@given(blobby_images(), st.sampled_from([1.1, 1.25]))
def test_stump_cascade_matches_plain_evaluation(img, sf):
    ours = vj.load(ALT).candidates(img, scale_factor=sf)
    assert sorted(map(tuple, ours.tolist())) == sorted(_naive_candidates(ALT, img, sf))


@settings(max_examples=12, deadline=None)
@given(blobby_images())
def test_tree_cascade_matches_plain_evaluation(img):
    ours = vj.load(ALT2).candidates(img, scale_factor=1.2)
    assert sorted(map(tuple, ours.tolist())) == sorted(_naive_candidates(ALT2, img, 1.2))


@settings(max_examples=12, deadline=None)
@given(blobby_images(), st.sampled_from([2, 3]), st.sampled_from([ALT, ALT2]))
def test_min_step_matches_plain_evaluation(img, min_step, cascade):
    ours = vj.CascadeDetector(cascade, min_step=min_step).candidates(img, scale_factor=1.1)
    want = _naive_candidates(cascade, img, 1.1, min_step)
    assert sorted(map(tuple, ours.tolist())) == sorted(want)


def test_min_step_2_scans_a_quarter_of_the_windows_from_scale_2(sample_images):
    """From 48 px (scale 2 of a 24-pixel window) on, OpenCV steps 1; min_step 2 steps 2."""
    cascade = vj.load_cascade("opencv:default").truncated(6)
    img = sample_images["astronaut"]
    dense, coarse = vj.CascadeDetector(cascade), vj.CascadeDetector(cascade, min_step=2)
    a = dense.candidates(img, 1.2, 48)
    b = coarse.candidates(img, 1.2, 48)
    assert 0 < len(b) < len(a)
    ratio = coarse.last_stats.windows / dense.last_stats.windows
    assert 0.2 < ratio < 0.3
    assert "min_step=2" in repr(coarse)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="min_step"):
            vj.CascadeDetector(cascade, min_step=bad)


def test_some_windows_pass_in_the_property_inputs():
    """Guard against a vacuous property test: the inputs do produce candidates."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(10):
        base = rng.integers(0, 256, (4, 4), dtype=np.uint8)
        img = cv2.resize(base, (36, 30), interpolation=cv2.INTER_LINEAR)
        hits += len(vj.load(ALT).candidates(img, scale_factor=1.1))
    assert hits > 0


def test_stats_count_windows_and_features(sample_images):
    det = vj.load("opencv:default")
    det.detect(sample_images["coins"])
    st_ = det.last_stats
    assert st_.windows > 10_000 and st_.levels > 5
    assert 1 <= st_.features_per_window < 200
    assert st_.features > st_.windows
