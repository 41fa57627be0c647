"""Face crops in context (vj.wider_faces) as cascade positives (vj.positives)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vj.positives import load_positives, merge_groups, wider_views
from vj.wider_faces import (
    WIDER_BOX_SCALE,
    WIDER_BOX_SHIFT,
    detector_box,
    photo_key,
    read_keep_list,
    read_wider_faces,
)


def _face(rng, side=64):
    """A crude face: bright oval, two dark eyes, a dark mouth, on a noisy background."""
    img = rng.normal(90, 25, (side, side)).clip(0, 255).astype(np.uint8)
    c = side // 2
    cv2.ellipse(img, (c, c), (side // 5, side // 4), 0, 0, 360, 200, -1)
    for dx in (-side // 12, side // 12):
        cv2.circle(img, (c + dx, c - side // 14), max(1, side // 28), 30, -1)
    cv2.line(img, (c - side // 14, c + side // 8), (c + side // 14, c + side // 8), 40, 2)
    return img


@pytest.fixture
def crop_folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images" / "ev").mkdir(parents=True)
    lines = []
    for photo in range(12):
        for f in range(2):
            rel = f"images/ev/p{photo}_f{f:03d}.jpg"
            cv2.imwrite(str(tmp_path / rel), _face(rng))
            lines.append(f"{rel} 19.20 16.00 25.60 32.00\n")
    (tmp_path / "annotations.txt").write_text("".join(lines))
    return tmp_path


def test_detector_box_is_the_measured_square():
    x, y, s, s2 = detector_box((10, 20, 16, 25))
    assert s == s2 == pytest.approx(WIDER_BOX_SCALE * 20)
    assert x + s / 2 == pytest.approx(18)
    assert y + s / 2 == pytest.approx(32.5 + WIDER_BOX_SHIFT * 25)
    with pytest.raises(ValueError, match="w, h > 0"):
        detector_box((0, 0, 0, 5))


def test_photo_key_strips_the_face_number():
    assert photo_key("images/a/b_1_23_f004.jpg") == "images/a/b_1_23"
    assert photo_key("images/a/plain.jpg") == "images/a/plain"


def test_read_and_keep(crop_folder, tmp_path):
    faces = read_wider_faces(crop_folder)
    assert len(faces) == 24 and faces[0].image.shape == (64, 64)
    keep = tmp_path / "keep.txt"
    keep.write_text("# frontal\nimages/ev/p0_f000.jpg\n\nimages/ev/p3_f001.jpg 1\n")
    kept = read_wider_faces(crop_folder, read_keep_list(keep))
    assert [f.relpath for f in kept] == ["images/ev/p0_f000.jpg", "images/ev/p3_f001.jpg"]
    with pytest.raises(ValueError, match="not listed"):
        read_wider_faces(crop_folder, {"images/ev/none.jpg"})
    with pytest.raises(FileNotFoundError):
        read_wider_faces(tmp_path / "missing")


def test_views_cut_the_detector_box(crop_folder):
    faces = read_wider_faces(crop_folder)[:3]
    v = wider_views(faces, (24, 24))
    assert v.shape == (3, 1, 24, 24)
    # The face's bright oval fills the window's middle; the eyes are darker than it.
    assert v[:, 0, 10:16, 8:16].mean() > 150 > v[:, 0, 9, 9:15].min()
    assert wider_views(faces, (24, 24), jitter=None).shape == (3, 1, 24, 24)


def test_merge_groups_joins_both_relations():
    a = np.array([0, 0, 2, 3, 4])
    b = np.array([-1, 5, 5, -1, 3])
    assert merge_groups(a, b).tolist() == [0, 0, 0, 3, 4]
    assert merge_groups(a, np.array([-1, -1, -1, 7, 7])).tolist() == [0, 0, 2, 3, 3]
    with pytest.raises(ValueError, match="labels"):
        merge_groups(a, b[:3])


def test_photos_stay_in_one_split_and_augmentation_is_training_only(crop_folder):
    faces = read_wider_faces(crop_folder)
    split = load_positives([], (24, 24), wider=faces, mirror=False, validation_fraction=0.25,
                           calibration_fraction=0.25, duplicate_distance=0.0,
                           group_distance=0.0, seed=1)
    keys = np.array([f.key for f in faces])
    parts = [set(keys[split.source_index[k]]) for k in ("train", "calibration", "validation")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    more = load_positives([], (24, 24), wider=faces, mirror=False, validation_fraction=0.25,
                          calibration_fraction=0.25, duplicate_distance=0.0,
                          group_distance=0.0, augment_copies=2, seed=1)
    assert len(more.calibration) == len(split.calibration)
    assert len(more.validation) == len(split.validation)
    assert len(split.train) < len(more.train) <= 3 * len(split.train)
    np.testing.assert_array_equal(more.train[:len(split.train)], split.train)
    with pytest.raises(ValueError, match="no positives"):
        load_positives([], (24, 24))
    with pytest.raises(ValueError, match="augment_copies"):
        load_positives([], (24, 24), wider=faces, augment_copies=-1)


def test_found_by_takes_faces_a_cascade_sees():
    import skimage.data

    import vj
    from vj.wider_faces import WiderFace, found_by

    gray = cv2.cvtColor(skimage.data.astronaut()[..., ::-1], cv2.COLOR_BGR2GRAY)
    dets = [vj.load("opencv:default")]
    assert found_by(WiderFace(gray, np.array([190.0, 78, 72, 90]), "a_f000.jpg"), dets)
    # The same box on the flat sky above her: nothing accepts it.
    flat = WiderFace(np.full((200, 200), 120, np.uint8), np.array([60.0, 60, 72, 90]), "b.jpg")
    assert not found_by(flat, dets)
    # A box far off the face's size is not the face.
    assert not found_by(WiderFace(gray, np.array([210.0, 100, 30, 36]), "c.jpg"), dets,
                        equalize=False)


def test_aligned_window_is_the_median_accepted_window():
    import skimage.data

    import vj
    from vj.wider_faces import WiderFace, aligned_window

    gray = cv2.cvtColor(skimage.data.astronaut()[..., ::-1], cv2.COLOR_BGR2GRAY)
    det = vj.load("opencv:default")
    face = WiderFace(gray, np.array([190.0, 78, 72, 90]), "a_f000.jpg")
    x, y, s, s2 = aligned_window(face, [det], equalize=False)
    assert s == s2
    # The median, in centre and side, of the raw windows that fit the mapped box.
    bx, by, bs, _ = detector_box(face.box)
    raw = det.candidates(gray, 1.1).astype(float)
    rc = raw[:, :2] + raw[:, 2:] / 2
    fit = ((np.hypot(rc[:, 0] - bx - bs / 2, rc[:, 1] - by - bs / 2) < 0.3 * bs)
           & (raw[:, 2] > 0.7 * bs) & (raw[:, 2] < 1.45 * bs))
    assert fit.sum() >= 3
    assert s == pytest.approx(np.median(raw[fit, 2]))
    assert x + s / 2 == pytest.approx(np.median(rc[fit, 0]))
    assert y + s / 2 == pytest.approx(np.median(rc[fit, 1]))
    flat = WiderFace(np.full((200, 200), 120, np.uint8), np.array([60.0, 60, 72, 90]), "b.jpg")
    assert aligned_window(flat, [det]) is None


def test_keep_list_windows_reach_the_views(crop_folder, tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("# aligned\nimages/ev/p0_f000.jpg 8 6 40 40\nimages/ev/p1_f000.jpg\n")
    listed = read_keep_list(keep)
    assert listed == {"images/ev/p0_f000.jpg": (8.0, 6.0, 40.0, 40.0),
                      "images/ev/p1_f000.jpg": None}
    a, b = read_wider_faces(crop_folder, listed)
    assert a.window == (8.0, 6.0, 40.0, 40.0)
    assert b.window == detector_box(b.box)
    # The view is the listed window, resampled: not the mapped WIDER box.
    ref = cv2.resize(a.image[6:46, 8:48], (24, 24), interpolation=cv2.INTER_AREA)
    view = wider_views([a], (24, 24))[0, 0]
    assert np.abs(view.astype(int) - ref).mean() < 6
    assert np.abs(wider_views([b], (24, 24))[0, 0].astype(int) - ref).mean() > 6
    keep.write_text("images/ev/p0_f000.jpg 8 6 0 40\n")
    with pytest.raises(ValueError, match="w, h > 0"):
        read_keep_list(keep)
    keep.write_text("images/ev/p0_f000.jpg 8 6 x 40\n")
    with pytest.raises(ValueError, match="four numbers"):
        read_keep_list(keep)
