"""Integral images: the Numba kernel against the definitions and against OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from reference import naive_integrals

from vj.integral import integral_image, integral_images, rect_sum, tilted_rect_sum

images = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda hw: arrays(np.uint8, hw, elements=st.integers(0, 255))
)


@settings(max_examples=60, deadline=None)
@given(images)
def test_kernel_matches_definition(img):
    s, sq, t = integral_images(img, tilted=True)
    rs, rsq, rt = naive_integrals(img)
    assert s.dtype == sq.dtype == t.dtype == np.int32
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_array_equal(sq, rsq)
    np.testing.assert_array_equal(t, rt)


@settings(max_examples=30, deadline=None)
@given(images)
def test_matches_opencv_integral3(img):
    s, sq, t = integral_images(img, tilted=True)
    cs, csq, ct = cv2.integral3(img, sdepth=cv2.CV_32S, sqdepth=cv2.CV_64F)
    np.testing.assert_array_equal(s, cs)
    np.testing.assert_array_equal(sq, csq.astype(np.int64))
    np.testing.assert_array_equal(t, ct)


def test_rect_sums_read_back_pixels():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (17, 23), np.uint8)
    s, _, t = integral_images(img, tilted=True)
    assert rect_sum(s, 3, 4, 5, 6) == int(img[4:10, 3:8].sum())
    # The tilted rectangle is a signed combination of four 45-degree triangles
    # (the table's definition); it must cover exactly 2*w*h pixels (Lienhart).
    x, y, w, h = 8, 2, 3, 2
    jj, ii = np.mgrid[: img.shape[0], : img.shape[1]]

    def tri(px, py):
        return ((jj < py) & (np.abs(ii - px + 1) <= py - 1 - jj)).astype(int)

    weight = tri(x, y) - tri(x - h, y + h) - tri(x + w, y + w) + tri(x + w - h, y + w + h)
    assert set(np.unique(weight)) <= {0, 1}
    assert weight.sum() == 2 * w * h
    assert tilted_rect_sum(t, x, y, w, h) == int((img * weight).sum())


def test_squared_sums_wrap_like_opencv_on_big_images():
    img = np.full((700, 700), 255, np.uint8)  # 255**2 * 700**2 > 2**31
    s, sq, _ = integral_images(img)
    total = 255 * 255 * 700 * 700
    assert int(np.uint32(sq[-1, -1].view(np.uint32))) == total % 2**32
    # Window sums stay exact through the wrap.
    window = (int(sq[-1, -1]) - int(sq[-1, -25]) - int(sq[-25, -1]) + int(sq[-25, -25]))
    assert window % 2**32 == 24 * 24 * 255 * 255
    assert rect_sum(s, 600, 600, 50, 50) == 50 * 50 * 255


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((4, 4), np.float32), "uint8"),
        (np.zeros((4, 4, 3), np.uint8), "2-D"),
        (np.zeros(5, np.uint8), "2-D"),
    ],
)
def test_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        integral_image(bad)


def test_non_contiguous_input():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)[:, ::2]
    np.testing.assert_array_equal(integral_image(img), naive_integrals(img)[0])
