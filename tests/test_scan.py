"""The scan kernel against a plain-Python cascade evaluation, window by window."""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from reference import naive_cascade_at, naive_integrals

import vj
from vj.pyramid import opencv_scales, pyramid_layout

ALT = vj.load_cascade("opencv:alt").truncated(3)        # stumps, tilted features
ALT2 = vj.load_cascade("opencv:alt2").truncated(2)      # depth-2 trees


def naive_levels(cascade, img, scale_factor):
    """Each level of the detector's pyramid: scale, size, step and plain integral tables."""
    h, w = img.shape
    layout = pyramid_layout((w, h), opencv_scales((w, h), cascade.window, scale_factor))
    for lv, sc in enumerate(layout.scales):
        lw, lh = (int(v) for v in layout.sizes[lv])
        level = cv2.resize(img, (lw, lh), fx=1 / float(sc), fy=1 / float(sc),
                           interpolation=cv2.INTER_LINEAR_EXACT)
        yield sc, lw, lh, int(layout.ysteps[lv]), naive_integrals(level)


def _naive_candidates(cascade, img, scale_factor):
    """OpenCV's scan loop in plain Python over the same pyramid."""
    ww, wh = cascade.window
    out = []
    for sc, lw, lh, step, (s, sq, t) in naive_levels(cascade, img, scale_factor):
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
