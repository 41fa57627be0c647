"""Cascade training on tiny data: it trains in seconds, finds faces, resumes exactly."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import skimage.data

import vj
import vj.training as training
from vj.cascade import THRESHOLD_EPS
from vj.negatives import BackgroundPool, mine_negatives
from vj.positives import PositiveSplit, load_positives, near_duplicate_groups, split_groups
from vj.stage_training import passes, stage_threshold
from vj.training import TrainingConfig, train_cascade
from vj.training_checkpoint import load_checkpoint, save_checkpoint
from vj.training_report import write_report

WINDOW = (20, 20)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """scikit-image's 100 LFW faces at 20x20."""
    f = (skimage.data.lfw_subset()[:100] * 255).round().astype(np.uint8)
    return np.stack([cv2.resize(p, WINDOW, interpolation=cv2.INTER_AREA) for p in f])


@pytest.fixture(scope="module")
def positives(faces) -> PositiveSplit:
    both = lambda a: np.concatenate([a, a[:, :, ::-1]])  # noqa: E731
    return PositiveSplit(both(faces[:70]), both(faces[70:90]), both(faces[90:]))


def _photos() -> list[np.ndarray]:
    out = []
    for name in ("camera", "coins", "page", "moon", "text", "brick", "grass", "gravel"):
        im = getattr(skimage.data, name)()
        if im.ndim == 3:
            im = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)
        out.append(np.ascontiguousarray(im))
    return out


@pytest.fixture(scope="module")
def pool() -> BackgroundPool:
    return BackgroundPool(_photos(), WINDOW)


def tiny_config(**kw) -> TrainingConfig:
    base = dict(window=WINDOW, n_stages=4, num_neg=150, max_weak=20, feature_fraction=0.2,
                target_false_alarm=1e-9, checkpoint_every_s=0.0, seed=3)
    return TrainingConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(positives, pool, tmp_path_factory):
    work = tmp_path_factory.mktemp("train")
    return train_cascade(positives, pool, tiny_config(), work, progress=False), work


def _accepts(cascade, patches) -> np.ndarray:
    """Whether the detector accepts each window (scanned as a one-window image)."""
    det = vj.CascadeDetector(cascade)
    w, h = cascade.window
    return np.array([len(det.candidates(p, min_size=(w, h), max_size=(w, h))) == 1
                     for p in patches])


def test_tiny_cascade_trains_and_finds_faces(trained, faces):
    result, work = trained
    c = result.cascade
    assert c.n_stages == 4 and result.stop_reason == "trained all 4 stages"
    assert [r["stage"] for r in result.stages] == [0, 1, 2, 3]
    # Each stage met its targets on the data it was trained with.
    for r in result.stages:
        assert r["hit_rate"] >= 0.995 and (r["false_alarm"] <= 0.5 or r["n_weak"] == 20)
    assert result.stages[-1]["acceptance"] < 0.2
    # Held-out faces pasted into a photo are found where they are.
    scene = cv2.resize(_photos()[0], (400, 400)) // 4 + 96
    spots = [(40, 50), (220, 60), (120, 250), (290, 280)]
    for (x, y), f in zip(spots, faces[90:94], strict=True):
        scene[y:y + 60, x:x + 60] = cv2.resize(f, (60, 60), interpolation=cv2.INTER_LINEAR)
    boxes = vj.CascadeDetector(c).detect(scene, scale_factor=1.05, min_neighbors=2)
    found = sum(any(abs(bx + bw / 2 - x - 30) < 15 and abs(by + bh / 2 - y - 30) < 15
                    and 40 < bw < 90 for bx, by, bw, bh in boxes.tolist()) for x, y in spots)
    assert found >= 3
    # The model file round-trips through the project's format.
    vj.save(c, work / "m.json")
    assert vj.load_cascade(work / "m.json") == c


def test_stage_thresholds_hold_in_the_detector(trained, positives):
    """Training's pass/fail decisions are the detector's, window by window."""
    c = trained[0].cascade
    ours = np.ones(len(positives.calibration), bool)
    feats = c.features
    from vj.boosting import tree_values

    k = 0
    for s in range(c.n_stages):
        n = int(c.stage_trees[s])
        vals = feats.evaluate(positives.calibration)
        score = np.zeros(len(vals))
        for t in range(k, k + n):
            f, thr = int(c.node_feature[t]), c.node_threshold[t]
            score += np.where(vals[:, f] < thr, c.leaf_values[2 * t], c.leaf_values[2 * t + 1])
        ours &= passes(score, c.stage_threshold[s])
        k += n
    np.testing.assert_array_equal(ours, _accepts(c, positives.calibration))
    assert tree_values  # imported for parity with the training code path


