"""Hard-negative mining on a Dask cluster: a stage's scan jobs spread over the workers.

:class:`ClusterJobs` is a :class:`vj.negatives.JobRunner`: :func:`vj.negatives.mine_negatives`
hands it ranges of job numbers and applies the results in job order, exactly as with
threads, so a cluster finds the same negatives (and training makes the same cascade)
as one process with the same seed.

What travels:

* the background pool once per worker (a task's result, fetched by the workers
  that need it): its file paths and image sizes when the
  images are files (each worker reads an image the first time a job needs it, and
  checks its size), else the pixels;
* per stage, the cascade so far and the stage's search settings, once per worker;
* per task, a few consecutive job numbers; back, the windows those jobs keep.

Tasks are pure functions of the job number, so a task that Dask reruns after a
worker died returns the same windows. The pool and the stage settings reach the
workers as results of tasks, not as scattered data: Dask drops spare copies of
data it holds more than once, and scattered data whose last copy was on a worker
that died is gone, while a task's result is computed again. One batch of jobs
is submitted ahead, so the workers do not wait while this process merges results.

Imported only when a cluster is used; needs the ``dask`` extra (``distributed``).
"""

from __future__ import annotations

import contextlib
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from distributed import Client, Future

from .image_sources import read_gray
from .negatives import BackgroundPool, _JobScanner

__all__ = ["ClusterJobs"]

#: Scan jobs per task at first; then sized so a task takes about TASK_S seconds.
JOBS_PER_TASK = 8
TASK_S = 0.25
MAX_JOBS_PER_TASK = 1024
#: Tasks per worker thread in one batch.
TASKS_PER_THREAD = 4

#: Per worker process: background pools and stage scanners, by token (the latest few).
_POOLS: dict[str, BackgroundPool] = {}
_SCANNERS: dict[str, _JobScanner] = {}
_KEEP = 2


class _FileImages(Sequence):
    """A pool's images, read from their files on first use (and kept)."""

    def __init__(self, paths: list[str], shapes: list[tuple[int, int]]) -> None:
        self.paths, self.shapes = paths, shapes
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        if i not in self._cache:
            img = read_gray(self.paths[i])
            if img.shape != tuple(self.shapes[i]):
                raise ValueError(
                    f"background {self.paths[i]} is {img.shape[1]}x{img.shape[0]} on this "
                    f"worker but {self.shapes[i][1]}x{self.shapes[i][0]} where training "
                    "runs; the workers must see the same files at the same paths")
            self._cache[i] = img
        return self._cache[i]


class _PoolFiles:
    """What a worker needs to rebuild a pool of image files: paths, sizes, settings."""

    def __init__(self, pool: BackgroundPool) -> None:
        self.paths = list(pool.paths)
        self.shapes = [im.shape for im in pool.images]
        self.window, self.scale_factor = pool.window, pool.scale_factor
        self.n_levels = pool.n_levels

    def pool(self) -> BackgroundPool:
        # The pool's own constructor would read every image; set its state instead.
        pool = BackgroundPool.__new__(BackgroundPool)
        pool.window, pool.scale_factor = self.window, self.scale_factor
        pool.paths, pool.n_levels = self.paths, self.n_levels
        pool.images = _FileImages(self.paths, self.shapes)  # type: ignore[assignment]
        return pool


def _remember(cache: dict[str, Any], key: str, value: Any) -> Any:
    while len(cache) >= _KEEP:
        cache.pop(next(iter(cache)))
    cache[key] = value
    return value


def _hold(value: Any) -> Any:
    """A task returning its argument: data the scheduler can compute again if lost."""
    return value


def _share(client: Client, value: Any) -> Future:
    """``value`` on the cluster as a task's result (see the module docstring)."""
    with warnings.catch_warnings():
        # A pool of pixels is large; it travels once either way.
        warnings.filterwarnings("ignore", message="Sending large graph")
        return client.submit(_hold, value, pure=False)


def _scan_jobs(pool_key: str, pool_source: BackgroundPool | _PoolFiles, scan_key: str,
               scan_args: tuple, jobs: range) -> tuple[list[tuple[np.ndarray, int, int]], float]:
    """Run scan jobs in a worker: ``(windows, n_scanned, n_accepted)`` per job, and seconds."""
    t0 = time.perf_counter()
    scan = _SCANNERS.get(scan_key)
    if scan is None:
        pool = _POOLS.get(pool_key)
        if pool is None:
            # Jobs resize small images, one job per worker thread: OpenCV's own thread
            # pool would only spin against the other workers on the same cores.
            cv2.setNumThreads(1)
            source = pool_source
            pool = _remember(_POOLS, pool_key, source.pool() if isinstance(source, _PoolFiles)
                             else source)
        scan = _remember(_SCANNERS, scan_key, _JobScanner(pool, *scan_args))
    return [scan(j) for j in jobs], time.perf_counter() - t0


