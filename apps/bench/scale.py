"""``vj-bench scale``: batch-detection throughput, one process vs a Dask ``LocalCluster``.

Runs :func:`vj.batch.detect_files` over the same folder of images (at least 1,000
640x480 photos; generated from the shared backgrounds and faces when no folder is
given) in one process (the default path, no Dask) and on embedded ``LocalCluster``\\ s
of 1 and 2 worker processes (one thread each; Numba threads = cores / workers),
interleaved, and reports median images/s and the ratios to the single process.
The clusters are started before the timed runs (their start-up is reported on its
own), as a long batch pays it once.

Dask's own cost per image is measured three ways: the 1-worker cluster against the
single process (the same work and threads, plus Dask) in CPU time (this process,
the workers and their nannies: robust on a shared machine) and in wall time, and the
round trip of tasks that do nothing but carry a partition's paths out and its
records back.

``--mining`` and ``--features`` time cascade training's steps instead
(:mod:`vj_apps.bench.scale_training`).

Usage::

    vj-bench scale [--images DIR] [--count 1000] [--workdir DIR] [--repeats 3]
                   [--partition-size 32] [--json OUT]
    vj-bench scale --mining [--stages 16] [--negatives 2000] [--bg-images 1000]
    vj-bench scale --features [--samples 14000] [--fraction 0.3]
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
from vj.cluster import local_cluster
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
    from distributed import Client

    t0 = time.perf_counter()
    cluster = local_cluster(n)  # as vj-detect --workers N starts it
    client = Client(cluster, set_as_default=False)
    return cluster, client, time.perf_counter() - t0


def _cluster_processes(client) -> list:
    """The workers' processes and their nannies (psutil handles)."""
    import psutil

    procs = []
    for pid in client.run(os.getpid).values():
        worker = psutil.Process(pid)
        procs += [worker, worker.parent()]
    return procs


def _cpu_s(procs: list) -> float:
    """CPU seconds of this process (client, in-process scheduler) and ``procs``."""
    total = time.process_time()
    for proc in procs:
        t = proc.cpu_times()
        total += t.user + t.system
    return total