def test_resume_after_crashes_equals_uninterrupted(trained, positives, pool, tmp_path,
                                                   monkeypatch):
    """Crash right after the 3rd, 9th, ... checkpoint write; restart until done."""
    reference = trained[0].cascade
    real_save = training.save_checkpoint
    calls = {"n": 0}
    crash_at = {3, 9, 17, 30, 45}

    def crashing_save(*a, **kw):
        real_save(*a, **kw)
        calls["n"] += 1
        if calls["n"] in crash_at:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(training, "save_checkpoint", crashing_save)
    restarts = 0
    while True:
        try:
            result = train_cascade(positives, pool, tiny_config(), tmp_path, progress=False)
            break
        except KeyboardInterrupt:
            restarts += 1
    assert restarts >= 3
    assert result.cascade == reference


def test_checkpoint_with_other_settings_is_refused(trained, positives, pool):
    work = trained[1]
    with pytest.raises(ValueError, match="other settings"):
        train_cascade(positives, pool, tiny_config(num_neg=151), work, progress=False)


def test_backgrounds_running_out_stop_cleanly(positives, tmp_path):
    small = BackgroundPool([cv2.resize(_photos()[5], (60, 60))], WINDOW)
    result = train_cascade(positives, small, tiny_config(num_neg=40, n_stages=6), tmp_path,
                           progress=False)
    assert result.stop_reason.startswith("backgrounds exhausted at stage")
    assert result.cascade is not None and result.cascade.n_stages >= 1
    assert load_checkpoint(tmp_path / training.CHECKPOINT_NAME)[0]["stop_reason"]


def test_mined_negatives_pass_the_cascade_and_ignore_thread_count(trained, pool):
    c = trained[0].cascade.truncated(2)
    a, sa, ex = mine_negatives(pool, c, 60, seed=1, stage=2, workers=1)
    b, sb, _ = mine_negatives(pool, c, 60, seed=1, stage=2, workers=3)
    assert not ex and len(a) == 60
    np.testing.assert_array_equal(a, b)
    assert (sa.next_job, sa.windows, sa.accepted) == (sb.next_job, sb.windows, sb.accepted)
    assert _accepts(c, a).all()


def test_stage_threshold_meets_hit_rate_exactly_as_stored():
    rng = np.random.default_rng(0)
    for n in (1, 7, 200, 1001):
        s = rng.normal(size=n) * 3
        for rate in (0.5, 0.99, 0.995, 1.0):
            t = stage_threshold(s, rate)
            assert t.dtype == np.float32
            assert passes(s, t).mean() >= rate - 1e-12
            # No higher float32 threshold would still reach the rate (up to OpenCV's epsilon).
            higher = np.nextafter(t, np.float32(np.inf)) + 2 * THRESHOLD_EPS
            assert passes(s, higher).mean() < rate or rate == 0.5 and n == 1