class ClusterJobs:
    """Run negative-mining scan jobs on a Dask cluster (a :class:`vj.negatives.JobRunner`).

    Parameters
    ----------
    client : distributed.Client
        E.g. from :func:`vj.cluster.cluster_client`.
    pool : BackgroundPool
        The pool every stage mines; sent to each worker once (paths when its images
        are files every worker can read at the same paths, pixels otherwise).
    jobs_per_task : int, optional
        Consecutive scan jobs per task. Default: adapted as the search goes, so a
        task takes about :data:`TASK_S` seconds (a job takes from well under a
        millisecond in early stages to tens of milliseconds in late ones).

    Examples
    --------
    >>> from vj.cluster import cluster_client
    >>> with cluster_client(workers=2) as client:                   # doctest: +SKIP
    ...     result = train_cascade(positives, pool, config, "out/",
    ...                            mining_jobs=ClusterJobs(client, pool))
    """

    def __init__(self, client: Client, pool: BackgroundPool,
                 jobs_per_task: int | None = None) -> None:
        if jobs_per_task is not None and (int(jobs_per_task) != jobs_per_task
                                          or jobs_per_task < 1):
            raise ValueError(f"jobs_per_task must be a positive integer, got {jobs_per_task!r}")
        self.client = client
        self.fixed = jobs_per_task is not None
        self.jobs_per_task = int(jobs_per_task or JOBS_PER_TASK)
        files = all(Path(p).is_file() for p in pool.paths)
        self._pool_key = uuid.uuid4().hex
        self._pool = _share(client, _PoolFiles(pool) if files else pool)
        self.threads = max(1, sum(client.nthreads().values()))

    @property
    def batch_jobs(self) -> int:
        """Jobs the search asks for at once: a few tasks per worker thread."""
        return self.jobs_per_task * TASKS_PER_THREAD * self.threads

    def submit(self, key: str, args: Future, jobs: range) -> Future:
        """One task: scan jobs ``jobs`` of the stage ``key`` / ``args`` stand for."""
        return self.client.submit(_scan_jobs, self._pool_key, self._pool, key, args, jobs,
                                  pure=False)

    def adapt(self, n_jobs: int, seconds: float) -> None:
        """Size later tasks from the compute time ``n_jobs`` jobs took."""
        if not self.fixed and n_jobs:
            per_job = max(seconds / n_jobs, 1e-6)
            self.jobs_per_task = int(min(MAX_JOBS_PER_TASK, max(1, round(TASK_S / per_job))))

    @contextlib.contextmanager
    def scanning(self, scan: _JobScanner) -> Iterator[Callable[[range], Iterable]]:
        """A function mapping ``scan`` over job ranges on the cluster, results in order."""
        args = _share(self.client, (scan.cascade, scan.seed, scan.stage, scan.per_job,
                                    scan.n_needed, scan.acceptance_hint))
        stream = _JobStream(self, uuid.uuid4().hex, args, 2 * scan.n_jobs)
        try:
            yield stream.run
        finally:
            stream.cancel()
            args.release()


class _JobStream:
    """One stage's jobs on the cluster: consecutive batches, the next one submitted ahead.

    Tasks cover ``[first, submitted)`` in consecutive chunks; results of jobs past
    the batch being read wait in ``done`` for the next batch.
    """

    def __init__(self, jobs: ClusterJobs, key: str, args: Future, end: int) -> None:
        self.jobs, self.key, self.args, self.end = jobs, key, args, end
        self.pending: list[tuple[range, Future]] = []
        self.done: dict[int, tuple[np.ndarray, int, int]] = {}
        self.submitted: int | None = None

    def _submit_until(self, stop: int) -> None:
        stop = min(stop, self.end)
        while self.submitted < stop:
            chunk = range(self.submitted, min(self.submitted + self.jobs.jobs_per_task, stop))
            self.pending.append((chunk, self.jobs.submit(self.key, self.args, chunk)))
            self.submitted = chunk.stop

    def run(self, batch: range) -> Iterator[tuple[np.ndarray, int, int]]:
        """The results of ``batch`` in job order (the batch after it is submitted too)."""
        if self.submitted is None or batch.start not in self.done and (
                not self.pending or self.pending[0][0].start != batch.start):
            self.cancel()  # not the batch after the last one: start over from here
            self.submitted = batch.start
        self._submit_until(batch.stop)
        self._submit_until(batch.stop + self.jobs.batch_jobs)
        need = [(r, f) for r, f in self.pending if r.start < batch.stop]
        self.pending = self.pending[len(need):]
        if need:
            out = self.jobs.client.gather([f for _, f in need])
            for (chunk, _), (results, _) in zip(need, out, strict=True):
                self.done.update(zip(chunk, results, strict=True))
            self.jobs.adapt(sum(len(r) for r, _ in need), sum(s for _, s in out))
        for j in batch:
            yield self.done.pop(j)

    def cancel(self) -> None:
        """Cancel the tasks not read yet."""
        for _, fut in self.pending:
            fut.cancel()
        self.pending, self.done = [], {}
