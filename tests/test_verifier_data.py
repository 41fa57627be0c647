"""Verifier data: image-level split, jitter, scenes, matching and detection-rate curves."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from vj_dynamic.face.crop_sets import CropSet, caltech_positives, cbcl_negatives
from vj_dynamic.face.crops import CROP_SIZE
from vj_dynamic.face.scenes import Scene, make_scenes
from vj_dynamic.face.sources import SPLITS, face_jitter, split_sources

from vj.metrics import (
    box_iou,
    detection_rate_at,
    detection_rate_curve,
    false_positives_at,
    match_detections,
)


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory) -> Path:
    """A miniature shared-data folder: the real layout, random images."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)

    def write(path: Path, shape) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, shape, dtype=np.uint8))

    for i in range(60):
        write(root / "faces" / "caltech36" / f"c{i:03d}.png", (36, 36))
    # Two copies of one crop: they must end up as one file in one part.
    copy = cv2.imread(str(root / "faces" / "caltech36" / "c000.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(root / "faces" / "caltech36" / "c999.png"), copy)
    for p in range(1, 21):
        for k in range(1, 4):
            write(root / "orl" / f"s{p}" / f"{k}.pgm", (112, 92))
    (root / "orl" / "s1" / "notes.jpg").write_bytes(b"not an ORL image")
    for i in range(40):
        write(root / "backgrounds" / "umd" / f"b{i:02d}.jpg", (120, 160))
    for i in range(5):
        write(root / "backgrounds" / "sun" / f"s{i}.jpg", (100, 100))
    for i in range(30):
        write(root / "nonfaces" / "cbcl24" / f"n{i:02d}.png", (24, 24))
    return root


def test_split_is_by_image_and_person(fake_data):
    split = split_sources(fake_data, fractions=(0.2, 0.2), seed=3)
    for source in ("caltech", "orl", "backgrounds", "nonfaces"):
        parts = getattr(split, source)
        assert set(parts) == set(SPLITS)
        names = [set(map(str, parts[p])) for p in SPLITS]
        assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
        assert all(parts[p] for p in SPLITS), source
    persons = {p: {f.parent.name for f in split.orl[p]} for p in SPLITS}
    assert not (persons["train"] & persons["tune"] or persons["train"] & persons["eval"])
    assert sum(len(v) for v in split.orl.values()) == 60  # ORL .pgm only
    caltech = [f.name for p in SPLITS for f in split.caltech[p]]
    assert len(caltech) == 60 and ("c000.png" in caltech) != ("c999.png" in caltech)
    assert split.counts()["backgrounds"]["train"] == len(split.backgrounds["train"])
    again = split_sources(fake_data, fractions=(0.2, 0.2), seed=3)
    assert again.caltech == split.caltech and again.orl == split.orl


def test_split_rejects_bad_arguments(fake_data, tmp_path):
    with pytest.raises(ValueError, match="fractions"):
        split_sources(fake_data, fractions=(0.6, 0.5))
    with pytest.raises(ValueError, match="not found"):
        split_sources(tmp_path / "missing")


def test_box_iou():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0]])


def test_face_jitter_spread():
    boxes = face_jitter((100, 100, 50, 50), 20000, np.random.default_rng(0))
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    assert np.all(boxes[:, 2] == boxes[:, 3])
    np.testing.assert_allclose(centre.mean(axis=0), [125, 125], atol=0.2)
    assert 2.0 < centre[:, 0].std() < 3.0  # ~0.055 box widths, truncated
    assert np.all(np.abs(centre - 125) <= 2 * 0.055 * 50 + 1e-9)


def test_caltech_positives_and_cbcl_negatives(fake_data):
    split = split_sources(fake_data)
    files = split.caltech["train"][:5]
    pos = caltech_positives(files, np.random.default_rng(0), per_face=3)
    assert pos.crops.shape == (15, CROP_SIZE, CROP_SIZE) and np.all(pos.labels == 1)
    neg = cbcl_negatives(split.nonfaces["train"][:4])
    assert neg.crops.shape == (4, CROP_SIZE, CROP_SIZE) and np.all(neg.labels == 0)
    both = CropSet.concatenate([pos, neg])
    assert both.counts() == {"caltech/face": 15, "cbcl/nonface": 4}
    with pytest.raises(ValueError, match="same length"):
        CropSet(pos.crops, pos.labels[:3], pos.sources)


def test_scenes_paste_faces_inside_without_overlap(fake_data):
    split = split_sources(fake_data)
    orl = [(np.full((112, 92), 90, np.uint8), np.array([6, 23, 78, 78]))]
    scenes = make_scenes(split.backgrounds["eval"], split.caltech["eval"], orl, 6,
                         np.random.default_rng(1), size=(320, 240), faces_per_scene=(2, 5))
    assert len(scenes) == 6
    for scene in scenes:
        assert scene.image.shape == (240, 320) and scene.image.dtype == np.uint8
        assert 1 <= len(scene.faces) <= 5
        f = scene.faces
        assert np.all(f[:, 0] >= 0) and np.all(f[:, 1] >= 0)
        assert np.all(f[:, 0] + f[:, 2] <= 320) and np.all(f[:, 1] + f[:, 3] <= 240)
        iou = box_iou(f, f)
        assert np.all(iou[~np.eye(len(f), dtype=bool)] == 0)
    again = make_scenes(split.backgrounds["eval"], split.caltech["eval"], orl, 6,
                        np.random.default_rng(1), size=(320, 240), faces_per_scene=(2, 5))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(scenes, again, strict=True))


def test_matching_counts_duplicates_as_false_positives():
    scene = Scene(np.zeros((100, 100), np.uint8), np.array([[10, 10, 20, 20], [60, 60, 20, 20]]))
    boxes = np.array([[10, 10, 20, 20], [11, 11, 20, 20], [60, 62, 20, 20], [40, 40, 10, 10]])
    scores = np.array([5.0, 9.0, 3.0, 4.0])
    s, tp, n = match_detections([scene.faces], [(boxes, scores)])
    assert n == 2
    # The higher-scored of the two overlapping boxes claims the face.
    np.testing.assert_array_equal(tp, [False, True, True, False])
    np.testing.assert_array_equal(s, scores)


def test_detection_rate_curve_and_lookups():
    scores = np.array([9.0, 8.0, 8.0, 7.0, 5.0, 1.0])
    tp = np.array([True, False, True, True, False, True])
    fp, rate = detection_rate_curve(scores, tp, 5)
    # Ties (8.0) enter together: no threshold keeps one without the other.
    np.testing.assert_array_equal(fp, [0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(rate, [0, 0.2, 0.4, 0.6, 0.6, 0.8])
    assert detection_rate_at(scores, tp, 5, 0) == pytest.approx(0.2)
    assert detection_rate_at(scores, tp, 5, 1) == pytest.approx(0.6)
    assert false_positives_at(scores, tp, 5, 0.6) == 1
    assert false_positives_at(scores, tp, 5, 0.8) == 2
    assert false_positives_at(scores, tp, 5, 1.0) is None
    with pytest.raises(ValueError, match="face"):
        detection_rate_curve(scores, tp, 0)
