"""groupRectangles: the Numba kernel against a plain port and against OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import naive_group_rectangles

from vj.grouping import group_rectangles


@st.composite
def clustered_rects(draw):
    """Rectangles around a few centres, so that groups of all sizes occur."""
    n_centres = draw(st.integers(1, 5))
    out = []
    for _ in range(n_centres):
        cx, cy = draw(st.integers(0, 200)), draw(st.integers(0, 200))
        size = draw(st.integers(8, 80))
        for _ in range(draw(st.integers(1, 8))):
            jitter = draw(st.tuples(*[st.integers(-6, 6)] * 3))
            s = max(1, size + jitter[2])
            out.append((cx + jitter[0], cy + jitter[1], s, s))
    return np.array(out, np.int32)


@settings(max_examples=150, deadline=None)
@given(clustered_rects(), st.integers(0, 5))
def test_kernel_matches_reference(rects, threshold):
    boxes, counts = group_rectangles(rects, threshold)
    ref_boxes, ref_counts = naive_group_rectangles(rects, threshold)
    assert boxes.tolist() == ref_boxes
    assert counts.tolist() == ref_counts


@settings(max_examples=150, deadline=None)
@given(clustered_rects(), st.integers(1, 5))
def test_matches_opencv(rects, threshold):
    boxes, counts = group_rectangles(rects, threshold)
    cv_boxes, cv_weights = cv2.groupRectangles(rects.tolist(), threshold, 0.2)
    ours = sorted(zip(map(tuple, boxes.tolist()), counts.tolist(), strict=True))
    theirs = sorted(zip(map(tuple, np.asarray(cv_boxes).reshape(-1, 4).tolist()),
                        np.asarray(cv_weights).ravel().tolist(), strict=True))
    assert ours == theirs


def test_small_group_inside_big_one_is_dropped():
    big = [(100, 100, 100, 100)] * 6
    small = [(130, 130, 30, 30)] * 2
    boxes, counts = group_rectangles(np.array(big + small), 1)
    assert boxes.tolist() == [[100, 100, 100, 100]]
    assert counts.tolist() == [6]


def test_threshold_zero_returns_input():
    rects = np.array([[1, 2, 3, 4], [1, 2, 3, 4]])
    boxes, counts = group_rectangles(rects, 0)
    assert boxes.tolist() == rects.tolist() and counts.tolist() == [1, 1]


@pytest.mark.parametrize("bad", [np.zeros((3, 5)), np.zeros(4)])
def test_bad_shape(bad):
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        group_rectangles(bad)


def test_negative_threshold():
    with pytest.raises(ValueError, match="min_neighbors"):
        group_rectangles(np.zeros((1, 4)), -1)


def test_group_labels_name_each_rectangles_group():
    """``return_labels``: averaging each labelled group's members gives its box."""
    rng = np.random.default_rng(3)
    centres = rng.integers(20, 200, size=(6, 2))
    rects = []
    for cx, cy in centres:
        for _ in range(int(rng.integers(1, 7))):
            s = int(rng.integers(30, 34))
            rects.append((cx + rng.integers(-2, 3), cy + rng.integers(-2, 3), s, s))
    rects = np.array(rects, np.int64)
    for k in (0, 1, 3):
        boxes, counts, labels = group_rectangles(rects, k, 0.2, return_labels=True)
        plain = group_rectangles(rects, k, 0.2)
        np.testing.assert_array_equal(boxes, plain[0])
        np.testing.assert_array_equal(counts, plain[1])
        assert labels.shape == (len(rects),)
        assert labels.min() >= -1 and labels.max() < len(boxes)
        for g in range(len(boxes)):
            members = rects[labels == g]
            assert len(members) == counts[g]
            mean = np.rint(members.sum(0).astype(np.float32)
                           * (np.float32(1) / np.float32(len(members))))
            np.testing.assert_array_equal(boxes[g], mean.astype(np.int32))


def test_group_max_takes_the_best_member():
    from vj.grouping import group_max

    labels = np.array([0, 2, 0, -1, 2, 2])
    values = np.array([1.0, -3.0, 4.0, 99.0, -1.0, -2.0])
    np.testing.assert_array_equal(group_max(labels, 4, values), [4.0, -np.inf, -1.0, -np.inf])
    with pytest.raises(ValueError, match="same length"):
        group_max(labels, 3, values[:2])
