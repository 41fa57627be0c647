"""The library and the programs under OpenCV 5 semantics.

OpenCV 5 has no ``cv2.CascadeClassifier`` and ships no Haar XMLs (its
``cv2.data.haarcascades`` folder is empty, or the attribute is gone). The fixtures hide
both from the OpenCV 4 that the tests install; CI also runs the programs against a real
OpenCV 5 (see ``.ci/run``).
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import skimage.data
from vj_apps import detect as detect_app
from vj_apps import models as models_app
from vj_apps import train_cascade, train_verifier
from vj_apps.bench import cli as bench_cli
from vj_apps.webcam import cli as webcam
from vj_apps.webcam.demo import demo_frame

import vj
from vj.model_cache import FETCH_COMMAND, opencv_install_dir
from vj.models import load_default_cascade


def _hide_opencv4(monkeypatch, tmp_path, empty_folder: bool = False):
    monkeypatch.delattr(cv2, "CascadeClassifier", raising=False)
    if empty_folder:  # what the opencv-python 5 wheel has
        (tmp_path / "cv2data").mkdir()
        monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path / "cv2data") + os.sep)
    else:
        monkeypatch.delattr(cv2.data, "haarcascades", raising=False)
    monkeypatch.setenv("VJ_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "opencv"


@pytest.fixture
def opencv5(monkeypatch, tmp_path):
    """OpenCV 5 as far as vj can tell; yields the (empty) OpenCV folder of the model cache."""
    return _hide_opencv4(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """A 640x480 frame of the built-in demo with several faces."""
    return cv2.cvtColor(demo_frame(0), cv2.COLOR_BGR2GRAY)


def _cache_frontalface_as(folder, filename: str) -> None:
    """Store the project's model as an OpenCV XML in the cache (the real XMLs need OpenCV 4)."""
    folder.mkdir(parents=True, exist_ok=True)
    vj.save(vj.load_cascade("frontalface"), folder / filename)


def test_the_fixture_hides_opencv4(opencv5):
    assert not hasattr(cv2, "CascadeClassifier")
    assert opencv_install_dir() is None


def test_builtin_model_detects_faces(opencv5, scene):
    cascade, name, notice = load_default_cascade()
    assert (name, notice) == ("frontalface", None)
    assert len(vj.load(cascade).detect(scene)) >= 3


@pytest.mark.parametrize("empty_folder", [False, True], ids=["no-attribute", "empty-folder"])
def test_opencv_names_come_from_the_cache_or_name_the_fix(monkeypatch, tmp_path, scene,
                                                          empty_folder):
    cache = _hide_opencv4(monkeypatch, tmp_path, empty_folder)
    with pytest.raises(FileNotFoundError, match=f"run `{FETCH_COMMAND}`"):
        vj.load("opencv:default")
    _cache_frontalface_as(cache, "haarcascade_frontalface_default.xml")
    ours = vj.load("frontalface").detect(scene)
    assert len(ours) >= 3
    np.testing.assert_array_equal(vj.load("opencv:default").detect(scene), ours)
    with pytest.raises(FileNotFoundError, match=f"'opencv:smile' .* run `{FETCH_COMMAND}`"):
        vj.load("opencv:smile")


def test_default_model_fallback_names_the_fix(opencv5, monkeypatch, tmp_path):
    _cache_frontalface_as(tmp_path / "staged", "haarcascade_frontalface_default.xml")
    monkeypatch.setenv("VJ_MODELS", str(tmp_path / "no-models"))
    with pytest.raises(FileNotFoundError, match=f"frontalface.*fallback.*{FETCH_COMMAND}"):
        load_default_cascade()
    opencv5.parent.mkdir(parents=True)
    (tmp_path / "staged").rename(opencv5)
    _, name, notice = load_default_cascade()
    assert name == "opencv:default" and "frontalface" in notice


def test_a_tiny_cascade_trains(opencv5, tmp_path):
    pos, bg, out = tmp_path / "pos", tmp_path / "bg", tmp_path / "out"
    pos.mkdir()
    bg.mkdir()
    for i, face in enumerate(skimage.data.lfw_subset()[:60]):
        cv2.imwrite(str(pos / f"{i:02d}.png"), (face * 255).round().astype(np.uint8))
    for name in ("camera", "coins", "page", "moon", "text", "brick"):
        cv2.imwrite(str(bg / f"{name}.png"), getattr(skimage.data, name)())
    argv = ["-data", str(out), "--pos", str(pos), "--bg", str(bg), "-w", "20", "-h", "20",
            "-numStages", "2", "-numNeg", "80", "-maxWeakCount", "8", "--feature-fraction",
            "0.1", "--checkpoint-every", "0", "--xml", "--quiet"]
    assert train_cascade.main(argv) == 0
    cascade = vj.load_cascade(out / "cascade.json")
    assert cascade.n_stages >= 1 and vj.load_cascade(out / "cascade.xml") == cascade


def test_programs_run_and_name_the_fix_for_what_is_missing(opencv5, scene, tmp_path, capsys):
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), scene)
    assert detect_app.main([str(image), "--json", str(tmp_path / "d.json")]) == 0
    assert len(json.loads((tmp_path / "d.json").read_text())[str(image)]) >= 3
    assert webcam.main(["--source", "demo", "--no-window", "--max-frames", "2"]) == 0
    capsys.readouterr()
    failing = [
        (detect_app.main, [str(image), "--json", str(tmp_path / "x.json"),
                           "--cascade", "opencv:smile"]),
        (webcam.main, ["--source", "demo", "--no-window", "--cascade", "opencv:eye"]),
        (train_verifier.main, ["--data", str(tmp_path), "--workdir", str(tmp_path / "w")]),
    ]
    for main, argv in failing:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert FETCH_COMMAND in err and len(err.strip().splitlines()) == 1, err
    assert bench_cli.main(["detect"]) == 2
    assert "opencv-python<5" in capsys.readouterr().err
    assert models_app.main(["list", "--missing"]) == 0
    out = capsys.readouterr().out
    assert "opencv:smile" in out and FETCH_COMMAND in out and "frontalface " not in out
