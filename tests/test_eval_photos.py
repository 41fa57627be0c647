"""The real-photo evaluation program (vj_apps.eval_photos, vj_apps.photo_runs)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import skimage.data

pytest.importorskip("torch")

from vj_apps import eval_photos  # noqa: E402
from vj_apps.photo_runs import detections, parse_spec, run_windows  # noqa: E402

from vj.photo_sets import read_photo_set  # noqa: E402


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory):
    """Two photos: the astronaut (her face scored, a don't-care box) and a flat one."""
    root = tmp_path_factory.mktemp("photos")
    (root / "images").mkdir()
    gray = cv2.cvtColor(skimage.data.astronaut()[..., ::-1], cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(root / "images" / "astronaut.jpg"), gray)
    cv2.imwrite(str(root / "images" / "flat.jpg"), np.full((120, 160), 90, np.uint8))
    face = "images/astronaut.jpg 190.00 78.00 72.00 90.00\n"
    (root / "annotations.txt").write_text(face + "images/astronaut.jpg 400.00 400.00 "
                                                 "20.00 24.00\n")
    (root / "annotations_eval24.txt").write_text(face)
    (root / "image_list.txt").write_text("images/astronaut.jpg\nimages/flat.jpg\n")
    return root


def test_parse_spec():
    s = parse_spec("opencv:alt")
    assert (s.kind, s.cascade, s.stages, s.min_neighbors, s.name) == (
        "cascade", "opencv:alt", None, 1, "opencv:alt")
    v = parse_spec("verified:frontalface@8,mn=2,accept=0.3,name=v8", verified_neighbors=3)
    assert (v.kind, v.cascade, v.stages, v.min_neighbors, v.accept, v.name) == (
        "verified", "frontalface", 8, 2, 0.3, "v8")
    assert parse_spec("verified:frontalface", verified_neighbors=4).min_neighbors == 4
    assert parse_spec("opencv:alt").score == "margin"
    assert parse_spec("opencv:alt,score=neighbors").score == "neighbors"
    assert parse_spec("opencv:alt").scan_step() == 1
    assert parse_spec("verified:frontalface,step=3").scan_step() == 3
    for bad in ("opencv:alt,foo=1", "frontalface@x", "verified:@3", "frontalface,mn=-1",
                "verified:frontalface,accept=1.5", "opencv:alt,score=levels",
                "verified:frontalface,score=neighbors", "frontalface,step=0",
                "frontalface,step=x"):
        with pytest.raises(ValueError, match="spec"):
            parse_spec(bad)


def test_run_key_names_what_decides_the_windows():
    """The pipeline's default stages and step are resolved into the key: a changed
    default does not reuse windows cached under the old one."""
    from vj_apps.photo_runs import run_key
    from vj_dynamic.face.pipeline import PROPOSER_STEP, lenient_stages, resolve_cascade

    default = run_key(parse_spec("verified:frontalface"), 1.1, None)
    n = lenient_stages(resolve_cascade("frontalface"))
    assert default == run_key(parse_spec(f"verified:frontalface@{n},step={PROPOSER_STEP}"),
                              1.1, None)
    assert default != run_key(parse_spec(f"verified:frontalface@{n + 1}"), 1.1, None)
    assert default != run_key(parse_spec(f"verified:frontalface,step={PROPOSER_STEP + 1}"),
                              1.1, None)
    assert run_key(parse_spec("frontalface"), 1.1, None) != run_key(
        parse_spec("frontalface,step=2"), 1.1, None)


@pytest.mark.parametrize("score", ["margin", "neighbors"])
def test_cascade_run_groups_as_detect(photo_root, tmp_path, score):
    """Cached windows grouped later give the cascade's own boxes and scores."""
    import vj

    photos = read_photo_set(photo_root)
    paths = [p.path for p in photos.photos]
    spec = parse_spec(f"opencv:default,mn=2,score={score}")
    runs = run_windows(spec, photo_root, paths, tmp_path, workers=1)
    assert sorted(runs[0]) == ["margin", "ms", "shape", "windows"]
    det = vj.load("opencv:default")
    for path, (boxes, scores) in zip(paths, detections(spec, runs), strict=True):
        want_boxes, want_scores = det.detect(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE),
                                             1.1, 2, return_scores=True, score=score)
        np.testing.assert_array_equal(boxes, want_boxes)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-6)


def test_verified_run_groups_as_detect(photo_root, tmp_path):
    """Judged windows grouped later give exactly the pipeline's own detections."""
    from vj_dynamic.face.pipeline import VerifiedDetector

    photos = read_photo_set(photo_root)
    paths = [p.path for p in photos.photos]
    spec = parse_spec("verified:frontalface@12,mn=1")
    runs = run_windows(spec, photo_root, paths, tmp_path, workers=1)
    assert sorted(runs[0]) == ["ms", "probability", "shape", "stage", "windows"]
    got = detections(spec, runs)
    det = VerifiedDetector("frontalface", stages=12)
    for path, (boxes, scores) in zip(paths, got, strict=True):
        want_boxes, want_scores = det.detect(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE),
                                             1.1, 1, return_scores=True)
        np.testing.assert_array_equal(boxes, want_boxes)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5)
    assert len(got[0][0]) >= 1


def test_program_end_to_end_and_cache(photo_root, tmp_path, capsys):
    out, plot, work = tmp_path / "r.json", tmp_path / "r.png", tmp_path / "work"
    argv = ["--data", str(photo_root.parent), "--photos", photo_root.name, "--workers", "1",
            "--workdir", str(work), "--json", str(out), "--plot", str(plot), "--quiet",
            "--budgets", "0", "5", "--detectors", "opencv:default", "frontalface,mn=0,name=ff0"]
    assert eval_photos.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["protocol"]["faces"] == 1 and report["protocol"]["match"] == "centre"
    ocv = report["detectors"]["opencv:default"]
    assert ocv["rate_at"]["5"] == 1.0 and ocv["groups"]["brightness"]
    assert report["detectors"]["ff0"]["false_positives"] > ocv["false_positives"]
    assert plot.stat().st_size > 0
    cached = sorted(p.name for p in work.rglob("*.npz"))
    assert len(cached) == 4  # two photos for each of two scans
    assert eval_photos.main(argv) == 0
    assert json.loads(out.read_text())["detectors"] == report["detectors"]
    assert "| opencv:default |" in capsys.readouterr().out


def test_program_rejects_bad_input(photo_root, capsys):
    assert eval_photos.main(["--data", str(photo_root.parent), "--photos", "nowhere"]) == 2
    assert "not found" in capsys.readouterr().err
    assert eval_photos.main(["--data", str(photo_root.parent), "--photos", photo_root.name,
                             "--detectors", "frontalface", "frontalface"]) == 2
    assert "share a name" in capsys.readouterr().err
