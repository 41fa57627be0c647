"""``vj-detect``: JSON Lines streamed and resumable, JSON at the end; unreadable images recorded."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import skimage.data
from vj_apps.detect import main, parse_size


def test_folder_and_file_keys(tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    face = np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])
    cv2.imwrite(str(photos / "astronaut.png"), face)
    cv2.imwrite(str(photos / "sub" / "flat.jpg"), np.full((60, 80), 127, np.uint8))
    (photos / "broken.jpg").write_bytes(b"not an image")
    single = tmp_path / "single.png"
    cv2.imwrite(str(single), cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
    out = tmp_path / "out.json"
    draw = tmp_path / "drawn"
    rc = main([str(photos), str(single), "--json", str(out), "--cascade", "opencv:alt2",
               "--draw", str(draw)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res) == {"astronaut.png", "sub/flat.jpg", str(single)}
    assert res["sub/flat.jpg"] == []
    assert len(res["astronaut.png"]) == 1
    x, y, w, h, score = res["astronaut.png"][0]
    assert 150 < x + w / 2 < 260 and 50 < y + h / 2 < 160 and score >= 4
    assert res[str(single)] == res["astronaut.png"]
    assert "unreadable image" in capsys.readouterr().err
    assert (draw / "astronaut.png").is_file()


def test_options_are_passed(tmp_path):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY))
    out = tmp_path / "o.json"
    assert main([str(img), "--json", str(out), "--cascade", "opencv:alt2",
                 "--min-size", "300"]) == 0
    assert json.loads(out.read_text())[str(img)] == []


def test_bad_cascade_is_a_clear_error(tmp_path, capsys):
    assert main(["x.png", "--json", str(tmp_path / "o.json"), "--cascade", "nope"]) == 2
    assert "built-in names" in capsys.readouterr().err


def test_parse_size():
    assert parse_size("40") == (40, 40)
    assert parse_size("40x30") == (40, 30)


def _photos(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    for i in range(5):
        cv2.imwrite(str(photos / f"{i}.png"), np.roll(gray, 40 * i, axis=1))
    (photos / "bad.jpg").write_bytes(b"x")
    return photos


def test_jsonl_stream_and_resume(tmp_path, capsys):
    photos = _photos(tmp_path)
    jsonl = tmp_path / "out.jsonl"
    args = [str(photos), "--jsonl", str(jsonl), "--cascade", "opencv:alt2",
            "--partition-size", "2", "--no-progress"]
    assert main(args) == 0
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert sorted(r["image"] for r in lines) == ["0.png", "1.png", "2.png", "3.png", "4.png",
                                                 "bad.jpg"]
    assert [r for r in lines if r["image"] == "bad.jpg"][0]["error"]
    assert all(len(r["boxes"]) == 1 for r in lines if r["image"] != "bad.jpg")
    assert main(args) == 2  # an existing output is never appended to without --resume
    assert "--resume" in capsys.readouterr().err
    jsonl.write_text("".join(line + "\n" for line in jsonl.read_text().splitlines()[:3]))
    assert main([*args, "--resume"]) == 0
    again = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert sorted(map(json.dumps, again)) == sorted(map(json.dumps, lines))
    assert "3 already done" in capsys.readouterr().err


def test_json_only_leaves_no_scratch_file(tmp_path):
    photos = _photos(tmp_path)
    out = tmp_path / "o.json"
    assert main([str(photos), "--json", str(out), "--cascade", "opencv:alt2",
                 "--no-progress"]) == 0
    assert sorted(json.loads(out.read_text())) == ["0.png", "1.png", "2.png", "3.png", "4.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.json", "photos"]


def test_an_output_is_required(capsys):
    with pytest.raises(SystemExit):
        main(["x.png"])
    assert "--jsonl OUT and/or --json OUT" in capsys.readouterr().err
