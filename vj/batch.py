"""Batch detection over many image files, in one process or on a Dask cluster.

:func:`detect_files` runs a cascade (optionally with the neural verifiers) over a list
of image files and streams one JSON Lines record per image to an append-only file
(:mod:`vj.batch_output`), a partition at a time, with a progress bar. A killed run
is continued with ``resume=True``: images already in the file are skipped, none is
lost or written twice. Unreadable images become error records, never fatal.

By default everything runs in this process, with no Dask involved. ``workers=N``
starts an embedded Dask ``LocalCluster`` of N processes (one thread each);
``scheduler="tcp://host:8786"`` uses a running cluster (:mod:`vj.batch_dask`, which
needs the ``dask`` extra). Either way each process builds the detector once and the
work is the same function (:func:`vj.batch_worker.detect_partition`), so the boxes
are the same.

Examples
--------
>>> from vj.batch import detect_files, iter_images
>>> summary = detect_files(iter_images(["photos/"]), "faces.jsonl")     # doctest: +SKIP
>>> summary = detect_files(iter_images(["photos/"]), "faces.jsonl",
...                        workers=2, resume=True)                     # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numba
from tqdm import tqdm

from .batch_output import JsonlOutput
from .batch_worker import DetectionSettings, DetectorSpec, detect_partition, install_detector
from .cascade import Cascade
from .cluster import SchedulerUnreachableError, cluster_client, dashboard_line
from .image_sources import IMAGE_SUFFIXES
from .models import load_default_cascade, read_cascade

__all__ = ["BatchSummary", "DetectionSettings", "SchedulerUnreachableError", "detect_files",
           "iter_images"]

#: Images per task: large enough that scheduling costs nothing next to detection,
#: small enough that a killed worker or client loses little work.
PARTITION_SIZE = 32


@dataclass
class BatchSummary:
    """What a :func:`detect_files` run did.

    Attributes
    ----------
    images : int
        Records written by this run (images with boxes plus errors).
    errors : int
        Of those, images that could not be read or detected.
    boxes : int
        Boxes written by this run.
    skipped : int
        Images skipped because the output already held them (resume).
    seconds : float
        Wall-clock time of the run, cluster start included.
    """

    images: int = 0
    errors: int = 0
    boxes: int = 0
    skipped: int = 0
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        """Images written per second of the run."""
        return self.images / self.seconds if self.seconds > 0 else 0.0


def iter_images(inputs: Iterable[str | os.PathLike]) -> Iterator[tuple[str, str]]:
    """``(path, key)`` for every image of files and folders (folders searched recursively).

    A file inside a folder argument is keyed by its path relative to that folder
    (``/``-separated); a file argument by the path exactly as given. Files of a
    folder come in sorted order, and folders are walked lazily, so a listing of
    millions of files starts at once.
    """
    for arg in inputs:
        path = Path(arg)
        if not path.is_dir():
            yield os.fspath(arg), os.fspath(arg)
            continue
        for root, dirs, files in os.walk(path):
            dirs.sort()
            rel = Path(root).relative_to(path)
            for name in sorted(files):
                if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                    yield os.path.join(root, name), (rel / name).as_posix()


def _partitions(items: Iterable[Any], skip: set[str], size: int,
                skipped: list[int]) -> Iterator[list[tuple[str, str]]]:
    seen: set[str] = set()
    part: list[tuple[str, str]] = []
    for item in items:
        path, key = (item if isinstance(item, tuple) else (item, item))
        path, key = os.fspath(path), os.fspath(key)
        if key in seen:
            continue
        if key in skip:
            skipped[0] += 1
            continue
        seen.add(key)
        part.append((path, key))
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part


def _cascade(cascade: Cascade | str | os.PathLike | None) -> Cascade:
    if isinstance(cascade, Cascade):
        return cascade
    if cascade is not None:
        return read_cascade(cascade)
    model, _, notice = load_default_cascade()
    if notice:
        warnings.warn(notice, stacklevel=3)
    return model


def detect_files(
    images: Iterable[str | os.PathLike | tuple[str | os.PathLike, str]],
    out: str | os.PathLike,
    *,
    cascade: Cascade | str | os.PathLike | None = None,
    settings: DetectionSettings | None = None,
    verify: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    kernel_threads: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    partition_size: int = PARTITION_SIZE,
    draw_dir: str | os.PathLike | None = None,
    progress: bool = True,
    on_partition: Callable[[list[dict[str, Any]]], None] | None = None,
) -> BatchSummary:
    """Detect in every image and stream the results to a JSON Lines file.

    Parameters
    ----------
    images : iterable of path or (path, key)
        Image files (see :func:`iter_images` for folders). A record's ``"image"`` is
        the key (the path as given when there is none); a key seen twice is done once.
    out : path
        The JSON Lines output (:mod:`vj.batch_output`), appended to as partitions finish.
    cascade : Cascade, name or path, optional
        The model (default: :func:`vj.models.load_default_cascade`).
    settings : DetectionSettings, optional
        Scale factor, neighbours and size limits (default: ``DetectionSettings()``).
    verify : bool
        Check the cascade's windows with the neural verifiers (PyTorch, loaded only in
        the processes that detect).
    workers : int, optional
        Run on an embedded Dask ``LocalCluster`` of this many processes.
    scheduler : str, optional
        Run on the Dask cluster of this scheduler address (``"tcp://host:8786"``).
    kernel_threads : int, optional
        Numba / OpenCV threads of each detection call (default: as configured in
        this process; cores // ``workers`` for an embedded cluster; the workers'
        own setting for ``scheduler``).
    resume : bool
        Continue an existing output: skip the images it holds.
    overwrite : bool
        Start an existing output afresh (otherwise an existing output needs ``resume``).
    partition_size : int
        Images per task, and per flush of the output.
    draw_dir : path, optional
        Also write annotated copies there (keyed like the records; on a cluster, a
        folder every worker can write).
    progress : bool
        Show a progress bar (images/s) and the cluster's dashboard link on stderr.
    on_partition : callable, optional
        Called with each partition's newly written records, after they are on disk.

    Returns
    -------
    BatchSummary

    Raises
    ------
    ValueError
        For bad options, an output that exists without ``resume``/``overwrite``, or
        both ``workers`` and ``scheduler``.
    FileNotFoundError
        If the cascade cannot be found.
    SchedulerUnreachableError
        If ``scheduler`` does not answer within a few seconds.
    """
    if workers is not None and scheduler is not None:
        raise ValueError("give workers (an embedded cluster) or scheduler, not both")
    if kernel_threads is not None and (int(kernel_threads) != kernel_threads
                                       or kernel_threads < 1):
        raise ValueError(f"kernel_threads must be a positive integer, got {kernel_threads!r}")
    if int(partition_size) != partition_size or partition_size < 1:
        raise ValueError(f"partition_size must be a positive integer, got {partition_size!r}")
    settings = settings if settings is not None else DetectionSettings()
    model = _cascade(cascade)
    t0 = time.perf_counter()
    summary = BatchSummary()
    total = len(images) if hasattr(images, "__len__") else None
    with JsonlOutput(out, resume=resume, overwrite=overwrite) as output:
        skipped = [0]
        parts = _partitions(images, output.done, int(partition_size), skipped)
        bar = tqdm(total=total, unit="img", desc="detect", disable=not progress,
                   file=sys.stderr, dynamic_ncols=True)

        def handle(records: list[dict[str, Any]]) -> None:
            written = [r for r in records if r["image"] not in output.done]
            output.write(written)
            summary.images += len(written)
            summary.errors += sum("error" in r for r in written)
            summary.boxes += sum(len(r.get("boxes", ())) for r in written)
            bar.n = summary.images + skipped[0]
            bar.update(0)
            if on_partition is not None:
                on_partition(written)

        draw = os.fspath(draw_dir) if draw_dir is not None else None
        try:
            if workers is None and scheduler is None:
                _run_here(DetectorSpec(model, verify, kernel_threads), parts, settings, draw,
                          handle)
            else:
                _run_on_cluster(model, verify, workers, scheduler, kernel_threads, parts,
                                settings, draw, handle, bar if progress else None)
        finally:
            bar.close()
        summary.skipped = skipped[0]
    summary.seconds = time.perf_counter() - t0
    return summary


def _run_here(spec: DetectorSpec, parts: Iterator[list[tuple[str, str]]],
              settings: DetectionSettings, draw: str | None,
              handle: Callable[[list[dict[str, Any]]], None]) -> None:
    key = install_detector(spec)
    threads = numba.get_num_threads(), cv2.getNumThreads()
    try:
        for part in parts:
            handle(detect_partition(part, key, settings, draw))
    finally:  # kernel_threads holds for this call only
        numba.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])


def _run_on_cluster(model: Cascade, verify: bool, workers: int | None, scheduler: str | None,
                    threads: int | None, parts: Iterator[list[tuple[str, str]]],
                    settings: DetectionSettings, draw: str | None,
                    handle: Callable[[list[dict[str, Any]]], None], bar: tqdm | None) -> None:
    # One kernel thread per core of an embedded cluster's worker; a remote cluster's
    # workers keep their own settings.
    if threads is None and workers is not None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    with cluster_client(workers, scheduler) as client:
        from .batch_dask import run_partitions  # imports Dask, which cluster_client checked

        if bar is not None:
            bar.write(dashboard_line(client), file=sys.stderr)
        spec = DetectorSpec(model, verify, kernel_threads=threads)
        run_partitions(client, parts, spec, settings, draw, handle)

