"""Batch detection (vj.batch): JSON Lines, resume, unreadable files, and a 2-process Dask cluster.

One ``LocalCluster`` (2 worker processes, 1 thread each) serves the whole module; the
runs reach it through its scheduler address, as a remote cluster would be used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from vj.batch import SchedulerUnreachableError, detect_files, iter_images
from vj.batch_output import JsonlOutput, jsonl_to_json, read_jsonl
from vj.batch_worker import DetectionSettings
from vj.cluster import local_cluster

distributed = pytest.importorskip("distributed")

CASCADE = "frontalface"
SETTINGS = DetectionSettings(scale_factor=1.2, min_neighbors=3)
UNREADABLE = {"broken.jpg": b"not an image", "empty.png": b""}


class Interrupted(Exception):
    """Stands in for a kill of the process running the batch."""


@pytest.fixture(scope="module")
def images(tmp_path_factory, sample_images) -> list[tuple[str, str]]:
    """Thirty-odd small images (a few with faces) and two unreadable files."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    k = 0
    for name, img in sample_images.items():
        for scale in (0.3, 0.45):
            small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            for flip in (False, True):
                sub = folder / ("sub" if k % 2 else "")
                sub.mkdir(exist_ok=True)
                out = small[:, ::-1] if flip else small
                out = np.clip(out + rng.integers(-3, 4, out.shape), 0, 255).astype(np.uint8)
                cv2.imwrite(str(sub / f"{name}_{scale}_{int(flip)}.png"), out)
                k += 1
    for name, data in UNREADABLE.items():
        (folder / name).write_bytes(data)
    return list(iter_images([folder]))


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory) -> dict[str, dict]:
    """Records of the single-process path, by image key."""
    out = tmp_path_factory.mktemp("ref") / "ref.jsonl"
    summary = detect_files(images, out, cascade=CASCADE, settings=SETTINGS, progress=False)
    records = read_jsonl(out)
    assert summary.images == len(records) == len(images)
    return {r["image"]: r for r in records}


@pytest.fixture(scope="module")
def cluster():
    """A 2-process LocalCluster and a client of it, for the whole module."""
    with local_cluster(2) as lc, distributed.Client(lc, set_as_default=False) as client:
        yield client


def _by_key(path) -> dict[str, dict]:
    records = read_jsonl(path)
    keys = [r["image"] for r in records]
    assert len(keys) == len(set(keys)), "an image was written twice"
    return {r["image"]: r for r in records}


def test_reference_has_faces_and_errors(reference):
    assert sum(len(r.get("boxes", ())) for r in reference.values()) >= 2
    assert {k for k, r in reference.items() if "error" in r} == set(UNREADABLE)
    assert "cannot decode" in reference["broken.jpg"]["error"]


