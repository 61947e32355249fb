"""`compare_runtimes` on a Dask worker: the fair protocol, on another machine.

The protocol is unchanged (`workbench.profiling.compare_runtimes`): each runtime in a fresh child
process at its own defaults, rounds alternated. On a cluster every child of one
comparison starts on one worker, since ratios mean something only on one machine; each
child holds its host's timing semaphore, so no sweep point on that machine runs beside
it. The model travels as its reference (a sample name, or a file path that must exist on
the worker too).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from workbench.cluster.client import connect, wait_for_workers
from workbench.cluster.placement import device_resource
from workbench.errors import InputError
from workbench.profiling.compare_runtimes import Runtime, RuntimeComparison
from workbench.profiling.compare_runtimes import compare_runtimes as local_compare_runtimes


def compare_runtimes(
    model: Any,
    runtimes: Iterable[Runtime | str | tuple[Any, ...]],
    batch_size: int = 1,
    *,
    cluster: Any = None,
    worker: str | None = None,
    **kwargs: Any,
) -> RuntimeComparison:
    """`workbench.profiling.compare_runtimes.compare_runtimes`, on one worker of a Dask cluster.

    Args:
        model: a sample name or a model file path (present on the worker), or a `Model`
            loaded from either.
        runtimes: as for the local comparison.
        batch_size: as for the local comparison.
        cluster: a scheduler address, a ``distributed.Client`` or a cluster object; None
            runs the children on this machine.
        worker: the worker address to measure on (default: the first that declares
            every resource the runtimes' devices need, e.g. ``GPU`` for ``cuda:0``).
        **kwargs: every other argument of the local comparison (``rounds``,
            ``budget_s`` ...).

    Returns:
        A `RuntimeComparison` whose ``machine`` is the worker's host and machine.

    Raises:
        InputError: no worker has what the runtimes need, or ``worker`` is unknown.

    Example:
        >>> wb.compare_runtimes("digits-cnn", ["onnxruntime", "torch"], cluster="tcp://s:8786")
    """
    if cluster is None:
        return local_compare_runtimes(model, runtimes, batch_size, **kwargs)
    chosen = list(runtimes)
    with connect(cluster) as client:
        address = worker or _worker_for(wait_for_workers(client), chosen)
        launcher = WorkerLauncher(client, address, float(kwargs.get("timeout_s", 600.0)))
        comparison = local_compare_runtimes(model, chosen, batch_size, launcher=launcher, **kwargs)
    return dataclasses.replace(comparison, machine=launcher.machine or comparison.machine)


class WorkerLauncher:
    """A fair-comparison launcher that starts each child process on one Dask worker.

    Args:
        client: a connected ``distributed.Client``.
        worker: the worker's address.
        timeout_s: a child running longer is stopped (as locally).
    """

    def __init__(self, client: Any, worker: str, timeout_s: float = 600.0) -> None:
        self.client, self.worker, self.timeout_s = client, worker, timeout_s
        self.machine = ""

    def __call__(self, spec: dict[str, Any]) -> dict[str, Any]:
        from workbench.cluster.worker import run_fair_child

        future = self.client.submit(
            run_fair_child,
            spec,
            self.timeout_s,
            workers=[self.worker],
            allow_other_workers=False,
            pure=False,
        )
        result: dict[str, Any] = future.result()
        self.machine = str(result.pop("machine", self.machine))
        return result


def _worker_for(workers: Mapping[str, Mapping[str, Any]], runtimes: list[Any]) -> str:
    """The first worker (by address) that declares every resource the devices need."""
    needed = {name for r in runtimes if (name := device_resource(_device(r))) is not None}
    for address in sorted(workers):
        if needed <= set(workers[address].get("resources") or {}):
            return address
    raise InputError(
        f"no Dask worker declares {sorted(needed)}; start one with dask worker ADDRESS "
        f'--resources "{",".join(f"{n}=1" for n in sorted(needed))},timing=1", or pass worker='
    )


def _device(runtime: Runtime | str | tuple[Any, ...]) -> str:
    if isinstance(runtime, Runtime):
        return runtime.device
    if isinstance(runtime, tuple) and len(runtime) > 1:
        return str(runtime[1])
    return "cpu"
