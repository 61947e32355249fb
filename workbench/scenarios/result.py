"""`ScenarioResult`: every query of a scenario run, its statistics and its own validity checks."""

from __future__ import annotations

import hashlib
import html
import math
import os
import platform
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.profiling.results import dump_json, load_json
from workbench.profiling.timer import Measurement
from workbench.scenarios.energy import Energy, cost_per_million
from workbench.units import format_count, format_ms, format_number, format_seconds

KINDS = ("single-stream", "multi-stream", "offline", "server")

#: environment variable naming this machine in the results it records (default: host name)
MACHINE_ENV = "WORKBENCH_MACHINE"


def machine_record() -> dict[str, Any]:
    """Where a result is measured: a name to read, an id that tells machines apart, and
    what the machine has, recorded in every `ScenarioResult` and `SloResult`.

    The name is ``$WORKBENCH_MACHINE`` when set (``"gpu-box-3"``, or a label that hides
    the host when results leave the building), else the plain host name: a comparison
    of results from several machines is read by people, who know their hosts by name
    (profiles already record it as ``environment["hostname"]``). The ``id`` is a hash of
    the host name and the hardware, so two machines both called ``localhost`` (two
    containers) still differ, and a renamed label still matches its machine.

    Returns:
        ``name``, ``id`` (12 hex digits), ``cpu`` (model), ``arch``, ``cores`` (logical),
        ``usable_cores`` (affinity and cgroup quota), ``memory_bytes`` and ``gpus``
        (names: torch's when it is loaded, else NVML's when installed; never imports torch).

    Example:
        >>> machine_record()["name"]
        'build-server-2'
    """
    from workbench.machine import cpu_info

    cpu = cpu_info()
    host = platform.node()
    gpus = _gpu_names()
    hardware = [host, cpu["model"], cpu["arch"], cpu["logical_cores"], cpu["memory_bytes"], *gpus]
    digest = hashlib.sha256("|".join(map(str, hardware)).encode()).hexdigest()
    return {
        "name": os.environ.get(MACHINE_ENV) or host or "unnamed",
        "id": digest[:12],
        "cpu": cpu["model"],
        "arch": cpu["arch"],
        "cores": cpu["logical_cores"],
        "usable_cores": cpu["usable_cores"],
        "memory_bytes": cpu["memory_bytes"],
        "gpus": gpus,
    }


def _gpu_names() -> list[str]:
    """GPU names from torch when it is loaded, else from NVML (a GPU box serving with
    onnxruntime alone still says which GPU it has); importing torch here would cost seconds."""
    from workbench.machine import gpu_info

    if "torch" in sys.modules:
        return [g["name"] for g in gpu_info()]
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        names = [pynvml.nvmlDeviceGetName(h) for h in handles]
    except pynvml.NVMLError:  # a driver that is not loaded: no usable GPU
        return []
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def machine_text(machine: dict[str, Any]) -> str:
    """One line: ``name (cpu, N cores[, gpus])``, or "an unrecorded machine"."""
    if not machine:
        return "an unrecorded machine"
    gear = [str(machine.get("cpu", "?")), f"{machine.get('cores', '?')} cores"]
    return f"{machine.get('name', '?')} ({', '.join(gear + list(machine.get('gpus', [])))})"


#: columns of `ScenarioResult.queries` and their dtypes (times in seconds from the run's start)
QUERY_COLUMNS: dict[str, str] = {
    "query": "int64",
    "samples": "int64",
    "scheduled_s": "float64",
    "issue_s": "float64",
    "start_s": "float64",
    "completion_s": "float64",
    "latency_ms": "float64",
    "service_ms": "float64",
    "batch": "int64",
    "dropped": "bool",
    "late": "bool",
}


