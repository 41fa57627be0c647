"""Batch detection on a Dask cluster (a client from :func:`vj.cluster.cluster_client`).

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

import os
from collections.abc import Callable, Iterator
from typing import Any

from distributed import Client, KilledWorker, WorkerPlugin, as_completed

from .batch_worker import DetectionSettings, DetectorSpec, detect_partition, install_detector

__all__ = ["DetectorPlugin", "run_partitions"]

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
