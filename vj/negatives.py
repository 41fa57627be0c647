"""Negative windows: random background windows, then the ones the cascade still accepts.

Each stage of a cascade is trained on negatives that every earlier stage
accepts (*bootstrapping*, Sung and Poggio; Viola and Jones). They are found by
scanning background images that contain no object:

* the background set is a finite list of *scan jobs*: every image at every
  pyramid level ``scale_factor ** (k + u)`` down to the window size, with a
  per-stage random offset ``u`` and a random 0/1-pixel shift, so that stages see
  fresh positions and scales;
* a stage visits the jobs in its own seeded random order; each job resizes the
  image as the detector does (``INTER_LINEAR_EXACT``) and lets the detector's
  parallel scan (:meth:`vj.detector.CascadeDetector.candidates`) find the
  windows the cascade accepts at that one scale, exactly the windows (and
  pixels) the detector would see;
* in a first pass over the jobs at most ``per_job`` windows are kept from a job
  (and only a random part of a level is scanned when that is sure to yield
  enough), so negatives come from many images; the first stage, with no
  cascade yet, takes random windows;
* a second pass scans every job whole and keeps every window it accepts; when
  it ends with fewer negatives than asked, the backgrounds are *exhausted*:
  the cascade rejects almost everything they hold, and training stops there.

The search is resumable: :class:`MiningState` holds what was found and where
the stream stands, and the same seed always walks the same stream.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numba
import numpy as np

from .cascade import Cascade
from .detector import CascadeDetector
from .feature_eval import window_norm_factors
from .image_sources import list_images, read_gray
from .threads import concurrent_calls_safe

__all__ = ["BackgroundPool", "JobRunner", "MiningState", "ThreadJobs", "mine_negatives"]


class BackgroundPool:
    """Background images held in memory, with their scan jobs.

    Parameters
    ----------
    images : list of (H, W) uint8 ndarray
        Images with no object in them; those smaller than the window are skipped.
    window : (int, int)
        Detector window ``(width, height)``.
    scale_factor : float
        Step between pyramid levels of the scan jobs.
    names : list of str, optional
        Where each image came from (identifies the pool in checkpoints).
    """

    def __init__(
        self,
        images: list[np.ndarray],
        window: tuple[int, int],
        scale_factor: float = 1.1,
        names: list[str] | None = None,
    ) -> None:
        if scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be > 1, got {scale_factor}")
        names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
        if len(names) != len(images):
            raise ValueError(f"{len(names)} names for {len(images)} images")
        self.window = (int(window[0]), int(window[1]))
        self.scale_factor = float(scale_factor)
        keep = [i for i, im in enumerate(images)
                if im.ndim == 2 and im.shape[1] >= self.window[0] and im.shape[0] >= self.window[1]]
        self.images = [np.ascontiguousarray(images[i], dtype=np.uint8) for i in keep]
        self.paths = [str(names[i]) for i in keep]
        if not self.images:
            raise ValueError("no background image is at least as large as the "
                             f"{self.window[0]}x{self.window[1]} window")
        ww, wh = self.window
        self.n_levels = np.array(
            [1 + int(math.floor(math.log(min(im.shape[1] / ww, im.shape[0] / wh))
                                / math.log(self.scale_factor) + 1e-9)) for im in self.images],
            np.int64)

    @classmethod
    def from_sources(
        cls,
        sources: list[str | os.PathLike],
        window: tuple[int, int],
        scale_factor: float = 1.1,
        max_images: int | None = None,
    ) -> BackgroundPool:
        """Read every image of the given folders / list files (the first ``max_images``)."""
        paths = list_images(sources)
        if max_images is not None:
            paths = paths[: int(max_images)]
        if not paths:
            raise ValueError(f"no background images in {', '.join(map(str, sources))}")
        return cls([read_gray(p) for p in paths], window, scale_factor, [str(p) for p in paths])

    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_jobs(self) -> int:
        """Scan jobs per pass: (image, pyramid level) pairs."""
        return int(self.n_levels.sum())

    def jobs(self, seed: int, stage: int) -> np.ndarray:
        """(n_jobs, 2) int64 ``(image, level)`` pairs in the stage's random order."""
        img = np.repeat(np.arange(len(self.images)), self.n_levels)
        lvl = np.concatenate([np.arange(n) for n in self.n_levels])
        order = np.random.default_rng([seed, stage, 1]).permutation(img.size)
        return np.stack([img[order], lvl[order]], axis=1)

    def level_image(self, image: int, level: int, offset: float, shift: tuple[int, int]):
        """The image resized to a job's scale and shifted by ``shift`` pixels, or None."""
        im = self.images[image]
        scale = self.scale_factor ** (level + offset)
        h, w = im.shape
        lw, lh = int(round(w / scale)), int(round(h / scale))
        if lw - shift[0] < self.window[0] or lh - shift[1] < self.window[1]:
            return None
        if (lw, lh) != (w, h):
            im = cv2.resize(im, (lw, lh), interpolation=cv2.INTER_LINEAR_EXACT)
        return np.ascontiguousarray(im[shift[1]:, shift[0]:])