@dataclass(frozen=True)
class Minimums:
    """How long a run must be to count, and the LoadGen rule it is scaled down from.

    Attributes:
        queries: fewest queries (samples, for offline) a valid run completes.
        duration_s: shortest valid run, in seconds.
        loadgen_queries: LoadGen's minimum for the same scenario.
        loadgen_duration_s: LoadGen's minimum duration, in seconds.
    """

    queries: int
    duration_s: float
    loadgen_queries: int
    loadgen_duration_s: float

    def describe(self, unit: str = "queries") -> str:
        """One line: these minimums and LoadGen's they are scaled from."""
        return (
            f"minimums: {self.queries} {unit} and {self.duration_s:g} s "
            f"(scaled down from LoadGen's {self.loadgen_queries} {unit} and "
            f"{self.loadgen_duration_s:g} s)"
        )


#: notebook-sized minimums per scenario; LoadGen's (MLPerf Inference 1.0+) alongside
MINIMUMS: dict[str, Minimums] = {
    "single-stream": Minimums(256, 1.0, 1024, 600.0),
    "multi-stream": Minimums(128, 1.0, 270_336, 600.0),
    "offline": Minimums(1024, 1.0, 24_576, 600.0),
    "server": Minimums(256, 1.0, 270_336, 600.0),
}


