"""Connecting to a Dask cluster, and the device table of all its workers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd

from workbench.errors import InputError, WorkbenchError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def connect(cluster: Any) -> Iterator[Any]:
    """A ``distributed.Client`` for ``cluster``: an address, a Client, or a cluster object.

    A Client the caller made stays open; one made here is closed on exit. The Dask
    dashboard's link is logged and printed once, so a long sweep can be watched there.

    Args:
        cluster: ``"tcp://host:8786"``, a ``distributed.Client``, or a cluster object
            (``LocalCluster``, ``SSHCluster``, ``KubeCluster``, a dask-jobqueue cluster).

    Raises:
        WorkbenchError: Dask distributed is not installed, or the scheduler cannot be reached.
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise WorkbenchError(
            "running on a cluster needs Dask distributed: "
            'pip install "inference-workbench[cluster]"'
        ) from exc
    if isinstance(cluster, Client):
        announce(cluster)
        yield cluster
        return
    if not isinstance(cluster, str) and not hasattr(cluster, "scheduler_address"):
        raise InputError(
            f"cluster must be a scheduler address such as tcp://host:8786, a "
            f"distributed.Client or a Dask cluster object, got {type(cluster).__name__}"
        )
    try:
        client = Client(cluster, timeout="30s")
    except (ValueError, TypeError) as exc:  # distributed's parser refused the address
        raise InputError(
            f"{cluster!r} is not a Dask scheduler address ({exc}); give one such as tcp://host:8786"
        ) from exc
    except OSError as exc:
        raise WorkbenchError(
            f"cannot reach the Dask scheduler at {cluster}: {exc}; is `dask scheduler` running?"
        ) from exc
    try:
        announce(client)
        yield client
    finally:
        client.close()


def announce(client: Any) -> None:
    """Print where the cluster's Dask dashboard is (progress, task stream, workers)."""
    link = getattr(client, "dashboard_link", None)
    if link:
        print(f"Dask dashboard: {link}")


def wait_for_workers(client: Any, timeout_s: float = 60.0) -> dict[str, Any]:
    """The scheduler's workers (address -> info), waiting up to ``timeout_s`` for one.

    Raises:
        WorkbenchError: no worker joined in time.
    """
    import time

    message = (
        f"no Dask worker joined the scheduler within {timeout_s:.0f} s; start one with "
        'dask worker SCHEDULER_ADDRESS --resources "timing=1"'
    )
    deadline = time.monotonic() + timeout_s
    try:
        client.wait_for_workers(1, timeout=timeout_s)
    except TimeoutError as exc:
        raise WorkbenchError(message) from exc
    # the client's view of the scheduler can lag the join it just waited for (seen on a
    # loaded machine): ask again until the worker shows up
    while not (workers := client.scheduler_info(n_workers=-1)["workers"]):
        if time.monotonic() > deadline:
            raise WorkbenchError(message)
        time.sleep(0.1)
    return dict(workers)


def devices(cluster: Any = None) -> pd.DataFrame:
    """Backends x devices of this machine, or of every worker of a Dask cluster.

    Args:
        cluster: None for this machine (`workbench.machine.devices`); else a scheduler
            address, a ``distributed.Client`` or a Dask cluster object.

    Returns:
        `devices`'s table; on a cluster with ``worker`` (address), ``host`` (host name),
        ``machine`` (CPU, cores, SIMD, memory, GPUs) and ``resources`` (the worker's
        declared Dask resources) first, one block of rows per worker.

    Example:
        >>> wb.devices(cluster="tcp://scheduler:8786")
    """
    if cluster is None:
        from workbench.machine import devices as local_devices

        return local_devices()
    from workbench.cluster.worker import worker_devices

    with connect(cluster) as client:
        workers = wait_for_workers(client)
        tables = client.run(worker_devices)
    frames = []
    for address in sorted(tables):
        table = tables[address]
        resources = (workers.get(address) or {}).get("resources") or {}
        table.insert(0, "worker", address)
        table.insert(3, "resources", ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items())))
        frames.append(table)
    return pd.concat(frames, ignore_index=True)
