"""``vj-bench scale``: batch-detection throughput, one process vs a Dask ``LocalCluster``.

Runs :func:`vj.batch.detect_files` over the same folder of images (at least 1,000
640x480 photos; generated from the shared backgrounds and faces when no folder is
given) in one process (the default path, no Dask) and on embedded ``LocalCluster``\\ s
of 1 and 2 worker processes (one thread each; Numba threads = cores / workers),
interleaved, and reports median images/s and the ratios to the single process.
The clusters are started before the timed runs (their start-up is reported on its
own), as a long batch pays it once.

Dask's own cost per image is measured two ways: the 1-worker cluster against the
single process (the same work and threads, plus Dask), and the round trip of tasks
that do nothing but carry a partition's paths out and its records back.

``--mining`` times hard-negative mining instead (what ``vj-train-cascade --workers``
spreads): the shipped cascade's first ``--stages`` stages searching the UMD
backgrounds for ``--negatives`` windows, on this process's threads vs a 2-worker
``LocalCluster``, interleaved; the negatives must be identical.

Usage::

    vj-bench scale [--images DIR] [--count 1000] [--workdir DIR] [--repeats 3]
                   [--partition-size 32] [--json OUT]
    vj-bench scale --mining [--stages 16] [--negatives 2000] [--bg-images 1000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from vj.atomic import atomic_write_text
from vj.batch import PARTITION_SIZE, detect_files, iter_images
from vj.batch_worker import DetectionSettings
from vj.image_sources import image_files, resolve_data_dir

__all__ = ["generate_images", "main", "run"]

SIZE = (640, 480)


def generate_images(out_dir: str | os.PathLike, n: int, data_dir: str | None = None,
                    seed: int = 0) -> list[Path]:
    """``n`` 640x480 gray JPEGs: shared backgrounds with 0-3 pasted faces (kept if present).

    Raises
    ------
    ValueError
        If the shared data folder (backgrounds, faces) is not found.
    """
    out = Path(out_dir)
    paths = [out / f"scene_{i:06d}.jpg" for i in range(n)]
    if all(p.is_file() for p in paths):
        return paths
    root = resolve_data_dir(data_dir)
    backgrounds = image_files(root / "backgrounds" / "umd") + image_files(root / "backgrounds"
                                                                           / "sun")
    faces = image_files(root / "faces" / "caltech36")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for path in paths:
        bg = cv2.imread(str(backgrounds[rng.integers(len(backgrounds))]), cv2.IMREAD_GRAYSCALE)
        img = cv2.resize(bg, SIZE, interpolation=cv2.INTER_AREA)
        for _ in range(int(rng.integers(0, 4))):
            face = cv2.imread(str(faces[rng.integers(len(faces))]), cv2.IMREAD_GRAYSCALE)
            s = int(rng.integers(40, 160))
            x, y = int(rng.integers(0, SIZE[0] - s)), int(rng.integers(0, SIZE[1] - s))
            img[y:y + s, x:x + s] = cv2.resize(face, (s, s), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return paths


def _noop_partition(items: list[tuple[str, str]]) -> list[dict]:
    """A task of the real shape that does no work: paths out, empty records back."""
    return [{"image": key, "boxes": []} for _, key in items]


def _task_round_trip_s(client, items: list[tuple[str, str]], size: int) -> float:
    """Seconds per image Dask spends on do-nothing tasks of ``size`` images, all in flight."""
    parts = [items[i:i + size] for i in range(0, len(items), size)]
    t0 = time.perf_counter()
    client.gather([client.submit(_noop_partition, p, pure=False) for p in parts])
    return (time.perf_counter() - t0) / len(items)


def _start_cluster(n: int):
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(cluster, set_as_default=False)
    return cluster, client, time.perf_counter() - t0


def run(items: list[tuple[str, str]], repeats: int = 3, partition_size: int = PARTITION_SIZE,
        workers: tuple[int, ...] = (1, 2)) -> dict:
    """Interleaved timings of the single process and each cluster size; medians and ratios."""
    settings = DetectionSettings()
    cores = os.cpu_count() or 1
    clusters = {n: _start_cluster(n) for n in workers}
    scratch = Path(tempfile.mkdtemp(prefix="vj-bench-scale-"))

    def one(mode: str | int, subset: list[tuple[str, str]]) -> float:
        kw = {}
        if mode != "single":
            kw = {"scheduler": clusters[mode][1].scheduler.address,
                  "kernel_threads": max(1, cores // int(mode))}
        t0 = time.perf_counter()
        detect_files(subset, scratch / f"{mode}.jsonl", settings=settings, overwrite=True,
                     partition_size=partition_size, progress=False, **kw)
        return time.perf_counter() - t0

    modes: list[str | int] = ["single", *workers]
    try:
        for mode in modes:  # warm: detectors built, files in the page cache
            one(mode, items[: 4 * partition_size])
        times: dict[str | int, list[float]] = {m: [] for m in modes}
        load = [os.getloadavg()[0]]
        for r in range(repeats):
            for mode in modes[r % len(modes):] + modes[: r % len(modes)]:
                times[mode].append(one(mode, items))
            load.append(os.getloadavg()[0])
        trip = {n: statistics.median(_task_round_trip_s(clusters[n][1], items, partition_size)
                                     for _ in range(3)) for n in workers}
    finally:
        for cluster, client, _ in clusters.values():
            client.close()
            cluster.close()
    n = len(items)
    med = {m: statistics.median(t) for m, t in times.items()}
    per_image_ms = 1e3 * med["single"] / n
    report = {
        "images": n, "partition_size": partition_size, "repeats": repeats, "cores": cores,
        "load_1min": [round(v, 2) for v in load],
        "single": {"images_per_s": round(n / med["single"], 2),
                   "ms_per_image": round(per_image_ms, 2)},
    }
    for w in workers:
        report[f"workers_{w}"] = {
            "images_per_s": round(n / med[w], 2),
            "ratio_to_single": round(med["single"] / med[w], 3),
            "cluster_start_s": round(clusters[w][2], 2),
            "task_round_trip_ms_per_image": round(1e3 * trip[w], 3),
        }
    overhead_ms = 1e3 * (med[workers[0]] - med["single"]) / n
    report["dask_overhead"] = {
        "end_to_end_ms_per_image": round(overhead_ms, 3),
        "end_to_end_share": round(overhead_ms / per_image_ms, 4),
        "round_trip_share": round(1e3 * trip[workers[0]] / per_image_ms, 4),
    }
    report["runs_s"] = {str(m): [round(v, 2) for v in t] for m, t in times.items()}
    return report


def run_mining(stages: int, negatives: int, bg_images: int, repeats: int = 3,
               data_dir: str | None = None, workers: int = 2) -> dict:
    """Interleaved timings of negative mining on threads vs a ``workers``-process cluster."""
    import vj
    from vj.negatives import BackgroundPool, mine_negatives
    from vj.negatives_dask import ClusterJobs

    root = resolve_data_dir(data_dir)
    cascade = vj.load_cascade("frontalface").truncated(stages)
    pool = BackgroundPool.from_sources([root / "backgrounds" / "umd"], cascade.window,
                                       max_images=bg_images)
    cluster, client, start_s = _start_cluster(workers)
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


def _print(report: dict, workers: tuple[int, ...]) -> None:
    s = report["single"]
    print(f"{report['images']} images 640x480, partitions of {report['partition_size']}, "
          f"medians of {report['repeats']}, load {report['load_1min']}")
    print(f"  single process      {s['images_per_s']:8.2f} img/s  "
          f"({s['ms_per_image']:.1f} ms/image)")
    for w in workers:
        r = report[f"workers_{w}"]
        print(f"  LocalCluster x{w}     {r['images_per_s']:8.2f} img/s  {r['ratio_to_single']:.2f}x"
              f"  (start {r['cluster_start_s']:.1f} s, empty-task round trip "
              f"{r['task_round_trip_ms_per_image']:.3f} ms/image)")
    o = report["dask_overhead"]
    print(f"  Dask overhead per image: {o['end_to_end_ms_per_image']:.2f} ms end to end "
          f"({100 * o['end_to_end_share']:.1f} %), {100 * o['round_trip_share']:.2f} % "
          "in empty-task round trips")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table (and write ``--json``)."""
    p = argparse.ArgumentParser(prog="vj-bench scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", metavar="DIR", help="a folder of images (default: generate)")
    p.add_argument("--count", type=int, default=1000, metavar="N",
                   help="images to time: the first N of --images, or N generated (1000)")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "vj-bench-scale"),
                   help="where generated images go (never inside the repository)")
    p.add_argument("--data", default=None, help="shared data folder (default: $VJ_DATA)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--partition-size", type=int, default=PARTITION_SIZE)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    p.add_argument("--mining", action="store_true",
                   help="time negative mining (threads vs a 2-worker cluster) instead")
    p.add_argument("--stages", type=int, default=16, help="--mining: cascade stages (16)")
    p.add_argument("--negatives", type=int, default=2000, help="--mining: windows (2000)")
    p.add_argument("--bg-images", type=int, default=1000,
                   help="--mining: UMD background images (1000)")
    args = p.parse_args(argv)
    logging.getLogger("distributed").setLevel(logging.ERROR)  # no INFO lines at cluster close
    if args.mining:
        report = run_mining(args.stages, args.negatives, args.bg_images, args.repeats,
                            args.data)
        print(json.dumps(report, indent=1))
        if args.json:
            atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
        return 0
    try:
        if args.images:
            items = list(iter_images([args.images]))[: args.count]
        else:
            generate_images(args.workdir, args.count, args.data)
            items = list(iter_images([args.workdir]))[: args.count]
        if not items:
            raise ValueError(f"no images in {args.images or args.workdir}")
    except (ValueError, FileNotFoundError) as exc:
        print(f"vj-bench scale: {exc}")
        return 2
    workers = tuple(args.workers)
    report = run(items, args.repeats, args.partition_size, workers)
    _print(report, workers)
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
