"""Negative mining on a 2-process Dask LocalCluster: the same negatives, the same cascade.

One cluster serves the module; the training settings are test_training's tiny ones.
"""

from __future__ import annotations

import os
import signal

import cv2
import numpy as np
import pytest
import skimage.data

import vj
import vj.training as training
from vj.cluster import local_cluster
from vj.negatives import BackgroundPool, mine_negatives
from vj.positives import PositiveSplit
from vj.training import TrainingConfig, train_cascade

distributed = pytest.importorskip("distributed")
from vj.negatives_dask import ClusterJobs  # noqa: E402  (needs distributed)

WINDOW = (20, 20)


def _photos() -> list[np.ndarray]:
    out = []
    for name in ("camera", "coins", "page", "moon", "text", "brick", "grass", "gravel"):
        im = getattr(skimage.data, name)()
        if im.ndim == 3:
            im = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)
        out.append(np.ascontiguousarray(im))
    return out


def tiny_config(**kw) -> TrainingConfig:
    base = dict(window=WINDOW, n_stages=4, num_neg=150, max_weak=20, feature_fraction=0.2,
                target_false_alarm=1e-9, checkpoint_every_s=0.0, seed=3)
    return TrainingConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def positives() -> PositiveSplit:
    f = (skimage.data.lfw_subset()[:100] * 255).round().astype(np.uint8)
    faces = np.stack([cv2.resize(p, WINDOW, interpolation=cv2.INTER_AREA) for p in f])
    both = lambda a: np.concatenate([a, a[:, :, ::-1]])  # noqa: E731
    return PositiveSplit(both(faces[:70]), both(faces[70:90]), both(faces[90:]))


@pytest.fixture(scope="module")
def pool() -> BackgroundPool:
    """In memory: its pixels go to the workers."""
    return BackgroundPool(_photos(), WINDOW)


@pytest.fixture(scope="module")
def file_pool(tmp_path_factory) -> BackgroundPool:
    """Read from files: the workers read them by path."""
    folder = tmp_path_factory.mktemp("bg")
    for i, im in enumerate(_photos()):
        cv2.imwrite(str(folder / f"{i}.png"), im)
    return BackgroundPool.from_sources([folder], WINDOW)


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(2) as lc, distributed.Client(lc, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def local(positives, pool):
    return train_cascade(positives, pool, tiny_config(), progress=False)


def test_two_workers_train_the_same_cascade(local, positives, pool, cluster):
    result = train_cascade(positives, pool, tiny_config(), progress=False,
                           mining_jobs=ClusterJobs(cluster, pool, jobs_per_task=3))
    assert local.cascade.n_stages >= 3
    assert result.cascade == local.cascade
    assert [r["windows_scanned"] for r in result.stages] == \
        [r["windows_scanned"] for r in local.stages]


def test_file_pool_mines_the_same_negatives(local, pool, file_pool, cluster):
    cascade = local.cascade.truncated(2)
    a, sa, _ = mine_negatives(pool, cascade, 80, seed=1, stage=2, workers=1)
    b, sb, _ = mine_negatives(file_pool, cascade, 80, seed=1, stage=2,
                              jobs=ClusterJobs(cluster, file_pool, jobs_per_task=2))
    np.testing.assert_array_equal(a, b)
    assert (sa.next_job, sa.windows, sa.accepted) == (sb.next_job, sb.windows, sb.accepted)


def test_a_killed_worker_changes_nothing(local, pool, cluster):
    """Kill every worker holding the pool once Dask has dropped spare copies of it."""
    cascade = local.cascade.truncated(3)
    a, sa, _ = mine_negatives(pool, cascade, 150, seed=2, stage=3, workers=1)
    pids = cluster.run(os.getpid)
    jobs = ClusterJobs(cluster, pool, jobs_per_task=1)
    killed = []

    def kill_holders(state):
        if not killed:
            cluster.amm.run_once()  # what the memory manager does every few seconds
            holders = cluster.who_has([jobs._pool])[jobs._pool.key]
            assert holders
            for worker in holders:
                os.kill(pids[worker], signal.SIGKILL)
            killed.extend(holders)

    b, sb, _ = mine_negatives(pool, cascade, 150, seed=2, stage=3, jobs=jobs,
                              progress=kill_holders)
    assert killed
    np.testing.assert_array_equal(a, b)
    assert (sa.next_job, sa.windows) == (sb.next_job, sb.windows)
    cluster.wait_for_workers(2, timeout=120)


def test_resume_after_crashes_on_the_cluster(local, positives, pool, cluster, tmp_path,
                                             monkeypatch):
    real_save = training.save_checkpoint
    calls = {"n": 0}

    def crashing_save(*a, **kw):
        real_save(*a, **kw)
        calls["n"] += 1
        if calls["n"] in {4, 11, 20}:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(training, "save_checkpoint", crashing_save)
    jobs = ClusterJobs(cluster, pool)
    restarts = 0
    while True:
        try:
            result = train_cascade(positives, pool, tiny_config(), tmp_path, progress=False,
                                   mining_jobs=jobs)
            break
        except KeyboardInterrupt:
            restarts += 1
    assert restarts >= 2
    assert result.cascade == local.cascade


def test_bad_jobs_per_task(pool, cluster):
    with pytest.raises(ValueError, match="jobs_per_task"):
        ClusterJobs(cluster, pool, jobs_per_task=0)


def test_cli_on_a_cluster_writes_the_local_model(tmp_path, cluster, capsys):
    from vj_apps.train_cascade import main

    pos, bg = tmp_path / "pos", tmp_path / "bg"
    pos.mkdir()
    bg.mkdir()
    f = (skimage.data.lfw_subset()[:60] * 255).round().astype(np.uint8)
    for i, face in enumerate(f):
        cv2.imwrite(str(pos / f"{i:03d}.png"), cv2.resize(face, WINDOW))
    for i, im in enumerate(_photos()):
        cv2.imwrite(str(bg / f"{i}.png"), im)
    argv = ["--pos", str(pos), "--bg", str(bg), "-w", "20", "-h", "20", "-numStages", "2",
            "-numNeg", "80", "-maxWeakCount", "8", "--feature-fraction", "0.1",
            "--target-false-alarm", "1e-9", "--quiet"]
    assert main(["-data", str(tmp_path / "here"), *argv]) == 0
    assert main(["-data", str(tmp_path / "there"), *argv,
                 "--scheduler", cluster.scheduler.address]) == 0
    here = vj.load_cascade(tmp_path / "here" / "cascade.json")
    assert vj.load_cascade(tmp_path / "there" / "cascade.json") == here
    assert main(["-data", str(tmp_path / "x"), *argv, "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err
