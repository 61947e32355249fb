"""`slo`: the highest sustained server rate within a p99 latency budget.

For every variant x backend x device and every dynamic-batching choice, a bisection
over offered rates runs a full server scenario at each point; the answer is the highest
rate whose run was valid (minimums met, generator on schedule, nothing dropped) with
p99 within the budget. Every point run is kept, for the figure and for the record.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from workbench.argtypes import MAX_SECONDS, number, whole
from workbench.errors import CancelledError, WorkbenchError
from workbench.model import Model
from workbench.profiling.formatting import frame_html, frame_text
from workbench.profiling.measure import TimingOptions, compiled, timing_of
from workbench.profiling.results import dump_json, load_json
from workbench.progress import CancelToken, ProgressCallback
from workbench.scenarios.clock import Clock, RealClock
from workbench.scenarios.energy import cost_per_million
from workbench.scenarios.ranking import ranking_settings
from workbench.scenarios.result import Minimums, json_rows, machine_record, machine_text
from workbench.scenarios.run import ServerLoad, SystemUnderTest, minimums_for, server
from workbench.units import format_number

#: calls timed per batch size to estimate capacity before searching
CAPACITY_PROBES = 20
#: most server runs one bisection may take
MAX_STEPS = 100

TABLE_COLUMNS = [
    "variant", "backend", "device", "max_rate_per_s", "max_batch", "batch_window_ms",
    "p99_ms", "throughput_per_s", "capacity_per_s", "cost_per_million", "limited_by", "points",
]  # fmt: skip
POINT_COLUMNS = [
    "variant", "backend", "device", "configuration", "max_batch", "batch_window_ms",
    "rate_per_s", "p50_ms", "p99_ms", "throughput_per_s", "late", "dropped", "passed", "reasons",
]  # fmt: skip


@dataclass(frozen=True)
class Batching:
    """A dynamic-batching choice of the server: batch up to ``max_batch`` queries,
    waiting at most ``window_ms`` after the oldest one's arrival.
    """

    max_batch: int = 1
    window_ms: float = 0.0

    @property
    def label(self) -> str:
        """``"no batching"`` or ``"batch<=8, 1.25 ms"``."""
        return (
            "no batching"
            if self.max_batch == 1
            else f"batch<={self.max_batch}, {self.window_ms:g} ms"
        )


def default_batching(p99_ms: float) -> tuple[Batching, ...]:
    """No batching, and batches of up to 8 gathered over a quarter of the budget."""
    return (Batching(1, 0.0), Batching(8, p99_ms / 4))


@dataclass(frozen=True)
class SloResult:
    """Highest sustained rate within a p99 budget, per variant x backend x device.

    Attributes:
        p99_ms: the latency budget.
        table: one row per configuration: ``max_rate_per_s`` (0 when no rate met the
            budget, NaN when the configuration could not run), the ``max_batch`` and
            ``batch_window_ms`` that achieved it, the ``p99_ms`` and
            ``throughput_per_s`` of that verified run, the ``capacity_per_s`` estimate
            the search started from, ``cost_per_million`` (with a price), and
            ``limited_by``: why the next rate up failed.
        points: every server run of the search: rate, p50/p99, passed, reasons.
        minimums: the minimums each point had to meet.
        price_per_hour: the price the user gave (None: no cost column).
        settings: how the search ran, and ``model``: the name of the model measured.
        machine: the machine it was measured on (`machine_record`; empty in results
            written before machines were recorded).
    """

    p99_ms: float
    table: pd.DataFrame
    points: pd.DataFrame
    minimums: Minimums
    price_per_hour: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str:
        """The name of the model measured (empty in results written before it was kept)."""
        return str(self.settings.get("model") or "")

    def best(self) -> pd.Series:
        """The configuration with the highest sustained rate."""
        return self.table.loc[self.table["max_rate_per_s"].fillna(-1).idxmax()]

    def summary(self) -> str:
        """The table, why each configuration stopped where it did, and the minimums."""
        shown = self.table.drop(columns=["points", "limited_by"])
        if self.price_per_hour is None:
            shown = shown.drop(columns=["cost_per_million"])
        limits = [
            f"  {row.variant} {row.backend}/{row.device}: {row.limited_by}"
            for row in self.table.itertuples()
        ]
        candidates = self.settings.get("candidates")
        ranking = (
            [
                f"ranking requests of {candidates:,} candidates: rates in requests/s, "
                "throughput in items/s"
            ]
            if candidates
            else []
        )
        return "\n".join(
            [
                f"highest sustained server rate with p99 <= {self.p99_ms:g} ms"
                + (f" for {self.model}" if self.model else "")
                + f", measured on {machine_text(self.machine)}",
                *ranking,
                frame_text(shown),
                "limited by (the next rate up failed because):",
                *limits,
                f"{self.minimums.describe()} per point"
                + (f"; cost at {self.price_per_hour:g} per hour" if self.price_per_hour else ""),
            ]
        )

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        shown = (
            self.table
            if self.price_per_hour is not None
            else self.table.drop(columns=["cost_per_million"])
        )
        best = self.best()
        headline = (
            f"best: <b>{format_number(best['max_rate_per_s'])} queries/s</b> on "
            f"{html.escape(str(best['variant']))} {html.escape(str(best['backend']))}/"
            f"{html.escape(str(best['device']))}"
            if best["max_rate_per_s"] > 0
            else "no configuration met the budget"
        )
        return (
            f"<b>Highest sustained server rate with p99 &le; {self.p99_ms:g} ms</b> "
            f"<small>measured on {html.escape(machine_text(self.machine))}</small><br>{headline}"
            + frame_html(shown)
            + f"<small>{html.escape(self.minimums.describe())} per point; "
            f"{len(self.points)} verified server runs</small>"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON, every point included."""
        return {
            "p99_ms": self.p99_ms,
            "minimums": self.minimums.__dict__,
            "price_per_hour": self.price_per_hour,
            "settings": self.settings,
            "machine": self.machine,
            "table": json_rows(self.table),
            "points": json_rows(self.points),
        }

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The result (every point) as JSON (`to_dict`), also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> SloResult:
        """Rebuild from `to_json` output, or from the file at a path holding it."""
        return cls.from_dict(load_json(text_or_path, "an SLO result"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SloResult:
        """Rebuild from `to_dict` output."""
        return cls(
            p99_ms=data["p99_ms"],
            table=_floats(pd.DataFrame(data["table"], columns=TABLE_COLUMNS)),
            points=_floats(pd.DataFrame(data["points"], columns=POINT_COLUMNS)),
            minimums=Minimums(**data["minimums"]),
            price_per_hour=data.get("price_per_hour"),
            settings=dict(data.get("settings", {})),
            machine=dict(data.get("machine") or {}),
        )


def _floats(frame: pd.DataFrame) -> pd.DataFrame:
    """JSON writes NaN as null: read those columns back as floats."""
    measured = [c for c in frame.columns if c.endswith(("_ms", "_per_s", "_per_million"))]
    return frame.astype(dict.fromkeys(measured, "float64"))


def slo(
    model: Model | Any,
    p99_ms: float,
    backends: Sequence[str] = ("onnxruntime",),
    variants: Sequence[Model | Any] | None = None,
    *,
    devices: Sequence[str] = ("cpu",),
    batching: Sequence[Batching] | None = None,
    steps: int = 5,
    min_queries: int | None = None,
    min_duration_s: float | None = None,
    drop_after_ms: float | None = None,
    seed: int = 0,
    warmup: int = 10,
    inputs: Any = None,
    options: dict[str, Any] | None = None,
    price_per_hour: float | None = None,
    clock: Clock | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    timing: TimingOptions | None = None,
    candidates: int | None = None,
    user_inputs: Sequence[str] | None = None,
) -> SloResult:
    """Find the highest offered rate each configuration sustains within ``p99_ms``.

    For each variant, backend, device and batching choice, capacity is estimated from
    a few timed batches; then ``steps`` server runs bisect the rate between 0 and 1.25x
    that estimate. A point passes when its run is valid: minimums met, load generator
    on schedule, nothing dropped, p99 within the budget. The reported rate is the
    highest passing point, so every number in the table is a verified run. A
    configuration that cannot run here (unavailable device, unsupported model) gets a
    row saying why; the others go on. Models are never changed.

    Args:
        model: a `Model` or anything `workbench.load` accepts.
        p99_ms: the p99 latency budget, in milliseconds.
        backends: backend names.
        variants: models to compare (fp32, INT8, pruned...); default ``[model]``.
        devices: device names tried on every backend.
        batching: dynamic-batching choices (default `default_batching`).
        steps: server runs per bisection.
        min_queries: minimum queries per point (default: the server minimums).
        min_duration_s: minimum seconds per point (default: the server minimums).
        drop_after_ms: a query waiting longer is dropped (default 4x the budget).
        seed: seed of every point's arrival schedule.
        warmup: untimed calls per batch size after compiling.
        inputs: real inputs for every point instead of generated ones, as `scenario`
            takes them (arrays, a `Dataset` or batches; a batch of ``b`` runs the
            first ``b`` samples); checked against each variant before any run.
        options: backend options for ``compile``.
        price_per_hour: machine price per hour, for the cost per million at the rate found.
        clock: a `Clock`; a `VirtualClock` simulates every run exactly (tests).
        progress: ``progress(fraction, message)`` callback.
        cancel: a `CancelToken` checked between points.
        timing: a `TimingOptions` shared with `profile`, `sweep` and `scenario`; a search
            reads its ``warmup``.
        candidates: items each query (a ranking request) scores, as `scenario` takes
            it: rates are requests per second, ``throughput_per_s`` items per second.
        user_inputs: the inputs holding the user's features (`scenario`).

    Returns:
        An `SloResult`.

    Raises:
        InputError: a budget, step count or price that is not positive.

    Example:
        >>> r = wb.slo("digits-cnn", p99_ms=5, backends=["onnxruntime", "torch"])
        >>> r.table[["backend", "max_rate_per_s", "max_batch"]]
    """
    from workbench.data import input_pool
    from workbench.loaders import load

    p99_ms = number("p99_ms", p99_ms, above=0.0, maximum=MAX_SECONDS * 1e3)
    steps = whole("steps", steps, maximum=MAX_STEPS)
    warmup = cast(int, timing_of(slo, timing, warmup=warmup).warmup)
    if drop_after_ms is not None:
        drop_after_ms = number("drop_after_ms", drop_after_ms, above=0.0)
    if price_per_hour is not None:
        cost_per_million(price_per_hour, 1.0)  # validates the price before any run
    minimums = minimums_for("server", min_queries, min_duration_s)
    choices = tuple(batching or default_batching(p99_ms))
    models = [load(v) for v in (variants or [model])]
    pools = {id(m): None if inputs is None else input_pool(m, inputs) for m in models}
    rankings = {id(m): ranking_settings(m, candidates, user_inputs) for m in models}
    search = _Search(
        p99_ms, choices, steps, minimums, drop_after_ms or 4 * p99_ms, seed, clock or RealClock()
    )
    configs = [(m, b, d) for m in models for b in backends for d in devices]
    rows: list[dict[str, Any]] = []
    for index, (variant, backend, device) in enumerate(configs):
        if cancel is not None:
            cancel.check()
        if progress is not None:
            progress(index / len(configs), f"{variant.recipe_name} {backend}/{device}")
        pool = pools[id(variant)]
        rows.append(
            search.configuration(
                variant, backend, device, warmup, options, cancel, pool, rankings[id(variant)]
            )
        )
    if progress is not None:
        progress(1.0, "done")
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if price_per_hour is not None:
        table["cost_per_million"] = [
            cost_per_million(price_per_hour, rate) if rate and rate > 0 else math.nan
            for rate in table["max_rate_per_s"]
        ]
    return SloResult(
        p99_ms=p99_ms,
        table=table,
        points=pd.DataFrame(search.points, columns=POINT_COLUMNS),
        minimums=minimums,
        price_per_hour=price_per_hour,
        settings={
            "model": ", ".join(sorted({m.name for m in models})),
            "steps": steps,
            "batching": [b.label for b in choices],
            "seed": seed,
            **next(iter(rankings.values())),
        },
        machine=machine_record(),
    )


class _Search:
    """The bisection of one `slo` call; collects every point it runs."""

    def __init__(
        self,
        p99_ms: float,
        batching: tuple[Batching, ...],
        steps: int,
        minimums: Minimums,
        drop_after_ms: float,
        seed: int,
        clock: Clock,
    ) -> None:
        self.p99_ms, self.batching, self.steps = p99_ms, batching, steps
        self.minimums, self.drop_after_ms, self.seed, self.clock = (
            minimums,
            drop_after_ms,
            seed,
            clock,
        )
        self.points: list[dict[str, Any]] = []

    def configuration(
        self,
        model: Model,
        backend: str,
        device: str,
        warmup: int,
        options: dict[str, Any] | None,
        cancel: CancelToken | None,
        inputs: Mapping[str, np.ndarray] | None = None,
        ranking: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The table row of one variant x backend x device: its best batching choice."""
        row: dict[str, Any] = {
            "variant": model.recipe_name,
            "backend": backend,
            "device": device,
            "points": 0,
        }
        try:
            with compiled(model, backend, device, options) as run:
                sut = SystemUnderTest(run.session, model, self.clock, inputs, ranking)
                sizes = sorted({b.max_batch for b in self.batching})
                sut.warm(sizes, warmup)
                found = [self._bisect(sut, row, choice, cancel) for choice in self.batching]
        except CancelledError:
            raise
        except WorkbenchError as exc:  # it fails to compile or to run: the others go on
            return {**row, "max_rate_per_s": math.nan, "limited_by": f"failed: {exc}"}
        best = max(found, key=lambda f: f["max_rate_per_s"])
        return {**row, **best, "points": sum(f["points"] for f in found)}

    def _batch_ms(self, sut: SystemUnderTest, batch: int) -> float:
        """Median milliseconds of back-to-back batches of ``batch`` (a few timed calls)."""
        times = [end - start for start, end in (sut.run(batch) for _ in range(CAPACITY_PROBES))]
        return max(float(np.median(times)) * 1e3, 1e-6)

    def _bisect(
        self,
        sut: SystemUnderTest,
        row: dict[str, Any],
        choice: Batching,
        cancel: CancelToken | None,
    ) -> dict[str, Any]:
        batch_ms = self._batch_ms(sut, choice.max_batch)
        capacity = choice.max_batch * 1e3 / batch_ms
        found: dict[str, Any] = {
            "max_rate_per_s": 0.0,
            "max_batch": choice.max_batch,
            "batch_window_ms": choice.window_ms,
            "capacity_per_s": capacity,
            "p99_ms": math.nan,
            "throughput_per_s": math.nan,
            "points": 0,
        }
        if batch_ms > self.p99_ms:
            # no arrival rate can help: each batch alone already takes longer than the budget
            # (and a search would spend minutes at the few queries/s such a model serves)
            return {
                **found,
                "limited_by": f"a batch of {choice.max_batch} takes {format_number(batch_ms)} "
                f"ms (median of {CAPACITY_PROBES}), over the {self.p99_ms:g} ms budget",
            }
        passed_rate, failed_rate = 0.0, 1.25 * capacity
        best: dict[str, Any] = {"p99_ms": math.nan, "throughput_per_s": math.nan}
        limited_by = "every point passed: the search range ends at 1.25x the capacity estimate"
        for _ in range(self.steps):
            if cancel is not None:
                cancel.check()
            rate = (passed_rate + failed_rate) / 2
            load = ServerLoad(
                rate, choice.max_batch, choice.window_ms, self.p99_ms, self.drop_after_ms, self.seed
            )
            run = server(sut, self.minimums, load)
            completed = run.queries.loc[~run.queries["dropped"], "latency_ms"]
            p50, p99 = np.percentile(completed, [50, 99]) if len(completed) else (math.nan,) * 2
            items = (sut.ranking or {}).get("candidates", 1)  # samples a query
            throughput = int((~run.queries["dropped"]).sum()) * items / run.duration_s
            passed = not run.reasons
            self.points.append(
                {
                    **{k: row[k] for k in ("variant", "backend", "device")},
                    "configuration": choice.label,
                    "max_batch": choice.max_batch,
                    "batch_window_ms": choice.window_ms,
                    "rate_per_s": rate,
                    "p50_ms": float(p50),
                    "p99_ms": float(p99),
                    "throughput_per_s": throughput,
                    "late": int(run.queries["late"].sum()),
                    "dropped": int(run.queries["dropped"].sum()),
                    "passed": passed,
                    "reasons": "; ".join(run.reasons),
                }
            )
            if passed:
                passed_rate = rate
                best = {"p99_ms": float(p99), "throughput_per_s": throughput}
            else:
                failed_rate = rate
                limited_by = f"at {format_number(rate)}/s: " + "; ".join(run.reasons)
        return {
            **found,
            **best,
            "max_rate_per_s": passed_rate,
            "limited_by": limited_by,
            "points": self.steps,
        }
