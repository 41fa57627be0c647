"""Bad input gets a clear error or a correct empty result -- never a crash or a hang."""

from __future__ import annotations

import numpy as np
import pytest

import vj


@pytest.fixture(scope="module")
def det():
    return vj.load("opencv:alt2")


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((0, 0), np.uint8), "empty"),
        (np.zeros((10, 0, 3), np.uint8), "empty"),
        (np.zeros((50, 50), np.float32), "uint8"),
        (np.full((50, 50), np.nan), "uint8"),
        (np.zeros((50, 50), np.int64), "uint8"),
        (np.zeros((50, 50, 2), np.uint8), "1, 3 or 4 channels"),
        (np.zeros((2, 50, 50, 3), np.uint8), "2-D"),
        (np.zeros(50, np.uint8), "2-D"),
    ],
)
def test_bad_images(det, image, message):
    with pytest.raises(ValueError, match=message):
        det.detect(image)


@pytest.mark.parametrize("shape", [(1, 1), (1, 500), (19, 19), (20, 19), (500, 1)])
def test_images_smaller_than_the_window_give_nothing(det, shape):
    boxes, scores = det.detect(np.zeros(shape, np.uint8), return_scores=True)
    assert boxes.shape == (0, 4) and boxes.dtype == np.int32
    assert scores.shape == (0,)


def test_exactly_window_sized_image(det):
    assert det.detect(np.zeros((20, 20), np.uint8)).shape == (0, 4)


def test_flat_images_are_rejected_windows_not_errors(det):
    for value in (0, 128, 255):
        assert len(det.detect(np.full((120, 160), value, np.uint8), min_neighbors=0)) == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(scale_factor=1.0), "scale_factor"),
        (dict(scale_factor=0.5), "scale_factor"),
        (dict(scale_factor=float("nan")), "scale_factor"),
        (dict(scale_factor=float("inf")), "scale_factor"),
        (dict(min_neighbors=-1), "min_neighbors"),
        (dict(min_size=(-1, 5)), "min_size"),
        (dict(max_size="big"), "max_size"),
    ],
)
def test_bad_options(det, kwargs, message):
    with pytest.raises(ValueError, match=message):
        det.detect(np.zeros((40, 40), np.uint8), **kwargs)


def test_huge_image_with_large_min_size_is_fast_and_correct(det):
    img = np.zeros((6000, 8000), np.uint8)
    assert det.detect(img, scale_factor=2.0, min_size=(3000, 3000)).shape == (0, 4)


def test_absurd_image_is_refused_not_allocated(det):
    img = np.broadcast_to(np.zeros(1, np.uint8), (40000, 40000))
    with pytest.raises(ValueError, match="GiB"):
        det.detect(img, scale_factor=1.05)


def test_max_size_smaller_than_window_gives_nothing(det):
    assert det.detect(np.zeros((100, 100), np.uint8), max_size=(10, 10)).shape == (0, 4)


def test_wrong_type_to_detector():
    with pytest.raises(TypeError, match="Cascade"):
        vj.CascadeDetector("opencv:default")
