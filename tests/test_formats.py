"""Model files: OpenCV XML import/export and the project's JSON format."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import vj
from vj.models import resolve


@pytest.mark.parametrize("name", ["default", "alt", "alt2", "alt_tree"])
def test_xml_import_structure(name):
    c = vj.load_cascade(f"opencv:{name}")
    text = resolve(f"opencv:{name}").read_text()
    assert c.n_stages == int(text.split("<stageNum>")[1].split("<")[0])
    assert c.n_trees == text.count("<internalNodes>")
    assert len(c.features) == text.split("<features>")[1].count("<rects>")
    assert c.window == ((24, 24) if name == "default" else (20, 20))
    assert c.is_stump_based == (name != "alt2")


@pytest.mark.parametrize("name", ["default", "alt2"])
def test_xml_export_roundtrip_opencv_detects_identically(name, tmp_path, sample_images):
    c = vj.load_cascade(f"opencv:{name}")
    out = tmp_path / "exported.xml"
    vj.save(c, out)
    assert vj.load_cascade(out) == c
    ref = cv2.CascadeClassifier(str(out))
    assert not ref.empty()
    det = vj.load(out)
    img = sample_images["astronaut"]
    ours = det.detect(img)
    theirs = np.asarray(ref.detectMultiScale(img)).reshape(-1, 4)
    assert set(map(tuple, ours.tolist())) == set(map(tuple, theirs.tolist()))
    assert len(ours) >= 1


def test_json_roundtrip_is_exact(tmp_path):
    c = vj.load_cascade("opencv:alt2")
    path = tmp_path / "m.json"
    vj.save(c, path)
    back = vj.load_cascade(path)
    assert back == c
    assert back.metadata["name"] == "haarcascade_frontalface_alt2"
    doc = json.loads(path.read_text())
    assert doc["format"] == "vj-cascade" and doc["version"] == 1


def test_truncated_cascade_is_more_lenient(sample_images):
    c = vj.load_cascade("opencv:default")
    short = c.truncated(10)
    assert short.n_stages == 10
    img = sample_images["astronaut"]
    full = vj.load(c).detect(img, min_neighbors=0)
    lenient = vj.load(short).detect(img, min_neighbors=0)
    assert set(map(tuple, full.tolist())) <= set(map(tuple, lenient.tolist()))
    assert len(lenient) > len(full)


def test_concatenate_inverts_split():
    c = vj.load_cascade("opencv:alt")
    a = c.truncated(5)
    # Stages 5.. of c as their own cascade, via truncation of the tail order.
    rebuilt = vj.Cascade.concatenate([a, _tail(c, 5)])
    det_full, det_rebuilt = vj.load(c), vj.load(rebuilt)
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (120, 160), np.uint8)
    assert np.array_equal(det_full.detect(img, min_neighbors=0),
                          det_rebuilt.detect(img, min_neighbors=0))
    assert rebuilt.n_stages == c.n_stages and rebuilt.n_trees == c.n_trees


def _tail(c: vj.Cascade, start: int) -> vj.Cascade:
    t0 = int(c.stage_trees[:start].sum())
    k0 = int(c.tree_nodes[:t0].sum())
    return vj.Cascade(
        features=c.features, node_feature=c.node_feature[k0:],
        node_threshold=c.node_threshold[k0:], node_left=c.node_left[k0:],
        node_right=c.node_right[k0:], tree_nodes=c.tree_nodes[t0:],
        leaf_values=c.leaf_values[k0 + t0:], stage_trees=c.stage_trees[start:],
        stage_threshold=c.stage_threshold[start:],
    )


def test_old_format_xml_is_converted(tmp_path, sample_images):
    """A 1.x-style XML (inline features) loads and detects like its 4.x twin."""
    c = vj.load_cascade("opencv:alt").truncated(6)
    lines = ['<?xml version="1.0"?>', "<opencv_storage>",
             '<tiny type_id="opencv-haar-classifier">', "<size>20 20</size>", "<stages>"]
    starts, k = c.stage_tree_start, 0
    for s in range(c.n_stages):
        lines.append("<_><trees>")
        for _t in range(starts[s], starts[s] + c.stage_trees[s]):
            f = c.node_feature[k]
            rects = "".join(
                f"<_>{' '.join(map(str, c.features.rects[f, r]))} "
                f"{float(c.features.weights[f, r])!r}</_>"
                for r in range(3) if c.features.weights[f, r] != 0)
            leaf = 2 * k
            lines.append(
                f"<_><_><feature><rects>{rects}</rects><tilted>{int(c.features.tilted[f])}"
                f"</tilted></feature><threshold>{float(c.node_threshold[k])!r}</threshold>"
                f"<left_val>{float(c.leaf_values[leaf])!r}</left_val>"
                f"<right_val>{float(c.leaf_values[leaf + 1])!r}</right_val></_></_>")
            k += 1
        lines.append(f"</trees><stage_threshold>{float(c.stage_threshold[s])!r}"
                     f"</stage_threshold><parent>{s - 1}</parent><next>-1</next></_>")
    lines += ["</stages>", "</tiny>", "</opencv_storage>"]
    path = tmp_path / "old.xml"
    path.write_text("\n".join(lines))
    old = vj.load_cascade(path)
    assert old.n_stages == 6 and old.n_trees == c.n_trees
    img = sample_images["astronaut"]
    assert np.array_equal(vj.load(old).detect(img, min_neighbors=0),
                          vj.load(c).detect(img, min_neighbors=0))
    ref = cv2.CascadeClassifier(str(path))
    theirs = np.asarray(ref.detectMultiScale(img, 1.1, 0)).reshape(-1, 4)
    assert set(map(tuple, theirs.tolist())) == set(
        map(tuple, vj.load(old).detect(img, min_neighbors=0).tolist()))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "neither an OpenCV XML"),
        (b"<opencv_storage><cascade>", "not a readable XML"),
        (b"<opencv_storage><x><a>1</a></x></opencv_storage>", "not a Haar cascade"),
        (b"<opencv_storage><cascade><stageType>BOOST</stageType><featureType>LBP"
         b"</featureType></cascade></opencv_storage>", "only HAAR"),
        (b"<html><body/></html>", "not an OpenCV storage"),
    ],
)
def test_corrupt_xml_errors_name_file_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.xml"
    path.write_bytes(content)
    with pytest.raises(vj.CascadeFormatError, match=message) as err:
        vj.load(path)
    assert "bad.xml" in str(err.value)


def test_truncated_xml_file_is_a_clear_error(tmp_path):
    text = resolve("opencv:alt2").read_text()
    path = tmp_path / "cut.xml"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(vj.CascadeFormatError, match="cut.xml"):
        vj.load(path)


def test_inconsistent_xml_is_a_clear_error(tmp_path):
    text = resolve("opencv:alt2").read_text()
    path = tmp_path / "idx.xml"
    # Point a node at a feature that does not exist.
    path.write_text(text.replace("0 1 0 4.3272329494357109e-03", "0 1 99999 4.3e-03", 1))
    with pytest.raises(vj.CascadeFormatError, match="out of range"):
        vj.load(path)


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"format": "something-else"}, "not a vj-cascade"),
        ({"format": "vj-cascade", "version": 99}, "version 99"),
        ({"format": "vj-cascade", "version": 1, "window": [24, 24]}, "damaged"),
    ],
)
def test_bad_json_models(tmp_path, doc, message):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(vj.CascadeFormatError, match=message):
        vj.load(path)


def test_missing_and_unknown_names():
    with pytest.raises(FileNotFoundError, match="built-in names"):
        vj.load("no-such-model")
    with pytest.raises(FileNotFoundError):
        vj.load("/nonexistent/dir/model.xml")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    c = vj.load_cascade("opencv:alt2")
    vj.save(c, tmp_path / "a.json")
    vj.save(c, tmp_path / "a.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_saved_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    path = tmp_path / "m.json"
    vj.save(vj.load_cascade("opencv:alt2"), path)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
