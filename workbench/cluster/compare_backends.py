"""`compare_backends` on a Dask cluster: every fair-protocol child a Dask task.

The local comparison runs its children one after another, each waiting for the last. On
a cluster every child (backend x device x option set x round, at each batch size) is
submitted at once and placed by `workbench.cluster.placement` like a sweep point: an
accelerator child only on workers that declare it, one measurement per machine at a
time. To keep one protocol, the comparison is planned twice with the same arguments:
the first pass submits each child spec in the protocol's order, the second collects
them in that order, so rotation, rounds and tables are the local comparison's own. The
extra rounds a noisy comparison runs (``retries``) depend on numbers the first pass,
collecting nothing, never sees: the second pass submits each such child when it asks for
it, after the rounds before it, as the local comparison would.
Each round records the worker and host it ran on; `BackendComparison.table` keeps the
hosts apart.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from workbench.cluster.client import connect, wait_for_workers
from workbench.cluster.placement import Placement, plan
from workbench.cluster.transport import pack_reference

#: ``measure(launcher, progress, devices)``: the comparison, planned with these children
Measure = Callable[[Any, Any, Mapping[str, list[str]]], Any]


def compare_on_cluster(
    cluster: Any,
    measure: Measure,
    *,
    exclusive: bool = True,
    timeout_s: float = 600.0,
    progress: Callable[[float, str], None] | None = None,
) -> Any:
    """Run a backend comparison's children as Dask tasks, in two passes of ``measure``.

    Args:
        cluster: a scheduler address, a ``distributed.Client`` or a Dask cluster object.
        measure: plans and assembles the comparison with the launcher, progress callback
            and the backends' devices on the cluster it is given.
        exclusive: one measurement per machine at a time (see `workbench.cluster.sweep`).
        timeout_s: a child running longer is stopped and its round recorded as failed.
        progress: ``progress(fraction, message)`` callback, as the children finish.

    Returns:
        What ``measure`` returns, each comparison's ``machine`` naming the machines used.
    """
    with connect(cluster) as client:
        placement = plan(wait_for_workers(client), exclusive)
        launcher = FanOutLauncher(client, placement, timeout_s)
        on_cluster = cluster_devices(client)
        measure(launcher.submit, None, on_cluster)
        try:
            result = measure(launcher.collect, progress, on_cluster)
        finally:
            launcher.cancel()  # an interrupt or an error: nothing keeps measuring
    machines = "; ".join(sorted(launcher.machines))
    comparisons = {
        batch: dataclasses.replace(comparison, machine=machines or comparison.machine)
        for batch, comparison in result.comparisons.items()
    }
    return dataclasses.replace(result, comparisons=comparisons)


def cluster_devices(client: Any) -> dict[str, list[str]]:
    """Backend name -> the devices some worker of the cluster has available for it."""
    from workbench.cluster.worker import worker_devices

    found: dict[str, list[str]] = {}
    for table in client.run(worker_devices).values():
        available = table[table["available"].astype(bool)]
        for backend, device in zip(available["backend"], available["device"], strict=True):
            if device not in found.setdefault(str(backend), []):
                found[str(backend)].append(str(device))
    return found


class FanOutLauncher:
    """Submits fair-protocol children as Dask tasks, then hands back their results in order.

    ``submit`` is the launcher of the first pass (it returns a placeholder at once),
    ``collect`` the launcher of the second, which must ask for the same specs in the
    same order and waits for each one's result; a spec it asks for that was never
    submitted (a noisy comparison's extra round) it submits then.

    Args:
        client: a connected ``distributed.Client``.
        placement: where children may run (`workbench.cluster.placement.plan`).
        timeout_s: a child running longer is stopped (on the worker).
    """

    def __init__(self, client: Any, placement: Placement, timeout_s: float) -> None:
        self.client, self.placement, self.timeout_s = client, placement, timeout_s
        self.machines: set[str] = set()
        self._queue: deque[tuple[dict[str, Any], Any]] = deque()
        self._models: dict[str, Any] = {}

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Submit one child (or note why it has nowhere to run); a placeholder result."""
        self._queue.append((spec, self._start(spec)))
        return {}

    def collect(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The result of the child submitted for ``spec`` (waits for it).

        A spec the first pass never submitted is an extra round of a noisy comparison:
        it is submitted now.
        """
        if not any(submitted == spec for submitted, _ in self._queue):
            self._queue.appendleft((spec, self._start(spec)))
        submitted, outcome = self._queue.popleft()
        if submitted != spec:
            # not a user error: the two passes planned different children, a bug here
            raise RuntimeError(f"fair child {spec} asked for out of order (expected {submitted})")
        if isinstance(outcome, dict):
            return outcome
        try:
            result: dict[str, Any] = outcome.result()
        except Exception as exc:  # KilledWorker, a worker-side import error: a failed round
            return {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        self.machines.add(str(result.pop("machine", "")))
        return result

    def _start(self, spec: dict[str, Any]) -> Any:
        """The child's future, or its error result when no worker can run it."""
        from workbench.cluster.worker import run_fair_child

        device = str(spec["runtime"].get("device", "cpu"))
        needs = self.placement.requirements(device)
        if needs is None:
            return {"error": self.placement.missing(device)}
        return self.client.submit(
            run_fair_child,
            spec,
            self.timeout_s,
            self._model(str(spec["model"])),
            self.placement.host_slot,
            resources=needs or None,
            pure=False,
            key=f"workbench-fair-{uuid.uuid4().hex[:12]}",
        )

    def cancel(self) -> None:
        """Stop every child not collected yet."""
        pending = [f for _, f in self._queue if not isinstance(f, dict) and not f.done()]
        self._queue.clear()
        if pending:
            self.client.cancel(pending)

    def _model(self, reference: str) -> Any:
        """The packed model, sent to every worker once (a sample travels as its name)."""
        if reference not in self._models:
            packed = pack_reference(reference)
            self._models[reference] = (
                packed
                if isinstance(packed, str)
                else self.client.scatter(packed, broadcast=True, hash=False)
            )
        return self._models[reference]