def test_positives_dedup_and_group_split(tmp_path, faces):
    folder = tmp_path / "crops"
    folder.mkdir()
    for i, f in enumerate(faces[:40]):
        big = cv2.resize(f, (30, 30))
        cv2.imwrite(str(folder / f"{i:03d}.png"), big)
        if i < 5:  # exact and re-encoded duplicates
            cv2.imwrite(str(folder / f"{i:03d}_dup.png"), big)
            cv2.imwrite(str(folder / f"{i:03d}_q.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    ps = load_positives([folder], WINDOW, (0.1, 0.1, 0.8, 0.8), validation_fraction=0.2,
                        calibration_fraction=0.2, seed=1)
    assert ps.info["read"] == 50 and ps.info["dropped_duplicates"] == 10
    assert ps.info["kept"] == 40 and ps.train.shape[1:] == (20, 20)
    assert len(ps.train) + len(ps.calibration) + len(ps.validation) == 80
    np.testing.assert_array_equal(ps.validation[len(ps.validation) // 2:],
                                  ps.validation[: len(ps.validation) // 2, :, ::-1])
    groups = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5, 5])
    parts = split_groups(groups, (0.6, 0.2, 0.2), seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
    for g in np.unique(groups):
        assert sum(np.isin(np.nonzero(groups == g)[0], p).any() for p in parts) == 1
    assert (near_duplicate_groups(np.repeat(faces[:3], 2, axis=0), 0.05)
            == [0, 0, 2, 2, 4, 4]).all()


def test_report_and_checkpoint_files(trained, tmp_path):
    result = trained[0]
    paths = write_report(result, tmp_path)
    doc = json.loads(paths["json"].read_text())
    assert len(doc["stages"]) == 4 and doc["stop_reason"] == result.stop_reason
    assert paths["md"].read_text().count("\n|") >= 5 and paths["png"].stat().st_size > 1000
    save_checkpoint(tmp_path / "c.npz", {"a": 1}, {"x": np.arange(3)})
    meta, arrays = load_checkpoint(tmp_path / "c.npz")
    assert meta == {"a": 1} and arrays["x"].tolist() == [0, 1, 2]
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.npz")


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="min_hit_rate"):
        TrainingConfig(min_hit_rate=1.5)
    with pytest.raises(ValueError, match="mode"):
        TrainingConfig(mode="FANCY")


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory, faces):
    """Positive and background folders for the command line, and its arguments."""
    root = tmp_path_factory.mktemp("cli")
    pos, bg = root / "pos", root / "bg"
    pos.mkdir()
    bg.mkdir()
    for i, f in enumerate(faces):
        cv2.imwrite(str(pos / f"{i:03d}.png"), f)
    for i, im in enumerate(_photos()):
        cv2.imwrite(str(bg / f"{i}.png"), im)
    (root / "bg.txt").write_text("\n".join(f"bg/{i}.png" for i in range(8)) + "\n")

    def argv(out):
        return ["-data", str(out), "--pos", str(pos), "--bg", str(root / "bg.txt"),
                "-w", "20", "-h", "20", "-numStages", "3", "-numNeg", "100",
                "-maxWeakCount", "10", "--feature-fraction", "0.1", "-bt", "DAB",
                "--jitter-copies", "1", "--target-false-alarm", "1e-9", "--xml",
                "--checkpoint-every", "0", "--quiet"]

    return root, argv


@pytest.fixture(scope="module")
def cli_run(cli_inputs):
    from vj_apps.train_cascade import main

    root, argv = cli_inputs
    assert main(argv(root / "out")) == 0
    return root / "out"


def test_cli_trains_and_writes_everything(cli_inputs, cli_run):
    from vj_apps.train_cascade import main

    root, argv = cli_inputs
    for name in ("cascade.json", "cascade.xml", "report.md", "report.json", "report.png",
                 "checkpoint.npz"):
        assert (cli_run / name).is_file(), name
    c = vj.load_cascade(cli_run / "cascade.json")
    assert c.n_stages == 3 and vj.load_cascade(cli_run / "cascade.xml") == c
    report = json.loads((cli_run / "report.json").read_text())
    assert report["positives"]["jitter_copies"] == 1 and len(report["stages"]) == 3
    assert main(argv(cli_run)) == 0  # resumes a finished run: same model
    assert vj.load_cascade(cli_run / "cascade.json") == c
    assert main(["-data", str(root / "x"), "--pos", str(root / "nope"),
                 "--bg", str(root / "bg")]) == 2


def test_cli_killed_with_sigkill_resumes_to_the_same_model(cli_inputs, cli_run):
    """A real SIGKILL mid-run (after the first checkpoints), then the same command again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from vj_apps.train_cascade import main

    root, argv = cli_inputs
    out = root / "killed"
    ckpt = out / "checkpoint.npz"
    proc = subprocess.Popen([sys.executable, "-m", "vj_apps.train_cascade", *argv(out)],
                            cwd=os.path.dirname(os.path.dirname(__file__)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        # Kill once stage 0 is saved and stage 1 is under way.
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.is_file() and load_checkpoint(ckpt)[0]["stage_thresholds"]:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "cascade.json").exists()
    assert main(argv(out)) == 0
    assert vj.load_cascade(out / "cascade.json") == vj.load_cascade(cli_run / "cascade.json")


def test_jittered_positives_are_seeded_and_near_the_original(tmp_path, faces):
    from vj.positives import Jitter, read_face_crops

    folder = tmp_path / "crops"
    folder.mkdir()
    for i, f in enumerate(faces[:6]):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.resize(f, (40, 40)))
    a = read_face_crops([folder], WINDOW, (0.1, 0.1, 0.8, 0.8), jitter=Jitter(), copies=2,
                        seed=4)
    b = read_face_crops([folder], WINDOW, (0.1, 0.1, 0.8, 0.8), jitter=Jitter(), copies=2,
                        seed=4)
    assert a.shape == (6, 3, 20, 20)
    np.testing.assert_array_equal(a, b)
    plain = read_face_crops([folder], WINDOW, (0.1, 0.1, 0.8, 0.8))
    np.testing.assert_array_equal(a[:, 0], plain)
    diff = np.abs(a[:, 1:].astype(int) - a[:, :1]).mean()
    assert 0 < diff < 40
    none = read_face_crops([folder], WINDOW, (0.1, 0.1, 0.8, 0.8), jitter=Jitter(0, 0, 0),
                           copies=1)
    np.testing.assert_array_equal(none[:, 1], none[:, 0])


def test_resume_with_more_stages_extends_the_cascade(trained, positives, pool, tmp_path):
    """A finished run resumed with more stages keeps its stages and trains the rest."""
    import shutil

    shutil.copy(trained[1] / training.CHECKPOINT_NAME, tmp_path / training.CHECKPOINT_NAME)
    longer = train_cascade(positives, pool, tiny_config(n_stages=6, max_weak=25), tmp_path,
                           progress=False)
    assert longer.stop_reason == "trained all 6 stages"
    assert longer.cascade.n_stages == 6
    assert longer.cascade.truncated(4) == trained[0].cascade
    assert [r["stage"] for r in longer.stages] == list(range(6))
