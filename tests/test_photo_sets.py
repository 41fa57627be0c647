"""Photo sets (WIDER-style box lists) and their scoring: vj.photo_sets, vj.photo_scores."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vj.photo_scores import (
    face_groups,
    group_recall,
    score_detections,
    score_threshold_at,
)
from vj.photo_sets import (
    boxes_of,
    face_photometrics,
    read_box_attributes,
    read_box_list,
    read_photo_set,
    tercile_labels,
)

ATTR_HEAD = ("# image_relpath x y w h blur expression illumination invalid occlusion pose "
             "eval24 orig_x orig_y orig_w orig_h  (codes)\n")


def _write_set(root, photos):
    """photos: {name: [(x, y, w, h, scored, blur)]}; images are flat gray with a dark box."""
    (root / "images").mkdir(parents=True)
    every, scored, attrs, order = [], [], [ATTR_HEAD], ["# image_relpath w h\n"]
    for name, boxes in photos.items():
        img = np.full((120, 160), 200, np.uint8)
        rel = f"images/{name}.jpg"
        for x, y, w, h, is_scored, blur in boxes:
            img[int(y):int(y + h), int(x):int(x + w)] = 40 if blur else 120
            line = f"{rel} {x:.2f} {y:.2f} {w:.2f} {h:.2f}\n"
            every.append(line)
            if is_scored:
                scored.append(line)
            attrs.append(f"{rel} {x:.2f} {y:.2f} {w:.2f} {h:.2f} {blur} 0 0 0 0 0 "
                         f"{int(is_scored)} 0 0 1 1\n")
        cv2.imwrite(str(root / rel), img)
        order.append(f"{rel} 160 120\n")
    (root / "annotations.txt").write_text("".join(every))
    (root / "annotations_eval24.txt").write_text("".join(scored))
    (root / "annotations_attrs.txt").write_text("".join(attrs))
    (root / "image_list.txt").write_text("".join(order))


@pytest.fixture
def photo_set(tmp_path):
    _write_set(tmp_path, {
        "b": [(10, 10, 30, 40, True, 0), (80, 20, 30, 40, True, 2), (130, 90, 10, 12, False, 0)],
        "a": [(20, 30, 40, 50, True, 1)],
        "c": [],
    })
    return read_photo_set(tmp_path)


def test_read_photo_set_scoring_and_dont_care(photo_set):
    assert [p.path.name for p in photo_set.photos] == ["b.jpg", "a.jpg", "c.jpg"]  # list order
    b, a, c = photo_set.photos
    np.testing.assert_allclose(b.faces, [[10, 10, 30, 40], [80, 20, 30, 40]])
    np.testing.assert_allclose(b.ignore, [[130, 90, 10, 12]])
    assert a.ignore.shape == (0, 4) and c.faces.shape == (0, 4)
    assert b.attributes["blur"].tolist() == [0, 2]
    assert photo_set.n_faces == 3


def test_subsets_halve_the_set(photo_set):
    assert [p.path.name for p in photo_set.subset("even").photos] == ["b.jpg", "c.jpg"]
    assert [p.path.name for p in photo_set.subset("odd").photos] == ["a.jpg"]
    assert len(photo_set.subset("all", max_photos=2)) == 2
    with pytest.raises(ValueError, match="unknown subset"):
        photo_set.subset("half")


def test_bad_lists_are_named(tmp_path, photo_set):
    bad = tmp_path / "bad.txt"
    bad.write_text("images/a.jpg 1 2 three 4\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        read_box_list(bad)
    bad.write_text("images/a.jpg 1 2 0 4\n")
    with pytest.raises(ValueError, match="w, h > 0"):
        read_box_list(bad)
    (tmp_path / "annotations_eval24.txt").write_text("images/a.jpg 1.00 2.00 3.00 4.00\n")
    with pytest.raises(ValueError, match="not in annotations.txt"):
        read_photo_set(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_photo_set(tmp_path / "nowhere")


def test_attributes_need_their_columns(tmp_path):
    f = tmp_path / "attrs.txt"
    f.write_text("# image x y w h blur\nimages/a.jpg 1 2 3 4 0\n")
    with pytest.raises(ValueError, match="lacks the attribute columns"):
        read_box_attributes(f)


def test_photometrics_and_terciles():
    img = np.zeros((10, 10), np.uint8)
    img[:, 5:] = 100
    stats = face_photometrics(img, [[0, 0, 10, 10], [5, 0, 5, 5], [20, 20, 3, 3]])
    np.testing.assert_allclose(stats[:2], [[50, 50], [100, 0]])
    assert np.isnan(stats[2]).all()
    labels, edges = tercile_labels(np.arange(9.0))
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert edges.shape == (2,)


def test_scores_use_centre_rule_and_dont_care(photo_set):
    dets = [
        # b: a loose box around the first face (IoU small, centre close), one on the
        # don't-care box, one false positive.
        (np.array([[5, 8, 42, 42], [128, 88, 14, 14], [0, 80, 30, 30]]), np.array([3., 2, 1])),
        (np.zeros((0, 4)), np.zeros(0)),                  # a: missed
        (np.array([[50, 50, 30, 30]]), np.array([5.0])),  # c: a false positive, best score
    ]
    r = score_detections(photo_set, dets, budgets=(0, 1, 2))
    assert r["faces"] == 3 and r["detections"] == 3 and r["false_positives"] == 2
    assert r["rate_at"] == {0: 0.0, 1: pytest.approx(1 / 3), 2: pytest.approx(1 / 3)}
    assert score_threshold_at(photo_set, dets, 1) == 3.0
    assert score_threshold_at(photo_set, dets, 0) == float("inf")
    groups = face_groups(photo_set)
    labels, names = groups["blur"]
    assert labels.tolist() == [0, 2, 1] and names[0] == "clear"
    recall = group_recall(photo_set, dets, labels, 3)
    assert recall == [(1, 1.0), (1, 0.0), (1, 0.0)]
    assert group_recall(photo_set, dets, labels, 3, threshold=4.0)[0] == (1, 0.0)
    assert set(groups) >= {"brightness", "contrast", "size", "illumination", "occlusion"}
    assert boxes_of([("1", "2", "3", "4")]).tolist() == [[1, 2, 3, 4]]