@dataclass
class MiningState:
    """Progress of one stage's negative search (checkpointed while it runs).

    Attributes
    ----------
    patches : list of (n, h, w) uint8 ndarray
        Negatives found so far, job by job.
    next_job : int
        The next job of the stage's stream.
    windows : int
        Windows the cascade was evaluated on so far.
    accepted : int
        Of those, windows the cascade accepted (kept or not): ``accepted / windows``
        estimates the cascade's false-alarm rate on the backgrounds.
    """

    patches: list[np.ndarray] = field(default_factory=list)
    next_job: int = 0
    windows: int = 0
    accepted: int = 0

    @property
    def found(self) -> int:
        return sum(len(p) for p in self.patches)


class JobRunner(Protocol):
    """Runs a stage's scan jobs; results come back in job order.

    ``scanning(scan)`` is a context manager giving a function that maps
    ``scan`` (a :class:`_JobScanner`) over a range of job numbers and yields the
    results in order; ``batch_jobs`` is how many jobs the search asks for at once.
    """

    batch_jobs: int

    def scanning(self, scan: _JobScanner
                 ) -> contextlib.AbstractContextManager[Callable[[range], Iterable]]: ...


class ThreadJobs:
    """Scan jobs on threads of this process (the default :class:`JobRunner`).

    Parameters
    ----------
    workers : int, optional
        Threads (default: Numba's thread count; 1 under Numba's workqueue layer).
    """

    def __init__(self, workers: int | None = None) -> None:
        workers = workers or numba.get_num_threads()
        if not concurrent_calls_safe():
            workers = 1  # Numba's workqueue layer takes one calling thread at a time
        self.workers = int(workers)
        self.batch_jobs = 4 * self.workers

    @contextlib.contextmanager
    def scanning(self, scan: _JobScanner) -> Iterator[Callable[[range], Iterable]]:
        with ThreadPoolExecutor(max_workers=self.workers) as ex:
            yield lambda batch: ex.map(scan, batch)


def _job_rng(seed: int, stage: int, job: int) -> np.random.Generator:
    return np.random.default_rng([seed, stage, 2, job])


def mine_negatives(
    pool: BackgroundPool,
    cascade: Cascade | None,
    n_needed: int,
    *,
    seed: int,
    stage: int,
    per_job: int | None = None,
    acceptance_hint: float = 1.0,
    state: MiningState | None = None,
    checkpoint: Callable[[MiningState], None] | None = None,
    checkpoint_every_s: float = 60.0,
    progress: Callable[[MiningState], None] | None = None,
    workers: int | None = None,
    jobs: JobRunner | None = None,
) -> tuple[np.ndarray, MiningState, bool]:
    """Find ``n_needed`` windows of the backgrounds that ``cascade`` accepts.

    Parameters
    ----------
    pool : BackgroundPool
    cascade : Cascade or None
        The cascade trained so far; None takes random windows.
    n_needed : int
    seed, stage : int
        Select the stage's job order, level offset and window choices.
    per_job : int, optional
        Most windows kept from one job; default ``ceil(n_needed / 500)``.
    acceptance_hint : float
        Expected share of windows the cascade accepts (e.g. its estimated
        false-alarm rate). A job whose level would yield far more than
        ``per_job`` windows scans only a random part of it, so early stages do
        not scan whole images to keep a handful of windows.
    state : MiningState, optional
        Resume a search (from a checkpoint).
    checkpoint : callable, optional
        Called with the state every ``checkpoint_every_s`` seconds.
    progress : callable, optional
        Called with the state after every batch of jobs.
    workers : int, optional
        Jobs scanned concurrently, each on one thread (default: Numba's thread
        count). Results are applied in job order, so they do not depend on it.
    jobs : JobRunner, optional
        Where the scan jobs run instead of this process's threads, e.g. a Dask
        cluster (:class:`vj.negatives_dask.ClusterJobs`); the same results.

    Returns
    -------
    negatives : (n, h, w) uint8 ndarray
        ``n == n_needed`` unless the backgrounds ran out.
    state : MiningState
    exhausted : bool
        Both passes over the jobs ended before ``n_needed`` were found.
    """
    if n_needed < 1:
        raise ValueError(f"n_needed must be >= 1, got {n_needed}")
    if not 0 < acceptance_hint <= 1:
        raise ValueError(f"acceptance_hint must be in (0, 1], got {acceptance_hint}")
    per_job = per_job or max(1, math.ceil(n_needed / 500))
    state = state or MiningState()
    scan = _JobScanner(pool, cascade, seed, stage, per_job, n_needed, acceptance_hint)
    last_save = time.monotonic()
    runner = jobs if jobs is not None else ThreadJobs(workers)
    with runner.scanning(scan) as run_jobs:
        while state.found < n_needed and state.next_job < 2 * scan.n_jobs:
            start = state.next_job
            batch = range(start, min(2 * scan.n_jobs, start + runner.batch_jobs))
            _add_job_results(state, run_jobs(batch), start, n_needed)
            if progress is not None:
                progress(state)
            if checkpoint is not None and time.monotonic() - last_save > checkpoint_every_s:
                checkpoint(state)
                last_save = time.monotonic()
    ww, wh = pool.window
    patches = (np.concatenate(state.patches) if state.patches
               else np.zeros((0, wh, ww), np.uint8))
    return patches, state, state.found < n_needed


