"""Stage margins of accepted windows (vj.scan_margins) against plain per-window evaluation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import naive_margins_at
from test_scan import ALT, ALT2, blobby_images, naive_levels

import vj


def _naive_margins(cascade, img, scale_factor):
    """{box: margins of every stage} for each window that passes, by plain evaluation."""
    ww, wh = cascade.window
    out = {}
    for sc, lw, lh, step, (s, sq, t) in naive_levels(cascade, img, scale_factor):
        for y in range(0, max(lh + 1 - wh, 0), step):
            x = 0
            while x < lw + 1 - ww:
                m = naive_margins_at(cascade, s, sq, t, x, y)
                if m is not None and min(m) >= 0:
                    box = tuple(int(np.rint(np.float32(v) * sc)) for v in (x, y, ww, wh))
                    out.setdefault(box, []).append(m)
                if m is not None and m[0] < 0:  # OpenCV skips the next window
                    x += step
                x += step
    return out


def _check(cascade, img, sf, k):
    boxes, margins = vj.load(cascade).candidates(img, scale_factor=sf, margin_stages=k)
    assert margins.shape == (len(boxes), k) and margins.dtype == np.float64
    expected = _naive_margins(cascade, img, sf)
    assert sorted(map(tuple, boxes.tolist())) == sorted(
        b for b, ms in expected.items() for _ in ms)
    for box, m in zip(map(tuple, boxes.tolist()), margins, strict=True):
        # Exact sums (the kernel's float64 additions are exact for these cascades).
        assert any(np.array_equal(m, np.asarray(e)[-k:]) for e in expected[box])
        assert (m >= 0).all()


@settings(max_examples=12, deadline=None)
@given(blobby_images(), st.sampled_from([1.1, 1.25]), st.integers(1, 3))
def test_stump_margins_match_plain_evaluation(img, sf, k):
    _check(ALT, img, sf, k)


@settings(max_examples=12, deadline=None)
@given(blobby_images(), st.integers(1, 2))
def test_tree_margins_match_plain_evaluation(img, k):
    _check(ALT2, img, 1.2, k)


def test_margins_on_a_photo_are_levelweights_of_passing_windows(sample_images):
    det = vj.load("frontalface")
    img = sample_images["astronaut"] if "astronaut" in sample_images else next(
        iter(sample_images.values()))
    gray = vj.detector.to_gray(img)
    plain = det.candidates(gray, 1.2)
    boxes, margins = det.candidates(gray, 1.2, margin_stages=det.cascade.n_stages)
    np.testing.assert_array_equal(boxes, plain)
    assert len(boxes) > 0 and (margins >= 0).all()
    # The last column alone is the last column of all of them.
    _, last = det.candidates(gray, 1.2, margin_stages=1)
    np.testing.assert_array_equal(last[:, 0], margins[:, -1])


def test_margin_stages_is_checked():
    det = vj.load(ALT)
    img = np.zeros((30, 30), np.uint8)
    with pytest.raises(ValueError, match="margin_stages"):
        det.candidates(img, margin_stages=ALT.n_stages + 1)
    with pytest.raises(ValueError, match="margin_stages"):
        det.candidates(img, margin_stages=1.5)
    boxes, margins = det.candidates(np.zeros((10, 10), np.uint8), margin_stages=2)
    assert boxes.shape == (0, 4) and margins.shape == (0, 2)


@pytest.mark.parametrize("scan", ["image", "features"])
def test_every_accepted_window_clears_every_stage(sample_images, scan):
    """Full stage sums agree with the early-stopping scan: no accepted window falls short."""
    det = vj.load("frontalface")
    gray = vj.detector.to_gray(sample_images["astronaut"])
    boxes, margins = det.candidates(gray, 1.2, scan=scan, margin_stages=det.cascade.n_stages)
    assert len(boxes) > 0 and (margins >= 0).all()