class _Runs:
    """Timed runs of each mode over the same images: wall and CPU seconds."""

    def __init__(self, items, partition_size: int, workers: tuple[int, ...]) -> None:
        self.items, self.partition_size = items, partition_size
        self.cores = os.cpu_count() or 1
        self.clusters = {n: _start_cluster(n) for n in workers}
        self.procs = {n: _cluster_processes(c[1]) for n, c in self.clusters.items()}
        self.scratch = Path(tempfile.mkdtemp(prefix="vj-bench-scale-"))
        self.modes: list[str | int] = ["single", "single-1", *workers]
        self.wall: dict[str | int, list[float]] = {m: [] for m in self.modes}
        self.cpu: dict[str | int, list[float]] = {m: [] for m in self.modes}
        self.main_cpu: list[float] = []  # the single process's calling thread

    def one(self, mode: str | int, items=None) -> None:
        """Run ``mode`` over ``items`` (recorded when they are all the images)."""
        kw: dict = {"kernel_threads": 1} if mode == "single-1" else {}
        if mode in self.clusters:
            kw = {"scheduler": self.clusters[mode][1].scheduler.address,
                  "kernel_threads": max(1, self.cores // int(mode))}
        procs = self.procs.get(mode, [])
        c0, t0, m0 = _cpu_s(procs), time.perf_counter(), time.thread_time()
        detect_files(items or self.items, self.scratch / f"{mode}.jsonl",
                     settings=DetectionSettings(), overwrite=True,
                     partition_size=self.partition_size, progress=False, **kw)
        if items is None:
            self.wall[mode].append(time.perf_counter() - t0)
            self.cpu[mode].append(_cpu_s(procs) - c0)
            if mode == "single":
                self.main_cpu.append(time.thread_time() - m0)

    def close(self) -> None:
        for cluster, client, _ in self.clusters.values():
            client.close()
            cluster.close()


def run(items: list[tuple[str, str]], repeats: int = 3, partition_size: int = PARTITION_SIZE,
        workers: tuple[int, ...] = (1, 2)) -> dict:
    """Interleaved runs of the single process and each cluster size: medians and ratios."""
    runs = _Runs(items, partition_size, workers)
    modes = runs.modes
    load = [os.getloadavg()[0]]
    try:
        for mode in modes:  # warm: detectors built, files in the page cache
            runs.one(mode, items[: 4 * partition_size])
        for r in range(repeats):
            for mode in modes[r % len(modes):] + modes[: r % len(modes)]:
                runs.one(mode)
            load.append(os.getloadavg()[0])
        trip = {n: statistics.median(_task_round_trip_s(runs.clusters[n][1], items,
                                                        partition_size) for _ in range(3))
                for n in workers}
    finally:
        runs.close()
    return _report(runs, trip, load, repeats)


def _report(runs: _Runs, trip: dict[int, float], load: list[float], repeats: int) -> dict:
    n, workers = len(runs.items), list(runs.clusters)
    wall = {m: statistics.median(t) for m, t in runs.wall.items()}
    cpu = {m: 1e3 * statistics.median(t) / n for m, t in runs.cpu.items()}
    report: dict = {"images": n, "partition_size": runs.partition_size, "repeats": repeats,
                    "cores": runs.cores, "load_1min": [round(v, 2) for v in load]}
    for m in runs.modes:
        report[m if isinstance(m, str) else f"workers_{m}"] = {
            "images_per_s": round(n / wall[m], 2), "ms_per_image": round(1e3 * wall[m] / n, 2),
            "ratio_to_single": round(wall["single"] / wall[m], 3),
            "ratio_to_single_1": round(wall["single-1"] / wall[m], 3),
            "cpu_ms_per_image": round(cpu[m], 2)}
    for w in workers:
        report[f"workers_{w}"].update(
            cluster_start_s=round(runs.clusters[w][2], 2),
            task_round_trip_ms_per_image=round(1e3 * trip[w], 3))
    # On cores nobody else uses, the single process takes about its calling thread's
    # CPU time per image (Numba's other thread works alongside it), one kernel thread
    # its CPU time, and w workers their CPU time / w: a projection, not a measurement.
    main = 1e3 * statistics.median(runs.main_cpu) / n
    report["idle_projection"] = {
        "single_ms_per_image": round(main, 2), "single_1_ms_per_image": round(cpu["single-1"], 2),
        **{f"workers_{w}_ms_per_image": round(cpu[w] / min(w, runs.cores), 2) for w in workers}}
    # Like for like: workers with one kernel thread each (as many as cores) vs the
    # single process on one thread; else the first cluster vs the default process.
    one = next((w for w in workers if runs.cores // w == 1), workers[0])
    peer = "single-1" if runs.cores // one == 1 else "single"
    report["dask_overhead"] = {
        "compared": f"{one} workers vs {peer}",
        "cpu_ms_per_image": round(cpu[one] - cpu[peer], 3),
        "cpu_share": round((cpu[one] - cpu[peer]) / cpu[peer], 4),
        "round_trip_ms_per_image": round(1e3 * trip[one], 3),
        "round_trip_share": round(1e3 * trip[one] / cpu[peer], 4),
    }
    report["runs_s"] = {str(m): [round(v, 2) for v in t] for m, t in runs.wall.items()}
    report["runs_cpu_s"] = {str(m): [round(v, 2) for v in t] for m, t in runs.cpu.items()}
    return report


def _print(report: dict, workers: tuple[int, ...]) -> None:
    print(f"{report['images']} images 640x480, partitions of {report['partition_size']}, "
          f"medians of {report['repeats']}, load {report['load_1min']}")
    names = {"single": "single process", "single-1": "single, 1 thread",
             **{f"workers_{w}": f"LocalCluster x{w}" for w in workers}}
    for key, name in names.items():
        r = report[key]
        line = (f"  {name:18s}{r['images_per_s']:7.2f} img/s  {r['ratio_to_single']:.2f}x "
                f"single, {r['ratio_to_single_1']:.2f}x 1 thread; CPU "
                f"{r['cpu_ms_per_image']:.1f} ms/image")
        if "cluster_start_s" in r:
            line += (f" (start {r['cluster_start_s']:.1f} s, empty-task round trip "
                     f"{r['task_round_trip_ms_per_image']:.3f} ms/image)")
        print(line)
    p = report["idle_projection"]
    print("  on idle cores (projected from CPU times), ms/image: " +
          ", ".join(f"{k[:-len('_ms_per_image')]} {v:.1f}" for k, v in p.items()))
    o = report["dask_overhead"]
    print(f"  Dask per image ({o['compared']}): {o['cpu_ms_per_image']:+.2f} ms CPU "
          f"({100 * o['cpu_share']:+.1f} %); empty-task round trip "
          f"{o['round_trip_ms_per_image']:.3f} ms ({100 * o['round_trip_share']:.2f} %)")


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
    p.add_argument("--features", action="store_true",
                   help="time feature values + quantisation here vs split over 2 workers")
    p.add_argument("--samples", type=int, default=14_000, help="--features: windows (14000)")
    p.add_argument("--fraction", type=float, default=0.3,
                   help="--features: share of the BASIC features (0.3)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.count < 1 or args.partition_size < 1:
        p.error("--repeats, --count and --partition-size must be >= 1")
    logging.getLogger("distributed").setLevel(logging.ERROR)  # no INFO lines at cluster close
    if args.mining or args.features:
        from vj_apps.bench.scale_training import run_features, run_mining

        report = (run_mining(args.stages, args.negatives, args.bg_images, args.repeats,
                             args.data) if args.mining
                  else run_features(args.samples, args.fraction, repeats=args.repeats))
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