def test_cluster_gives_the_single_process_boxes(images, reference, cluster, tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    summary = detect_files(images, out, cascade=CASCADE, settings=SETTINGS,
                           scheduler=cluster.scheduler.address, partition_size=3)
    assert _by_key(out) == reference
    assert summary.images == len(images) and summary.errors == len(UNREADABLE)
    assert "dashboard:" in capsys.readouterr().err


def test_missing_and_unreadable_files_are_recorded(tmp_path, images):
    out = tmp_path / "o.jsonl"
    paths = [images[0], (str(tmp_path / "nope.png"), "nope.png"),
             (str(tmp_path), "a-folder.png")]
    summary = detect_files(paths, out, cascade=CASCADE, settings=SETTINGS, progress=False)
    got = _by_key(out)
    assert summary.errors == 2 and set(got) == {images[0][1], "nope.png", "a-folder.png"}
    assert "not found" in got["nope.png"]["error"]


def _interrupted_run(images, out, after: int, **kw) -> None:
    seen = []

    def stop(records):
        seen.append(records)
        if len(seen) == after:
            raise Interrupted

    with pytest.raises(Interrupted):
        detect_files(images, out, cascade=CASCADE, settings=SETTINGS, partition_size=4,
                     progress=False, on_partition=stop, **kw)


@pytest.mark.parametrize("on_cluster", [False, True])
def test_resume_after_a_killed_run(images, reference, cluster, tmp_path, on_cluster):
    where = {"scheduler": cluster.scheduler.address} if on_cluster else {}
    out = tmp_path / "r.jsonl"
    _interrupted_run(images, out, after=2, **where)
    done = len(read_jsonl(out))
    assert 0 < done < len(images)
    with open(out, "ab") as fh:  # killed in the middle of a write
        fh.write(b'{"image": "camera_0.3_0.png", "bo')
    with pytest.raises(ValueError, match="resume"):
        detect_files(images, out, cascade=CASCADE, settings=SETTINGS, progress=False)
    summary = detect_files(images, out, cascade=CASCADE, settings=SETTINGS, resume=True,
                           progress=False, **where)
    assert summary.skipped == done and summary.images == len(images) - done
    assert _by_key(out) == reference
    again = detect_files(images, out, cascade=CASCADE, settings=SETTINGS, resume=True,
                         progress=False)
    assert again.images == 0 and again.skipped == len(images)


def test_a_killed_worker_loses_and_duplicates_nothing(images, reference, cluster, tmp_path):
    pids = cluster.run(os.getpid)
    killed = []

    def kill_a_busy_worker(records):
        if killed:
            return
        busy = [w for w, tasks in cluster.processing().items() if tasks and w in pids]
        victim = busy[0] if busy else next(iter(pids))
        os.kill(pids[victim], signal.SIGKILL)
        killed.append(victim)

    out = tmp_path / "k.jsonl"
    summary = detect_files(images, out, cascade=CASCADE, settings=SETTINGS,
                           scheduler=cluster.scheduler.address, partition_size=2,
                           progress=False, on_partition=kill_a_busy_worker)
    assert killed
    assert _by_key(out) == reference
    assert summary.images == len(images)
    cluster.wait_for_workers(2, timeout=120)  # the nanny restarts it for the next tests
    assert set(cluster.run(os.getpid).values()) != set(pids.values())


def test_unreachable_scheduler_is_a_clear_error(images, tmp_path):
    with pytest.raises(SchedulerUnreachableError, match="cannot reach the Dask scheduler"):
        detect_files(images, tmp_path / "u.jsonl", cascade=CASCADE,
                     scheduler="tcp://127.0.0.1:9", progress=False)


def test_workers_and_scheduler_exclude_each_other(images, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        detect_files(images, tmp_path / "x.jsonl", workers=2, scheduler="tcp://a:1")


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="scale_factor"):
        DetectionSettings(scale_factor=1.0)
    with pytest.raises(ValueError, match="min_size"):
        DetectionSettings(min_size=(-1, 3))


def test_jsonl_output_cuts_a_torn_tail_and_rejects_garbage(tmp_path):
    path = tmp_path / "o.jsonl"
    with JsonlOutput(path) as out:
        assert out.write([{"image": "a", "boxes": []}, {"image": "a", "boxes": []},
                          {"image": "b", "error": "x"}]) == 2
    path.write_bytes(path.read_bytes() + b'{"image": "c", "bo')
    with JsonlOutput(path, resume=True) as out:
        assert out.done == {"a", "b"}
        out.write([{"image": "c", "boxes": [[1, 2, 3, 4, 5.0]]}])
    assert [r["image"] for r in read_jsonl(path)] == ["a", "b", "c"]
    counts = jsonl_to_json(path, tmp_path / "o.json")
    assert counts == {"images": 2, "boxes": 1, "errors": 1}
    assert json.loads((tmp_path / "o.json").read_text()) == {"a": [], "c": [[1, 2, 3, 4, 5.0]]}
    path.write_text('{"image": "a", "boxes": []}\nnot json\n')
    with pytest.raises(ValueError, match=r"o\.jsonl:2"):
        read_jsonl(path)


def test_single_process_path_loads_neither_dask_nor_torch(images, tmp_path):
    code = ("import sys; from vj.batch import detect_files; "
            f"detect_files({images[:3]!r}, {str(tmp_path / 's.jsonl')!r}, progress=False); "
            "bad = [m for m in ('dask', 'distributed', 'torch') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)
    assert len(read_jsonl(tmp_path / "s.jsonl")) == 3


def test_vj_detect_on_a_cluster(images, reference, cluster, tmp_path, capsys):
    from vj_apps.detect import main

    folder = os.path.dirname(images[0][0]) if images[0][1] == os.path.basename(images[0][0]) \
        else None
    assert folder is not None
    jsonl, js = tmp_path / "f.jsonl", tmp_path / "f.json"
    assert main([folder, "--jsonl", str(jsonl), "--json", str(js), "--cascade", CASCADE,
                 "--scale-factor", "1.2", "--scheduler", cluster.scheduler.address,
                 "--no-progress"]) == 0
    assert _by_key(jsonl) == reference
    expected = {k: r["boxes"] for k, r in reference.items() if "boxes" in r}
    assert json.loads(js.read_text()) == expected
    err = capsys.readouterr().err
    assert "unreadable image broken.jpg" in err and "dashboard:" not in err
    assert main([folder, "--jsonl", str(tmp_path / "u.jsonl"), "--scheduler",
                 "tcp://127.0.0.1:9"]) == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err
