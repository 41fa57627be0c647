"""Batch detection on a Dask cluster: an embedded ``LocalCluster`` or a scheduler's address.

Imported only when a cluster is asked for; needs the ``dask`` extra (``distributed``).

How nothing is lost or duplicated:

* tasks carry file paths (a partition of ``(path, key)`` pairs), never pixels;
* each worker builds the detector once, when it starts (:class:`DetectorPlugin`,
  which Dask also runs on workers that join or restart later);
* a task's records come back to the client, and only the client writes the output,
  after the task completed; a worker that dies takes only unfinished tasks with it,
  and Dask reruns those elsewhere;
* the output drops a record whose image is already written, so a task run twice
  cannot write an image twice;
* a partition that keeps killing workers (Dask gives up after a few deaths) is split
  into one task per image, and an image that still kills its worker is recorded as
  an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from importlib.util import find_spec
from typing import Any

from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin, as_completed

from .batch import SchedulerUnreachableError
from .batch_worker import DetectionSettings, DetectorSpec, detect_partition, install_detector

__all__ = ["CONNECT_TIMEOUT_S", "DetectorPlugin", "SchedulerUnreachableError", "cluster_client",
           "dashboard_line", "run_partitions"]

#: Seconds to wait for a scheduler before giving up with a clear error.
CONNECT_TIMEOUT_S = 5.0

#: Partitions in flight per worker thread: enough to keep workers busy, few enough
#: that the client and scheduler hold little however many images there are.
IN_FLIGHT_PER_THREAD = 3


class DetectorPlugin(WorkerPlugin):
    """Builds the batch's detector in each worker process when the worker starts.

    Parameters
    ----------
    spec : DetectorSpec
    """

    def __init__(self, spec: DetectorSpec) -> None:
        self.spec = spec

    def setup(self, worker: Any) -> None:
        install_detector(self.spec)


@contextlib.contextmanager
def cluster_client(workers: int | None = None, scheduler: str | None = None,
                   timeout: float = CONNECT_TIMEOUT_S) -> Iterator[Client]:
    """A Dask client: an embedded ``LocalCluster`` of ``workers`` processes, or ``scheduler``.

    Parameters
    ----------
    workers : int, optional
        Processes of the embedded cluster, one thread each.
    scheduler : str, optional
        Address of a running scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    timeout : float
        Seconds to wait for the scheduler.

    Raises
    ------
    ValueError
        If both or neither of ``workers`` and ``scheduler`` are given.
    SchedulerUnreachableError
        If the scheduler does not answer within ``timeout`` seconds.
    """
    if (workers is None) == (scheduler is None):
        raise ValueError("give exactly one of workers (an embedded cluster) and scheduler")
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise SchedulerUnreachableError(
                f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s "
                f"({exc}); is it running, and is the address host:port of its TCP port "
                "(default 8786)?") from None
        with client:
            yield client
        return
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    with LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client


def dashboard_line(client: Client) -> str:
    """A line naming the cluster and its dashboard link."""
    n = len(client.scheduler_info().get("workers", {}))
    link = client.dashboard_link
    if find_spec("bokeh") is None:
        link += " (install bokeh to serve it)"
    return f"Dask cluster {client.scheduler.address}, {n} workers; dashboard: {link}"


def _in_flight(client: Client) -> int:
    threads = sum(client.nthreads().values())
    return IN_FLIGHT_PER_THREAD * max(threads, 1)


def run_partitions(client: Client, partitions: Iterator[list[tuple[str, str]]],
                   spec: DetectorSpec, settings: DetectionSettings, draw_dir: str | None,
                   handle: Callable[[list[dict[str, Any]]], None]) -> None:
    """Run every partition on the cluster, handing each one's records to ``handle``.

    ``handle`` runs in this (the client's) process, once per completed task, as tasks
    complete; at most a few partitions per worker thread are in flight at any time.
    """
    fp = spec.fingerprint
    client.register_plugin(DetectorPlugin(spec), name=f"vj-batch-detector-{fp}")
    jobs = as_completed(loop=client.loop)
    parts: dict[str, list[tuple[str, str]]] = {}

    def submit(part: list[tuple[str, str]]) -> None:
        fut = client.submit(detect_partition, part, fp, settings, draw_dir, pure=False)
        parts[fut.key] = part
        jobs.add(fut)

    def refill() -> None:
        limit = _in_flight(client)
        while jobs.count() < limit:
            part = next(partitions, None)
            if part is None:
                return
            submit(part)

    refill()
    for fut in jobs:
        part = parts.pop(fut.key)
        try:
            records = fut.result()
        except KilledWorker:
            records = _after_worker_deaths(part, submit)
        fut.release()
        if records:
            handle(records)
        refill()


def _after_worker_deaths(part: list[tuple[str, str]],
                         submit: Callable[[list[tuple[str, str]]], None]) -> list[dict]:
    if len(part) > 1:  # find the image that kills workers: one task per image
        for item in part:
            submit([item])
        return []
    path, key = part[0]
    return [{"image": key, "error": f"the worker processing {os.fspath(path)} died "
             "repeatedly (Dask gave up on it)"}]
