"""`sweep` on a Dask cluster: every point a Dask task, every result saved as it arrives.

The client keeps the results store: workers measure and send back each point's row and
`Profile`, and the client saves them one by one as they finish (``as_completed``), so an
interrupted client loses only the points in flight and resumes from the store like a
local sweep. A worker that dies takes its running point with it; the scheduler runs
that point again on another worker, and since only the client writes, and only the
result it receives, no point is stored twice. A point whose task killed several workers
in turn (Dask's ``KilledWorker``) is stored as failed, with that error.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from workbench.cluster.client import connect, wait_for_workers
from workbench.cluster.placement import Placement, plan
from workbench.cluster.transport import SweepPayload, pack_data, pack_metric, pack_model, pack_spec
from workbench.errors import InputError, TransformError
from workbench.evaluation.sweep import Point, SavePoint, TradeoffTable
from workbench.evaluation.sweep import sweep as local_sweep
from workbench.progress import CancelToken, ProgressCallback, track
from workbench.store import point_key

log = logging.getLogger(__name__)

#: times Dask reruns a point whose task raised (a lost connection, say); a worker that
#: dies is handled by the scheduler itself, which reruns its tasks elsewhere
RETRIES = 2


def sweep(
    model: Any,
    variants: list[Any] | None = None,
    backends: list[str] | tuple[str, ...] = ("onnxruntime", "torch"),
    data: Any = None,
    *,
    cluster: Any = None,
    trust: bool = False,
    exclusive: bool = True,
    per_host: bool = False,
    **kwargs: Any,
) -> TradeoffTable:
    """`workbench.evaluation.sweep.sweep`, with its points run on a Dask cluster if given.

    Without ``cluster`` this is the in-process sweep. With one, each point is a Dask
    task placed by `workbench.cluster.placement` (an accelerator point only on workers
    that declare it, one measurement per machine at a time), each finished point is
    saved to this process's store as it arrives, and each row gains ``worker``, ``host``
    and ``machine``. Resuming, identity and the returned table are the local sweep's.

    Args:
        model: as for the local sweep.
        variants: as for the local sweep.
        backends: as for the local sweep.
        data: as for the local sweep.
        cluster: a scheduler address (``"tcp://host:8786"``), a ``distributed.Client``
            or a Dask cluster object; None runs in this process.
        trust: let a torch model that is not a sample, a metric function of your own or
            a custom data object travel to the workers pickled (their code runs there).
            Without it, models travel as ONNX bytes or a sample name plus state dict.
        exclusive: one measurement per machine at a time (False: faster, but points on
            one machine disturb each other's timings).
        per_host: measure every point on every host (machine) of the cluster, to compare
            machines: one sweep per host, ``<sweep_id>@<host>`` (default sweep id
            ``<model>-per-host``), run at the same time; their rows in one table, with
            ``delta``, ``speedup`` and ``pareto`` within each host.
        **kwargs: every other argument of the local sweep (``devices``, ``batch_size``,
            ``store``, ``sweep_id``, ``resume``, ``progress``, ``cancel`` ...).

    Returns:
        A `TradeoffTable`; ``notes`` says how points were placed.

    Raises:
        InputError: a model or metric that needs ``trust=True`` to travel, or
            ``per_host`` without ``cluster``.
        WorkbenchError: the scheduler cannot be reached, or no worker joins.
        CancelledError: the token was cancelled (rerun to resume).

    Example:
        >>> t = wb.sweep(wb.samples.load("digits-mlp"), cluster="tcp://scheduler:8786")
        >>> t.df[["variant", "backend", "host", "latency_ms"]]
    """
    if cluster is None:
        if per_host:
            raise InputError("per_host=True compares a cluster's machines: give cluster= too")
        return local_sweep(model, variants, backends, data, **kwargs)
    with connect(cluster) as client:
        if per_host:
            hosts = hosts_of(wait_for_workers(client))
            return _sweep_each_host(
                client, hosts, model, variants, backends, data, trust, exclusive, **kwargs
            )
        return _sweep_on(client, None, model, variants, backends, data, trust, exclusive, kwargs)


def hosts_of(workers: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The hosts the workers run on (the scheduler's ``host`` of each worker), sorted."""
    return sorted({str(info.get("host") or address) for address, info in workers.items()})


def _sweep_on(
    client: Any,
    host: str | None,
    model: Any,
    variants: Any,
    backends: Any,
    data: Any,
    trust: bool,
    exclusive: bool,
    kwargs: dict[str, Any],
) -> TradeoffTable:
    """One sweep on the cluster (on ``host``'s workers only, if given), with its placement note."""
    runner = DaskRunner(client, trust=trust, exclusive=exclusive, host=host)
    table = local_sweep(model, variants, backends, data, runner=runner, **kwargs)
    if runner.placement is not None:
        table.notes.append(runner.placement.note)
    return table


def _sweep_each_host(
    client: Any,
    hosts: list[str],
    model: Any,
    variants: Any,
    backends: Any,
    data: Any,
    trust: bool,
    exclusive: bool = True,
    sweep_id: str | None = None,
    **kwargs: Any,
) -> TradeoffTable:
    """The same sweep on every host at once, as one table (baselines within each host)."""
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    from workbench.loaders import load

    model = load(model)  # once, not once per host
    base = sweep_id or f"{model.name}-per-host"

    def on_host(host: str) -> TradeoffTable:
        settings = {**kwargs, "sweep_id": f"{base}@{host}"}
        return _sweep_on(client, host, model, variants, backends, data, trust, exclusive, settings)

    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        tables = list(pool.map(on_host, hosts))
    first = tables[0]
    rows = pd.concat([t.df for t in tables], ignore_index=True)
    notes = list(dict.fromkeys(note for t in tables for note in t.notes))
    return TradeoffTable(rows, first.metric, first.higher_is_better, base, first.meta, notes)


class DaskRunner:
    """A sweep's `PointsRunner` that runs each point as a Dask task.

    Args:
        client: a connected ``distributed.Client``.
        trust: see `sweep`.
        exclusive: see `sweep`.
        host: run only on this host's workers (the scheduler's host of a worker, e.g.
            its IP; a worker restarted there still counts); default any worker.
    """

    def __init__(
        self,
        client: Any,
        *,
        trust: bool = False,
        exclusive: bool = True,
        host: str | None = None,
    ) -> None:
        self.client, self.trust, self.exclusive = client, trust, exclusive
        self.host = host
        self.placement: Placement | None = None

    def __call__(
        self,
        run: Any,
        todo: list[Point],
        save: SavePoint,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> None:
        """Submit every point, then save each result as it arrives.

        Args:
            run: the sweep's point runner (its model, data and settings travel).
            todo: the points to measure.
            save: stores one finished point.
            progress: ``progress(fraction, message)`` callback (else a tqdm bar).
            cancel: a `CancelToken`; on cancel the points in flight are dropped.
        """
        from distributed import as_completed

        if not todo:
            return
        workers = wait_for_workers(self.client)
        if self.host is not None:
            # Dask's workers= takes a host or a worker address: so does this filter
            workers = {a: w for a, w in workers.items() if self.host in (w.get("host"), a)}
        self.placement = plan(workers, self.exclusive)
        log.info("sweep on Dask: %s", self.placement.note)
        futures = self._submit(run, todo, save)
        try:
            for future in track(
                as_completed(futures),
                total=len(futures),
                description="sweep (dask)",
                progress=progress,
                cancel=cancel,
            ):
                save(*self._result(future, futures[future], run))
        finally:
            # an interrupt, a cancel or an error: stop the points still queued or running
            self.client.cancel([f for f in futures if not f.done()])

    def _submit(self, run: Any, todo: list[Point], save: SavePoint) -> dict[Any, Point]:
        """One task per point that has somewhere to run; the others are saved as failed."""
        from workbench.cluster.worker import run_point

        assert self.placement is not None
        # on every worker: one that dies does not take the sweep's only copy with it
        shared = self.client.scatter(self._payload(run), broadcast=True, hash=False)
        futures: dict[Any, Point] = {}
        for point in todo:
            (label, spec), backend, device = point
            needs = self.placement.requirements(device)
            if needs is None:
                save(_failed_row(run, point, self.placement.missing(device)), None)
                continue
            future = self.client.submit(
                run_point,
                shared,
                label,
                pack_spec(spec, self.trust),
                backend,
                device,
                self.placement.host_slot,
                resources=needs or None,
                workers=None if self.host is None else [self.host],
                retries=RETRIES,
                pure=False,
                key=f"workbench-point-{uuid.uuid4().hex[:12]}",
            )
            futures[future] = point
        return futures

    def _payload(self, run: Any) -> SweepPayload:
        return SweepPayload(
            token=uuid.uuid4().hex,
            model=pack_model(run.model, self.trust),
            data=pack_data(run.data),
            calibration=None if (data := _calibration(run)) is None else pack_data(data),
            metric=pack_metric(run.scorer, self.trust),
            batch_size=run.batch_size,
            budget_s=run.budget_s,
            options=dict(run.options),
            output=run.output,
        )

    def _result(self, future: Any, point: Point, run: Any) -> tuple[dict[str, Any], Any]:
        """A finished task's row and `Profile`; a task that failed outright is a failed row."""
        from workbench.profiling.profile import Profile

        try:
            row, profile_json = future.result()
        except Exception as exc:  # KilledWorker, a worker-side import error: one failed row
            return _failed_row(run, point, f"{type(exc).__name__}: {str(exc)[:500]}"), None
        return row, None if profile_json is None else Profile.from_json(profile_json)


def _calibration(run: Any) -> Any:
    """The transforms' data, resolved here: a worker's model may not know its sample."""
    from workbench.optimize.data_source import resolve_data

    try:
        return resolve_data(run.model, run.calibration, "train", "calibration")
    except TransformError:  # no data and no sample: transforms that need data fail per row
        return None


def _failed_row(run: Any, point: Point, error: str) -> dict[str, Any]:
    (label, _), backend, device = point
    row = {
        "variant": label,
        "backend": backend,
        "device": device,
        "batch_size": run.batch_size,
        "metric": run.scorer.name,
        "error": error,
    }
    return {**row, "key": point_key(row)}
