"""OpenCV 4 is the oracle: our scan of its XMLs gives its boxes, on real images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import vj
from vj.models import resolve

CASCADES = ["default", "alt", "alt2", "alt_tree"]


def _real_images(sample_images, shared) -> dict[str, np.ndarray]:
    images = dict(sample_images)
    if shared is not None:
        orl = sorted((shared / "orl").glob("s*/*.pgm"))[::8]
        bgs = sorted((shared / "backgrounds" / "umd").glob("*"))[::300]
        sun = sorted((shared / "backgrounds" / "sun").glob("*"))[::60]
        for p in orl + bgs + sun:
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            if img is not None:
                images[str(p.relative_to(shared))] = img
    return images


@pytest.fixture(scope="module")
def real_images(sample_images):
    from conftest import shared_data_dir

    return _real_images(sample_images, shared_data_dir())


def _as_set(boxes) -> set[tuple[int, ...]]:
    return set(map(tuple, np.asarray(boxes).reshape(-1, 4).tolist()))


@pytest.mark.parametrize("name", CASCADES)
def test_boxes_identical_to_opencv(name, real_images):
    det = vj.load(f"opencv:{name}")
    ref = cv2.CascadeClassifier(str(resolve(f"opencv:{name}")))
    same = total = 0
    mismatched = []
    for key, img in real_images.items():
        ours = _as_set(det.detect(img, scale_factor=1.1, min_neighbors=3))
        theirs = _as_set(ref.detectMultiScale(img, scaleFactor=1.1, minNeighbors=3))
        total += max(len(theirs), len(ours))
        same += len(ours & theirs)
        if ours != theirs:
            mismatched.append(key)
    assert total > 0
    assert same / total >= 0.99, f"{name}: {same}/{total} identical; differing: {mismatched}"


@pytest.mark.parametrize("name", ["default", "alt2"])
def test_raw_candidates_identical_to_opencv(name, sample_images):
    """min_neighbors=0 disables grouping: every raw window must match."""
    det = vj.load(f"opencv:{name}")
    ref = cv2.CascadeClassifier(str(resolve(f"opencv:{name}")))
    for key in ("astronaut", "coffee"):
        img = sample_images[key]
        ours = det.detect(img, scale_factor=1.2, min_neighbors=0)
        theirs = np.asarray(ref.detectMultiScale(img, 1.2, 0)).reshape(-1, 4)
        assert _as_set(ours) == _as_set(theirs), key
        assert len(ours) == len(theirs)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(scale_factor=1.05, min_neighbors=3),
        dict(scale_factor=1.3, min_neighbors=1, min_size=(60, 60)),
        dict(scale_factor=1.2, min_neighbors=5, max_size=(120, 120)),
        dict(scale_factor=1.1, min_neighbors=3, min_size=(80, 80), max_size=(80, 80)),
    ],
)
def test_options_match_opencv(kwargs, sample_images):
    det = vj.load("opencv:default")
    ref = cv2.CascadeClassifier(str(resolve("opencv:default")))
    cv_kwargs = dict(scaleFactor=kwargs["scale_factor"], minNeighbors=kwargs["min_neighbors"])
    if "min_size" in kwargs:
        cv_kwargs["minSize"] = kwargs["min_size"]
    if "max_size" in kwargs:
        cv_kwargs["maxSize"] = kwargs["max_size"]
    for key in ("astronaut", "chelsea"):
        img = sample_images[key]
        assert _as_set(det.detect(img, **kwargs)) == _as_set(
            ref.detectMultiScale(img, **cv_kwargs)
        ), key


def test_neighbor_scores_are_opencv_neighbour_counts(sample_images):
    det = vj.load("opencv:default")
    ref = cv2.CascadeClassifier(str(resolve("opencv:default")))
    img = sample_images["astronaut"]
    boxes, scores = det.detect(img, return_scores=True, score="neighbors")
    theirs, counts = ref.detectMultiScale2(img, 1.1, 3)
    ours = {tuple(b): s for b, s in zip(boxes.tolist(), scores.tolist(), strict=True)}
    cv = {tuple(b): c for b, c in zip(np.asarray(theirs).tolist(), counts.tolist(), strict=True)}
    assert ours == cv
    assert scores.dtype == np.float32


def test_color_input_matches_gray(sample_images):
    import skimage.data

    rgb = skimage.data.astronaut()
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    det = vj.load("opencv:alt2")
    ref = cv2.CascadeClassifier(str(resolve("opencv:alt2")))
    want = _as_set(ref.detectMultiScale(bgr))
    assert want
    assert _as_set(det.detect(bgr)) == want
    assert _as_set(det.detect(bgra)) == want
    # A non-contiguous view (every other column) is handled, not rejected.
    view = bgr[:, ::2]
    assert _as_set(det.detect(view)) == _as_set(ref.detectMultiScale(np.ascontiguousarray(view)))


def test_margin_scores_are_the_best_window_of_each_group(sample_images):
    """Same boxes whatever the score; a box scores its best raw window's summed margins."""
    det = vj.load("opencv:default")
    img = sample_images["astronaut"]
    boxes, scores = det.detect(img, return_scores=True)
    np.testing.assert_array_equal(boxes, det.detect(img, return_scores=True,
                                                    score="neighbors")[0])
    assert scores.dtype == np.float32 and len(boxes) >= 1
    raw, margins = det.candidates(vj.detector.to_gray(img), 1.1,
                                  margin_stages=vj.detector.SCORE_STAGES)
    _, _, labels = vj.grouping.group_rectangles(raw, 3, 0.2, return_labels=True)
    per_window = margins.sum(axis=1)
    for g in range(len(boxes)):
        assert scores[g] == np.float32(per_window[labels == g].max())
    # Every raw window scored on its own with min_neighbors 0.
    _, alone = det.detect(img, min_neighbors=0, return_scores=True)
    np.testing.assert_allclose(np.sort(alone), np.sort(per_window.astype(np.float32)))
    with pytest.raises(ValueError, match="score"):
        det.detect(img, return_scores=True, score="levels")
