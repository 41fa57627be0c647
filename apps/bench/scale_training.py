"""``vj-bench scale --mining | --features``: cascade training's steps on a Dask cluster or not.

``--mining`` times hard-negative mining (what ``vj-train-cascade --workers`` spreads): the
shipped cascade's first ``--stages`` stages searching the UMD backgrounds for
``--negatives`` windows, on this process's threads vs a 2-worker ``LocalCluster``,
interleaved; the negatives must be identical.

``--features`` asks whether feature-value computation (with its quantisation, the
once-per-stage step before boosting) should move too: a stage-sized problem computed
here (Numba threads over features) vs split by features over a 2-worker
``LocalCluster``, each worker returning its share of the quantised matrix, and the
time Dask takes to bring that matrix back.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
from distributed import Client
from vj_apps.bench.boosting import _prepare, benchmark_windows

import vj
from vj.cluster import local_cluster
from vj.features import HaarFeatureSet
from vj.image_sources import resolve_data_dir
from vj.negatives import BackgroundPool, mine_negatives
from vj.negatives_dask import ClusterJobs

__all__ = ["run_features", "run_mining"]


def _cluster(workers: int) -> tuple[object, Client, float]:
    t0 = time.perf_counter()
    cluster = local_cluster(workers)
    return cluster, Client(cluster, set_as_default=False), time.perf_counter() - t0


def run_mining(stages: int, negatives: int, bg_images: int, repeats: int = 3,
               data_dir: str | None = None, workers: int = 2) -> dict:
    """Interleaved timings of negative mining on threads vs a ``workers``-process cluster."""
    root = resolve_data_dir(data_dir)
    cascade = vj.load_cascade("frontalface").truncated(stages)
    pool = BackgroundPool.from_sources([root / "backgrounds" / "umd"], cascade.window,
                                       max_images=bg_images)
    cluster, client, start_s = _cluster(workers)
    kw = dict(seed=0, stage=stages)
    times: dict[str, list[float]] = {"threads": [], "cluster": []}
    found: dict[str, np.ndarray] = {}
    windows = 0
    try:
        jobs = ClusterJobs(client, pool)
        mine_negatives(pool, cascade, 50, jobs=jobs, **kw)  # warm: workers read the pool
        for r in range(repeats):
            for mode in (["threads", "cluster"] if r % 2 == 0 else ["cluster", "threads"]):
                t0 = time.perf_counter()
                found[mode], state, _ = mine_negatives(
                    pool, cascade, negatives, jobs=jobs if mode == "cluster" else None, **kw)
                times[mode].append(time.perf_counter() - t0)
                windows = state.windows
    finally:
        client.close()
        cluster.close()
    if not np.array_equal(found["threads"], found["cluster"]):
        raise AssertionError("the cluster mined other negatives than the threads")
    med = {m: statistics.median(t) for m, t in times.items()}
    return {"stages": stages, "negatives": negatives, "bg_images": len(pool),
            "windows_scanned": windows, "cores": os.cpu_count(), "workers": workers,
            "cluster_start_s": round(start_s, 2), "load_1min": round(os.getloadavg()[0], 2),
            "threads_s": round(med["threads"], 2), "cluster_s": round(med["cluster"], 2),
            "ratio": round(med["threads"] / med["cluster"], 3),
            "runs_s": {m: [round(v, 2) for v in t] for m, t in times.items()}}


def _bins(patches: np.ndarray, feature_ids: np.ndarray, mode: str) -> np.ndarray:
    """Quantised values of features ``feature_ids`` on ``patches``, as vj-bench boosting."""
    feats = HaarFeatureSet.enumerate(patches.shape[2], patches.shape[1], mode)
    return _prepare(feats.subset(feature_ids), patches, 1024).bins


def _made_here(nbytes: int) -> np.ndarray:
    return np.ones(nbytes, np.uint8)


def run_features(samples: int = 14_000, fraction: float = 0.3, mode: str = "BASIC",
                 repeats: int = 3, workers: int = 2) -> dict:
    """Feature values + quantisation of one stage: here vs split over a cluster."""
    patches, _ = benchmark_windows(samples)
    n_all = len(HaarFeatureSet.enumerate(24, 24, mode))
    ids = np.sort(np.random.default_rng(0).choice(n_all, int(fraction * n_all), replace=False))
    _bins(patches[:64], ids[:64], mode)  # compile here
    cluster, client, _ = _cluster(workers)
    times: dict[str, list[float]] = {"here": [], "cluster": [], "transfer": []}
    try:
        remote = client.scatter([patches], broadcast=True)[0]
        parts = np.array_split(ids, workers)
        client.gather([client.submit(_bins, remote, p[:64], mode, pure=False) for p in parts])
        for r in range(repeats):
            for mode_ in (["here", "cluster"] if r % 2 == 0 else ["cluster", "here"]):
                t0 = time.perf_counter()
                if mode_ == "here":
                    nbytes = _bins(patches, ids, mode).nbytes
                else:
                    client.gather([client.submit(_bins, remote, p, mode, pure=False)
                                   for p in parts])
                times[mode_].append(time.perf_counter() - t0)
            fut = client.submit(_made_here, nbytes, pure=False)
            client.gather(client.submit(len, fut))  # made on a worker, not moved yet
            t0 = time.perf_counter()
            fut.result()
            times["transfer"].append(time.perf_counter() - t0)
    finally:
        client.close()
        cluster.close()
    med = {m: statistics.median(t) for m, t in times.items()}
    return {"samples": samples, "features": int(ids.size), "bins_mb": round(nbytes / 2**20, 1),
            "cores": os.cpu_count(), "workers": workers,
            "load_1min": round(os.getloadavg()[0], 2),
            "here_s": round(med["here"], 2), "cluster_s": round(med["cluster"], 2),
            "ratio": round(med["here"] / med["cluster"], 3),
            "transfer_s": round(med["transfer"], 3),
            "transfer_mb_per_s": round(nbytes / 2**20 / med["transfer"], 1),
            "runs_s": {m: [round(v, 2) for v in t] for m, t in times.items()}}

