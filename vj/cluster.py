"""Connecting to a Dask cluster: an embedded ``LocalCluster`` or a running scheduler.

The programs' ``--workers N`` and ``--scheduler ADDRESS`` both come here. Importing
this module does not import Dask; :func:`cluster_client` does, and says which extra to
install when it is missing (``pip install 'vj-faces[dask]'``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from importlib.util import find_spec
from typing import Any

__all__ = ["CONNECT_TIMEOUT_S", "LOCAL_CLUSTER_CONFIG", "SchedulerUnreachableError",
           "cluster_client", "dashboard_line", "local_cluster"]

#: Seconds to wait for a scheduler before giving up with a clear error.
CONNECT_TIMEOUT_S = 5.0

#: Dask settings of an embedded cluster. Dask's defaults check the event loop every
#: 20 ms, the memory every 100 ms and sample a profile every 10 ms in every process:
#: an idle worker and its nanny took 7.7 % of a core on the project's machine, taken
#: from the cores that detect; checking once a second, 1.3 %.
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "1s",
}


class SchedulerUnreachableError(ConnectionError):
    """The Dask scheduler at the given address did not answer in time."""


def _distributed():
    try:
        import distributed
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"running on a cluster needs Dask ({exc.name} is not installed): "
            "pip install 'vj-faces[dask]' (or pip install distributed)", name=exc.name
        ) from None
    return distributed


@contextlib.contextmanager
def cluster_client(workers: int | None = None, scheduler: str | None = None,
                   timeout: float = CONNECT_TIMEOUT_S) -> Iterator[Any]:
    """A ``distributed.Client``: of an embedded ``LocalCluster``, or of ``scheduler``.

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
        If both or neither of ``workers`` and ``scheduler`` are given, or ``workers`` < 1.
    SchedulerUnreachableError
        If the scheduler does not answer within ``timeout`` seconds.
    ModuleNotFoundError
        If Dask (``distributed``) is not installed; the message names the extra.
    """
    if (workers is None) == (scheduler is None):
        raise ValueError("give exactly one of workers (an embedded cluster) and scheduler")
    if scheduler is None and (int(workers) != workers or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    dd = _distributed()
    if scheduler is not None:
        try:
            client = dd.Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise SchedulerUnreachableError(
                f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s "
                f"({exc}); is it running, and is the address host:port of its TCP port "
                "(default 8786)?") from None
        with client:
            yield client
        return
    with local_cluster(int(workers)) as cluster, \
            dd.Client(cluster, set_as_default=False) as client:
        yield client


def local_cluster(workers: int) -> Any:
    """A ``LocalCluster`` of ``workers`` processes, one thread each, quiet (see above)."""
    import dask

    dd = _distributed()
    # The nanny keeps the settings it starts with, also for workers it restarts.
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        return dd.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR)


def dashboard_line(client: Any) -> str:
    """A line naming the cluster, its workers and its dashboard link."""
    n = len(client.scheduler_info().get("workers", {}))
    link = client.dashboard_link
    if find_spec("bokeh") is None:
        link += " (install bokeh to serve it)"
    return f"Dask cluster {client.scheduler.address}, {n} workers; dashboard: {link}"