def _add_job_results(state: MiningState, results, first_job: int, n_needed: int) -> None:
    """Add the windows of consecutive jobs to ``state``, in job order, up to ``n_needed``.

    ``results`` yields ``(windows, n_scanned, n_accepted)`` per job from
    ``first_job`` on; the jobs after the one that completes the search are dropped.
    """
    for j, (found, n_win, n_acc) in enumerate(results, first_job):
        take = min(len(found), n_needed - state.found)
        if take:
            state.patches.append(np.ascontiguousarray(found[:take]))
        state.windows += n_win
        state.accepted += n_acc
        state.next_job = j + 1
        if state.found >= n_needed:
            break


class _JobScanner:
    """Scan job ``j`` of a stage's stream (callable from many threads at once).

    Jobs ``0 .. n_jobs - 1`` are the first pass (at most ``per_job`` windows
    each, from a random region when a level holds far more windows than that),
    jobs ``n_jobs .. 2 n_jobs - 1`` the second (whole levels, up to ``n_needed``).
    Each job draws from its own generator, so the results do not depend on
    which thread runs it or when.
    """

    def __init__(self, pool: BackgroundPool, cascade: Cascade | None, seed: int, stage: int,
                 per_job: int, n_needed: int, acceptance_hint: float) -> None:
        self.pool, self.cascade = pool, cascade
        self.seed, self.stage = seed, stage
        self.per_job, self.n_needed = per_job, n_needed
        self.acceptance_hint = acceptance_hint
        self.jobs = pool.jobs(seed, stage)
        self.n_jobs = len(self.jobs)
        self.offset = float(np.random.default_rng([seed, stage, 3]).random())
        # Enough windows per job to expect several times ``per_job`` acceptances.
        self.region_windows = 8 * per_job / acceptance_hint
        self._local = threading.local()

    def __call__(self, j: int) -> tuple[np.ndarray, int, int]:
        """The windows job ``j`` keeps, the windows it scanned and how many were accepted."""
        pool = self.pool
        rng = _job_rng(self.seed, self.stage, j)
        first_pass = j < self.n_jobs
        cap = self.per_job if first_pass else self.n_needed
        shift = (int(rng.integers(2)), int(rng.integers(2)))
        image, level = self.jobs[j % self.n_jobs]
        im = pool.level_image(int(image), int(level), self.offset, shift)
        if im is None:
            return np.zeros((0, *pool.window[::-1]), np.uint8), 0, 0
        if self.cascade is None:
            found = _random_windows(im, pool.window, cap, rng)
            return found, len(found), len(found)
        if first_pass:
            im = _random_region(im, pool.window, self.region_windows, rng)
        det = self._detector()
        ww, wh = pool.window
        boxes = det.candidates(im, min_size=(ww, wh), max_size=(ww, wh))
        n_windows, n_accepted = det.last_stats.windows, len(boxes)
        if len(boxes) > cap:
            boxes = boxes[np.sort(rng.choice(len(boxes), cap, replace=False))]
        found = np.zeros((len(boxes), wh, ww), np.uint8)
        for i, (x, y, _, _) in enumerate(boxes.tolist()):
            found[i] = im[y:y + wh, x:x + ww]
        return found, n_windows, n_accepted

    def _detector(self) -> CascadeDetector:
        """This thread's detector.

        One per thread (it records per-call statistics), each scanning
        single-threaded: small scans in parallel beat one scan spread over
        threads that must be woken for every call.
        """
        if not hasattr(self._local, "detector"):
            self._local.detector = CascadeDetector(self.cascade)
            numba.set_num_threads(1)
        return self._local.detector


def _random_region(im: np.ndarray, window: tuple[int, int], n_windows: float,
                   rng: np.random.Generator) -> np.ndarray:
    """A random part of ``im`` holding about ``n_windows`` windows (at a 2-pixel step)."""
    ww, wh = window
    h, w = im.shape
    have = ((w - ww) // 2 + 1) * ((h - wh) // 2 + 1)
    if have <= n_windows:
        return im
    f = math.sqrt(n_windows / have)
    rw = min(w, max(ww, int(round(ww + (w - ww) * f))))
    rh = min(h, max(wh, int(round(wh + (h - wh) * f))))
    # Even offsets keep the job's pixel shift (and so its window grid).
    x = 2 * int(rng.integers(0, (w - rw) // 2 + 1))
    y = 2 * int(rng.integers(0, (h - rh) // 2 + 1))
    return np.ascontiguousarray(im[y:y + rh, x:x + rw])


def _random_windows(im: np.ndarray, window: tuple[int, int], n: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` random windows the detector would not skip as flat."""
    ww, wh = window
    h, w = im.shape
    xs = rng.integers(0, w - ww + 1, n)
    ys = rng.integers(0, h - wh + 1, n)
    out = np.stack([im[y:y + wh, x:x + ww] for x, y in zip(xs, ys, strict=True)])
    return out[window_norm_factors(out)[1]]