def query_frame(
    origin_s: float,
    scheduled_s: np.ndarray,
    issue_s: np.ndarray,
    start_s: np.ndarray,
    completion_s: np.ndarray,
    *,
    samples: np.ndarray | int,
    batch: np.ndarray | int,
    dropped: np.ndarray | None = None,
    late: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per query, times relative to ``origin_s`` (the run's start)."""
    n = len(scheduled_s)
    frame = pd.DataFrame(
        {
            "query": np.arange(n),
            "samples": np.broadcast_to(samples, n),
            "scheduled_s": scheduled_s - origin_s,
            "issue_s": issue_s - origin_s,
            "start_s": start_s - origin_s,
            "completion_s": completion_s - origin_s,
            "latency_ms": (completion_s - issue_s) * 1e3,
            "service_ms": (completion_s - start_s) * 1e3,
            "batch": np.broadcast_to(batch, n),
            "dropped": np.zeros(n, bool) if dropped is None else dropped,
            "late": np.zeros(n, bool) if late is None else late,
        }
    )
    return frame.astype(QUERY_COLUMNS)


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario run: every query's times, statistics, and whether the run counts.

    Attributes:
        kind: ``"single-stream"``, ``"multi-stream"``, ``"offline"`` or ``"server"``.
        model: model name (with its recipe label).
        backend: backend name.
        device: device name.
        settings: the scenario's settings (rate, batching window, interval...).
        minimums: the minimums this run had to meet.
        queries: one row per query (offline: per batch) with ``scheduled_s``,
            ``issue_s``, ``start_s``, ``completion_s`` (seconds from the run's start),
            ``latency_ms`` (completion - issue), ``service_ms`` (completion - start),
            ``batch`` (size of the batch it ran in), ``dropped`` and ``late``.
        duration_s: from the run's start to the last completion, in seconds.
        reasons: why the run is invalid; empty when it is valid.
        energy: measured energy, or why it is unavailable.
        price_per_hour: the price the user gave, for `cost_per_million`.
        environment: where it ran (versions, CPU).
        machine: the machine it was measured on (`machine_record`; empty in results
            written before machines were recorded).
    """

    kind: str
    model: str
    backend: str
    device: str
    settings: dict[str, Any]
    minimums: Minimums
    queries: pd.DataFrame
    duration_s: float
    reasons: tuple[str, ...] = ()
    energy: Energy = field(default_factory=lambda: Energy(None, reason="not measured"))
    price_per_hour: float | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        """True when the run met its minimums and every check of its scenario."""
        return not self.reasons

    @property
    def completed(self) -> pd.DataFrame:
        """Queries that ran (not dropped)."""
        return self.queries[~self.queries["dropped"]]

    @cached_property
    def latency(self) -> Measurement | None:
        """Latency of completed queries (offline: time per batch), ms; None if none ran."""
        column = "service_ms" if self.kind == "offline" else "latency_ms"
        values = self.completed[column].to_numpy()
        if values.size == 0:
            return None
        what = "per batch" if self.kind == "offline" else "per query"
        return Measurement(tuple(float(v) for v in values), label=f"{self.label} ({what})")

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of `latency`, in ms (NaN when nothing completed)."""
        values = self.completed["service_ms" if self.kind == "offline" else "latency_ms"]
        return float(np.percentile(values, q)) if len(values) else math.nan

    @property
    def p50_ms(self) -> float:
        """Median latency in ms (offline: per batch)."""
        return self.percentile(50)

    @property
    def p90_ms(self) -> float:
        """90th-percentile latency in ms (LoadGen's single-stream figure)."""
        return self.percentile(90)

    @property
    def p99_ms(self) -> float:
        """99th-percentile latency in ms (server and multi-stream figure)."""
        return self.percentile(99)

    @property
    def samples(self) -> int:
        """Samples (inferences) completed."""
        return int(self.completed["samples"].sum())

    @property
    def throughput_per_s(self) -> float:
        """Samples completed per second over the whole run (items/s for ranking requests)."""
        return self.samples / self.duration_s if self.duration_s > 0 else math.nan

    @property
    def units(self) -> tuple[str, str]:
        """What a query and a sample are, as shown: ``("requests", "items")`` for ranking
        requests (``candidates`` set: each request scores that many items), else
        ``("queries", "samples")``."""
        return ("requests", "items") if self.settings.get("candidates") else ("queries", "samples")

    @property
    def throughput_unit(self) -> str:
        """The unit of `throughput_per_s`: ``"items/s"`` for ranking, else ``"samples/s"``."""
        return f"{self.units[1]}/s"

    @property
    def late(self) -> int:
        """Queries that missed their deadline (server: over the target latency;
        multi-stream: issued after their interval because the previous query overran)."""
        return int(self.queries["late"].sum())

    @property
    def dropped(self) -> int:
        """Queries dropped unrun because they waited too long (server)."""
        return int(self.queries["dropped"].sum())

    @property
    def issue_lag_ms(self) -> np.ndarray:
        """How late the load generator issued each query against its schedule, in ms."""
        return ((self.queries["issue_s"] - self.queries["scheduled_s"]) * 1e3).to_numpy()

    @property
    def cost_per_million(self) -> float | None:
        """Cost of a million predictions at the measured throughput (None without a price)."""
        if self.price_per_hour is None:
            return None
        return cost_per_million(self.price_per_hour, self.throughput_per_s)

    @property
    def joules_per_inference(self) -> float | None:
        """Measured joules per completed sample; None when energy is unavailable."""
        return self.energy.per_inference(self.samples)

    @property
    def label(self) -> str:
        """``"model backend/device kind"``."""
        return f"{self.model} {self.backend}/{self.device} {self.kind}"

    def metrics(self) -> dict[str, Any]:
        """The headline numbers as plain data."""
        return {
            "valid": self.valid,
            "queries": len(self.queries),
            "samples": self.samples,
            "duration_s": self.duration_s,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "throughput_per_s": self.throughput_per_s,
            "throughput_unit": self.throughput_unit,
            "late": self.late,
            "dropped": self.dropped,
            "joules_per_inference": self.joules_per_inference,
            "joules_above_idle_per_inference": self.energy.above_idle_per_inference(self.samples),
            "idle_watts": self.energy.idle_watts,
            "cost_per_million": self.cost_per_million,
        }

    def summary(self) -> str:
        """A few lines: verdict, latency percentiles, throughput, late/dropped, energy, cost."""
        verdict = "VALID" if self.valid else "INVALID: " + "; ".join(self.reasons)
        queries, samples = self.units
        what = "per batch" if self.kind == "offline" else f"per {queries.removesuffix('s')}"
        lines = [
            f"{self.label}: {verdict}",
            f"  measured on {machine_text(self.machine)}",
            *([f"  {self._settings_text()}"] if self._settings_text() else []),
            f"  {len(self.queries):,} {queries}, {self.samples:,} {samples} in "
            f"{format_seconds(self.duration_s)}; latency {what} p50 {format_ms(self.p50_ms)}, "
            f"p90 {format_ms(self.p90_ms)}, p99 {format_ms(self.p99_ms)}",
            f"  throughput {format_count(self.throughput_per_s)} {self.throughput_unit}; "
            f"late {self.late}, dropped {self.dropped}",
            *([f"  {self._generator_text()}"] if self.kind == "server" else []),
            f"  {self.energy.describe(self.samples)}",
            f"  {self.minimums.describe('samples' if self.kind == 'offline' else 'queries')}",
        ]
        if self.cost_per_million is not None:
            lines.append(
                f"  cost: {format_number(self.cost_per_million)} per million predictions "
                f"at {self.price_per_hour:g} per hour"
            )
        return "\n".join(lines)

    def _generator_text(self) -> str:
        lag = self.issue_lag_ms
        return (
            f"load generator: issue lag p50 {np.median(lag):.3g} ms, p99 "
            f"{np.percentile(lag, 99):.3g} ms, max {lag.max():.3g} ms"
        )

    def _settings_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items() if v is not None)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        verdict = (
            "<span style='color:#2a7'>valid</span>"
            if self.valid
            else "<span style='color:#c33'>INVALID</span>: " + html.escape("; ".join(self.reasons))
        )
        latency = (format_ms(v) for v in (self.p50_ms, self.p90_ms, self.p99_ms))
        rows = [
            ("measured on", machine_text(self.machine)),
            (" / ".join(self.units), f"{len(self.queries):,} / {self.samples:,}"),
            ("duration", format_seconds(self.duration_s)),
            ("latency p50 / p90 / p99", " / ".join(latency)),
            ("throughput", f"{format_count(self.throughput_per_s)} {self.throughput_unit}"),
            ("late / dropped", f"{self.late} / {self.dropped}"),
            ("energy", self.energy.describe(self.samples).removeprefix("energy: ")),
        ]
        if self.cost_per_million is not None:
            rows.append(
                (
                    "cost per million",
                    f"{format_number(self.cost_per_million)} at {self.price_per_hour:g}/h",
                )
            )
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return (
            f"<b>{html.escape(self.label)}</b> — {verdict}<br>"
            f"<small>{html.escape(self._settings_text())}</small>"
            f"<table>{cells}</table><small>{html.escape(self.minimums.describe())}</small>"
        )

    def to_dict(self) -> dict[str, Any]:
        """Everything, every query included, as JSON-ready data."""
        return {
            "kind": self.kind,
            "model": self.model,
            "backend": self.backend,
            "device": self.device,
            "settings": self.settings,
            "minimums": self.minimums.__dict__,
            "duration_s": self.duration_s,
            "reasons": list(self.reasons),
            "energy": self.energy.to_dict(),
            "price_per_hour": self.price_per_hour,
            "environment": self.environment,
            "machine": self.machine,
            "metrics": _json_safe(self.metrics()),
            "queries": {
                "columns": list(self.queries.columns),
                "data": json_rows(self.queries, as_dicts=False),
            },
        }

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The result (every query) as JSON (`to_dict`), also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScenarioResult:
        """Rebuild from `to_dict` output (statistics are recomputed from the queries)."""
        table = data["queries"]
        frame = pd.DataFrame(table["data"], columns=table["columns"]).astype(QUERY_COLUMNS)
        return cls(
            kind=data["kind"],
            model=data["model"],
            backend=data["backend"],
            device=data["device"],
            settings=dict(data["settings"]),
            minimums=Minimums(**data["minimums"]),
            queries=frame,
            duration_s=data["duration_s"],
            reasons=tuple(data["reasons"]),
            energy=Energy.from_dict(data["energy"]),
            price_per_hour=data.get("price_per_hour"),
            environment=dict(data.get("environment", {})),
            machine=dict(data.get("machine") or {}),
        )

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> ScenarioResult:
        """Rebuild from `to_json` output, or from the file at a path holding it."""
        return cls.from_dict(load_json(text_or_path, "a scenario result"))


def json_rows(frame: pd.DataFrame, *, as_dicts: bool = True) -> list[Any]:
    """Rows of ``frame`` as exact JSON-ready Python values, NaN written as None."""
    plain = frame.astype(object).where(frame.notna(), None)
    return plain.to_dict(orient="records") if as_dicts else plain.to_numpy().tolist()


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinity are not JSON: write them as null."""
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()
    }
