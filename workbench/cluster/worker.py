"""What runs on a Dask worker: a sweep point, a fair-comparison child, the device table.

These functions are submitted by the client and run inside the worker process. A
worker keeps the model and variants of the sweeps it is working on (`_sweeps`), so each
is rebuilt once per worker, not once per point.
"""

from __future__ import annotations

import contextlib
import platform
import threading
from collections.abc import Iterator
from typing import Any

import pandas as pd

from workbench.cluster.transport import (
    ModelFile,
    SweepPayload,
    unpack_model,
    unpack_reference,
    unpack_spec,
)

#: the semaphore that keeps two measurements off one machine: one lease per host name
HOST_SLOT_PREFIX = "workbench-timing-"

#: sweeps kept per worker process (their models and variants); older ones are dropped
KEPT_SWEEPS = 2

#: payload token -> ``(point runner, {label: built variant or its exception})``
_sweeps: dict[str, tuple[Any, dict[str, Any]]] = {}
#: a worker may run several tasks at once (``--nthreads`` > 1): one rebuilds a sweep at a time
_sweeps_lock = threading.Lock()


def run_point(
    shared: SweepPayload,
    label: str,
    spec: Any,
    backend: str,
    device: str,
    host_slot: bool,
) -> tuple[dict[str, Any], str | None]:
    """Build the variant (once per worker) and measure one point on this worker.

    Args:
        shared: the sweep's model, data and settings.
        label: the variant's label.
        spec: the packed variant spec (`workbench.cluster.transport.pack_spec`).
        backend: backend name.
        device: device name.
        host_slot: hold this host's timing semaphore while building and measuring, so
            no other sweep point on this machine runs at the same time.

    Returns:
        The point's row, with ``worker`` (address), ``host`` (host name) and ``machine``
        (CPU, cores, SIMD, memory, GPUs), and its `Profile` as JSON (None if it failed).
    """
    from workbench.machine import describe_machine

    with _host_slot(host_slot):  # rebuilding the model and variants is work too
        runner, variants = _sweep(shared)
        if label not in variants:
            variants[label] = runner.build(unpack_spec(spec))
        row, profile = runner.point(label, variants[label], backend, device)
    row.update(worker=_worker_address(), host=platform.node(), machine=describe_machine())
    return row, None if profile is None else profile.to_json(indent=None)


def run_fair_child(
    spec: dict[str, Any],
    timeout_s: float,
    model: ModelFile | str | None = None,
    host_slot: bool = True,
) -> dict[str, Any]:
    """One child of a fair runtime comparison, started on this worker's machine.

    Args:
        spec: the child's spec (`workbench.profiling.compare_runtimes.compare_runtimes`).
        timeout_s: a child running longer is stopped and reported as failed.
        model: the packed model (`workbench.cluster.transport.pack_reference`) that
            replaces the spec's model reference; None keeps the spec's own.
        host_slot: hold the host's timing semaphore, so no other measurement of this
            machine runs beside it (False when Dask's ``timing`` resource does that).

    Returns:
        The child's result (`workbench.profiling.compare_runtimes.run_child`) with ``worker`` and
        ``host`` added to its ``environment``, plus ``machine``: this host's name and
        description.
    """
    from workbench.machine import describe_machine
    from workbench.profiling.compare_runtimes import run_child

    if model is not None:
        spec = {**spec, "model": unpack_reference(model)}
    with _host_slot(host_slot):
        result = run_child(spec, timeout_s)
    where = {"worker": _worker_address(), "host": platform.node()}
    return {
        **result,
        "environment": {**result.get("environment", {}), **where},
        "machine": f"{platform.node()}: {describe_machine()}",
    }


def worker_devices() -> pd.DataFrame:
    """This worker's backends x devices (`workbench.machine.devices`) with its host.

    Returns:
        `devices()`'s table with ``host`` (host name) and ``machine`` (CPU, cores, SIMD,
        memory, GPUs) columns first.
    """
    from workbench.machine import describe_machine, devices

    table = devices()
    table.insert(0, "host", platform.node())
    table.insert(1, "machine", describe_machine())
    return table


def _sweep(shared: SweepPayload) -> tuple[Any, dict[str, Any]]:
    """The sweep's point runner on this worker and its built variants, made once per sweep."""
    from workbench.data import Dataset
    from workbench.evaluation.metrics import get_metric

    # the same runner the in-process sweep uses, so a point measures the same either way
    from workbench.evaluation.sweep import PointRunner

    with _sweeps_lock:
        if shared.token not in _sweeps:
            while len(_sweeps) >= KEPT_SWEEPS:
                _sweeps.pop(next(iter(_sweeps)))  # the oldest sweep's models
            data: Dataset = shared.data
            runner = PointRunner(
                unpack_model(shared.model),
                data,
                get_metric(shared.metric),
                shared.batch_size,
                shared.budget_s,
                shared.options,
                shared.calibration,
                shared.output,
            )
            _sweeps[shared.token] = (runner, {})
        return _sweeps[shared.token]


@contextlib.contextmanager
def _host_slot(wanted: bool) -> Iterator[None]:
    """Hold this machine's single timing lease (a Dask semaphore named after the host)."""
    if not wanted:
        yield
        return
    from distributed import Semaphore

    with Semaphore(max_leases=1, name=HOST_SLOT_PREFIX + platform.node()):
        yield


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:  # called outside a worker (a test, or the client itself)
        return "local"
