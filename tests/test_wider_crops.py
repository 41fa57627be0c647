"""Verifier crops from real faces in context (vj_dynamic.face.wider_crops, sources)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

pytest.importorskip("torch")

from vj_dynamic.face.crop_sets import CropSet  # noqa: E402
from vj_dynamic.face.crops import CROP_SIZE  # noqa: E402
from vj_dynamic.face.sources import SPLITS, split_sources  # noqa: E402
from vj_dynamic.face.wider_crops import (  # noqa: E402
    augmented_copies,
    wider_positives,
    wider_windows,
)

import vj  # noqa: E402
from vj.wider_faces import WiderFace, photo_key  # noqa: E402


@pytest.fixture(scope="module")
def astronaut():
    gray = cv2.cvtColor(skimage.data.astronaut()[..., ::-1], cv2.COLOR_BGR2GRAY)
    return WiderFace(gray, np.array([190.0, 78, 72, 90]), "images/x/astro_f000.jpg")


def test_positives_and_windows_are_faces(astronaut):
    rng = np.random.default_rng(0)
    pos = wider_positives([astronaut], rng, per_face=3)
    assert pos.crops.shape == (3, CROP_SIZE, CROP_SIZE) and pos.labels.tolist() == [1, 1, 1]
    assert set(pos.sources) == {"wider"}
    det = vj.CascadeDetector(vj.load_cascade("frontalface").truncated(10))
    win = wider_windows([astronaut], [det], rng, max_per_face=4)
    assert 1 <= len(win) <= 4 and win.labels.all() and set(win.sources) == {"wider_win"}
    # Only windows on the face: none far from it.
    flat = WiderFace(np.full((200, 200), 100, np.uint8), np.array([50.0, 50, 60, 70]), "f.jpg")
    assert len(wider_windows([flat], [det], rng)) == 0


def test_augmented_copies_take_the_same_share_of_each_class():
    rng = np.random.default_rng(1)
    crops = CropSet(rng.integers(0, 256, (50, CROP_SIZE, CROP_SIZE), dtype=np.uint8),
                    np.r_[np.ones(20, np.int64), np.zeros(30, np.int64)])
    aug = augmented_copies(crops, 0.5, rng)
    assert int(aug.labels.sum()) == 10 and int((aug.labels == 0).sum()) == 15
    assert set(aug.sources) == {"augmented"}
    with pytest.raises(ValueError, match="share"):
        augmented_copies(crops, 1.5, rng)


def test_split_keeps_a_photo_in_one_part(tmp_path):
    from vj.image_sources import default_data_dir

    root = default_data_dir()
    if root is None or not (root / "faces" / "wider_train").is_dir():
        pytest.skip("shared data with faces/wider_train not available")
    split = split_sources(root)
    seen: dict[str, str] = {}
    for part in SPLITS:
        for rel in split.wider[part]:
            assert seen.setdefault(photo_key(rel), part) == part
    counts = split.counts()["wider"]
    assert min(counts.values()) > 0.1 * sum(counts.values())
