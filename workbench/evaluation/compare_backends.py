"""Which runtime should I use: every backend x device x option set that runs a model, fairly.

`compare_backends` finds every backend on this machine that can run the model (its
devices, and the option sets a backend offers through an optional
``option_sets(device)`` method), measures each at each batch size with the fair protocol
of `workbench.profiling.compare_runtimes` (each runtime in its own fresh process at its own
settings, rounds alternated, spread kept), and returns one table: latency, throughput,
cold start and memory, with the best value of each column flagged per batch size.
Backends that cannot run the model are listed with their reasons, not measured.

Example:
    >>> c = wb.compare_backends("digits-cnn", batch_sizes=[1, 32])
    >>> c.table[["runtime", "batch_size", "latency_ms", "best_latency"]]
"""

from __future__ import annotations

import dataclasses
import html
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.argtypes import MAX_SECONDS, check_input_bytes, number, seconds, whole
from workbench.argtypes import batch_size as checked_batch
from workbench.errors import InputError
from workbench.profiling.compare_runtimes import (
    Launcher,
    RoundResult,
    Runtime,
    RuntimeComparison,
    compare_runtimes,
    model_reference,
)
from workbench.profiling.results import dump_json, load_json

__all__ = ["BEST_COLUMNS", "BackendComparison", "candidate_runtimes", "compare_backends"]

#: column -> (flag column, whether lower is better)
#: most rounds (child processes per runtime and batch size) a comparison may ask for
MAX_ROUNDS = 100

BEST_COLUMNS: dict[str, tuple[str, bool]] = {
    "latency_ms": ("best_latency", True),
    "throughput_per_s": ("best_throughput", False),
    "cold_start_s": ("best_cold_start", True),
    "memory_mib": ("best_memory", True),
}


# eq=False: == is identity; a generated __eq__ would compare DataFrames
@dataclass(frozen=True, eq=False)
class BackendComparison:
    """Every runnable backend x device x option set, measured fairly at each batch size.

    Attributes:
        model: the model reference the children loaded (a sample name or file path).
        batch_sizes: the batch sizes measured.
        comparisons: the fair comparison of every runtime, per batch size.
        skipped: ``(backend, device, reason)`` for each pairing that was not measured.
    """

    model: str
    batch_sizes: tuple[int, ...]
    comparisons: dict[int, RuntimeComparison]
    skipped: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def table(self) -> pd.DataFrame:
        """One row per runtime and batch size.

        Columns: ``runtime``, ``backend``, ``device``, ``options``, ``batch_size``,
        ``latency_ms`` (median of the per-round medians) with ``latency_min_ms`` and
        ``latency_max_ms`` (their range), ``throughput_per_s`` (items per second at that
        median), ``load_s``, ``compile_s``, ``first_inference_ms`` and ``cold_start_s``
        (compile plus first inference), ``memory_mib`` (resident memory compiling and
        running added), each a median over rounds, ``rounds``, ``errors``, and a
        ``best_*`` flag per measured column (`BEST_COLUMNS`) within each batch size.
        Measured on a cluster, ``host`` and ``worker`` follow ``device``: one row per
        runtime, batch size and host, since rounds on different machines are not one
        statistic, and the ``best_*`` flags are within each batch size and host.
        """
        rows = [
            _row(comparison, runtime, rounds)
            for comparison in self.comparisons.values()
            for runtime in comparison.runtimes
            for rounds in _by_host(comparison, runtime.name)
        ]
        hosts = self.hosts
        columns = [*_COLUMNS[:3], "host", "worker", *_COLUMNS[3:]] if hosts else _COLUMNS
        table = pd.DataFrame.from_records(rows, columns=columns)
        within = ["batch_size", "host"] if hosts else ["batch_size"]
        for column, (flag, lower) in BEST_COLUMNS.items():
            table[flag] = False
            for _, group in table.groupby(within):
                values = group[column].dropna()
                if not values.empty:
                    table.loc[values.idxmin() if lower else values.idxmax(), flag] = True
        return table

    @property
    def hosts(self) -> list[str]:
        """The hosts the rounds ran on, sorted; empty when measured on this machine."""
        return sorted({_host(r) for c in self.comparisons.values() for r in c.results} - {""})

    def best(
        self, column: str = "latency_ms", batch_size: int | None = None, host: str | None = None
    ) -> str:
        """The runtime with the best ``column`` at ``batch_size`` (default the first one).

        Args:
            column: one of `BEST_COLUMNS`.
            batch_size: default the first batch size.
            host: measured on a cluster, the best on this host (default the first of
                `hosts`); ignored for a comparison measured here.

        Raises:
            InputError: an unknown column, batch size or host, or nothing measured there.
        """
        if column not in BEST_COLUMNS:
            raise InputError(f"column must be one of {list(BEST_COLUMNS)}, got {column!r}")
        batch = self.batch_sizes[0] if batch_size is None else batch_size
        table = self.table
        rows = table[(table["batch_size"] == batch) & table[BEST_COLUMNS[column][0]]]
        hosts = self.hosts
        if hosts:
            rows = rows[rows["host"] == (host or hosts[0])]
        if rows.empty:
            where = f" on {host}" if host and hosts else ""
            raise InputError(f"no runtime measured {column} at batch {batch}{where}")
        return str(rows["runtime"].iloc[0])

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: every round's samples and cold start, and the skipped."""
        return {
            "model": self.model,
            "batch_sizes": list(self.batch_sizes),
            "comparisons": {str(b): c.to_dict() for b, c in self.comparisons.items()},
            "skipped": [list(s) for s in self.skipped],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackendComparison:
        """Rebuild from `to_dict` output."""
        return cls(
            model=data["model"],
            batch_sizes=tuple(int(b) for b in data["batch_sizes"]),
            comparisons={
                int(b): RuntimeComparison.from_dict(c) for b, c in data["comparisons"].items()
            },
            skipped=[(str(b), str(d), str(r)) for b, d, r in data.get("skipped", [])],
        )

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The comparison, every sample included, as JSON; also written to ``path``."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> BackendComparison:
        """Rebuild from `to_json` output, or from the file at a path holding it."""
        return cls.from_dict(load_json(text_or_path, "a backend comparison"))

    def _header(self) -> str:
        rounds = {len({r.round for r in c.results}) for c in self.comparisons.values()}
        return (
            f"{self.model}: {len(self._runtimes())} runtimes, each in its own processes at its "
            f"own settings, {'/'.join(map(str, sorted(rounds)))} alternating rounds per batch; "
            "* marks the best of each column per batch size"
        )

    def _runtimes(self) -> set[str]:
        return {r.name for c in self.comparisons.values() for r in c.runtimes}

    def _shown(self, table: pd.DataFrame) -> pd.DataFrame:
        """The display form of `table`: measured columns in their units, the best of
        each starred."""
        from workbench.profiling.formatting import format_cell
        from workbench.units import format_ms

        shown = table[["runtime", "batch_size", *(["host"] if "host" in table else [])]].copy()
        for column in ("latency_ms", "throughput_per_s", "cold_start_s", "memory_mib"):
            flag = BEST_COLUMNS[column][0]
            shown[column] = [
                format_cell(column, v) + (" *" if best and pd.notna(v) else "")
                for v, best in zip(table[column], table[flag], strict=True)
            ]
        shown["range_ms"] = [
            f"{format_ms(lo)} – {format_ms(hi)}" if pd.notna(lo) else "—"
            for lo, hi in zip(table["latency_min_ms"], table["latency_max_ms"], strict=True)
        ]
        shown["verdict"] = table["verdict"]  # why a row's numbers are to be read with care
        shown["errors"] = table["errors"]
        return shown

    def __repr__(self) -> str:
        from workbench.profiling.formatting import frame_text

        skipped = "".join(f"\n  skipped {b}/{d}: {r}" for b, d, r in self.skipped)
        text = frame_text(self._shown(self.table))
        return f"BackendComparison({self._header()})\n{text}{skipped}"

    def _repr_html_(self) -> str:
        from workbench.profiling.formatting import frame_html, summary_html
        from workbench.profiling.results import figure_html
        from workbench.units import format_ms

        table = self.table
        facts = [
            (f"fastest at batch {batch}", f"{best['runtime']} ({format_ms(best['latency_ms'])})")
            for batch, best in (
                (b, rows.loc[rows["latency_ms"].idxmin()])
                for b, rows in table.groupby("batch_size")
                if rows["latency_ms"].notna().any()
            )
        ]
        skipped = "".join(f"<li>{html.escape(f'{b}/{d}: {r}')}</li>" for b, d, r in self.skipped)
        body = frame_html(self._shown(table)) + (
            f"<p>Not measured:</p><ul>{skipped}</ul>" if skipped else ""
        )
        return summary_html(self._header(), facts, figure_html(self) + body)


_COLUMNS = [
    "runtime",
    "backend",
    "device",
    "options",
    "batch_size",
    "latency_ms",
    "latency_min_ms",
    "latency_max_ms",
    "throughput_per_s",
    "load_s",
    "compile_s",
    "first_inference_ms",
    "cold_start_s",
    "memory_mib",
    "rounds",
    "noisy",
    "verdict",
    "errors",
]


def _host(result: RoundResult) -> str:
    """The host a round ran on: set by a Dask worker (`workbench.cluster`), else ""."""
    return str(result.environment.get("host", ""))


def _by_host(comparison: RuntimeComparison, name: str) -> list[list[RoundResult]]:
    """One runtime's rounds, grouped by the host they ran on (one group locally)."""
    groups: dict[str, list[RoundResult]] = {}
    for result in comparison.results:
        if result.runtime == name:
            groups.setdefault(_host(result), []).append(result)
    return [groups[host] for host in sorted(groups)] or [[]]


def _row(
    comparison: RuntimeComparison, runtime: Runtime, rounds: list[RoundResult]
) -> dict[str, Any]:
    medians = [r.measurement.median for r in rounds if r.measurement is not None]

    def startup(key: str) -> float:
        values = [r.startup[key] for r in rounds if r.measurement and key in r.startup]
        return statistics.median(values) if values else float("nan")

    latency = statistics.median(medians) if medians else float("nan")
    compile_s, first_ms = startup("compile_s"), startup("first_inference_ms")
    return {
        "runtime": runtime.name,
        "backend": runtime.backend,
        "device": runtime.device,
        "host": _host(rounds[0]) if rounds else "",
        "worker": ", ".join(sorted({str(r.environment.get("worker", "")) for r in rounds})),
        "options": ", ".join(f"{k}={v}" for k, v in sorted(runtime.options.items())),
        "batch_size": comparison.batch_size,
        "latency_ms": latency,
        "latency_min_ms": min(medians, default=float("nan")),
        "latency_max_ms": max(medians, default=float("nan")),
        "throughput_per_s": comparison.batch_size / latency * 1e3 if medians else float("nan"),
        "load_s": startup("load_s"),
        "compile_s": compile_s,
        "first_inference_ms": first_ms,
        "cold_start_s": compile_s + first_ms / 1e3,
        "memory_mib": startup("runtime_bytes") / 2**20,
        "rounds": len(medians),
        # the fair protocol's verdict: a noisy row's numbers are read with their range
        "noisy": runtime.name in comparison.uncertain(),
        "verdict": comparison.verdict(runtime.name),
        "errors": "; ".join(sorted({r.error for r in rounds if r.error})),
    }


def candidate_runtimes(
    model: Any,
    backends: Iterable[str] | None = None,
    options: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    devices: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[Runtime], list[tuple[str, str, str]]]:
    """Every backend x device x option set here that can run ``model``, and the rest with why.

    Option sets per backend: ``options[backend]`` when given, else the backend's
    ``option_sets(device)`` when it has one (a mapping of label to options; the empty
    set, its defaults, should be among them), else its defaults alone.

    Args:
        model: a loaded `Model` (its ``supports`` checks run in this process).
        backends: backend names to consider (default every registered one).
        options: option sets per backend name, overriding the backend's own.
        devices: each backend's devices where the children run (a cluster's workers);
            default this machine's. A backend missing from it is skipped.

    Returns:
        ``(runtimes, skipped)``; ``skipped`` holds ``(backend, device, reason)``.
    """
    from workbench.backends.base import backend_names, get_backend

    runtimes: list[Runtime] = []
    skipped: list[tuple[str, str, str]] = []
    for name in backends if backends is not None else backend_names():
        try:
            backend = get_backend(name)
            found = backend.devices() if devices is None else list(devices.get(name, []))
        except Exception as exc:  # a broken plugin must not stop the comparison
            skipped.append((name, "-", f"failed to load: {exc}"))
            continue
        if not found:
            reason = "no Dask worker has it available" if devices is not None else ""
            skipped.append(
                (name, "-", reason or backend.availability().reason or "no usable device")
            )
            continue
        support = backend.supports(model)
        if not support.ok:
            skipped.extend((name, d, "; ".join(support.reasons)) for d in found)
            continue
        for device in found:
            for option_set in _option_sets(backend, device, options):
                runtimes.append(Runtime(name, device, dict(option_set)))
    return runtimes, skipped


def _for_batch(runtime: Runtime, batch: int) -> Runtime:
    """``runtime`` compiled for ``batch`` when its backend compiles for one batch size
    (torch-compile): compiled for 1 and timed at 32 it would recompile outside its
    ``compile_s`` and time a dynamic-shape graph. Its name stays the same."""
    from workbench.backends.base import get_backend

    if "batch_size" in runtime.options or not getattr(
        get_backend(runtime.backend), "compiles_for_batch", False
    ):
        return runtime
    options = {**runtime.options, "batch_size": batch}
    return dataclasses.replace(runtime, options=options, label=runtime.name)


def _option_sets(
    backend: Any, device: str, given: Mapping[str, Sequence[Mapping[str, Any]]] | None
) -> list[Mapping[str, Any]]:
    if given is not None and backend.name in given:
        return list(given[backend.name])
    offered = getattr(backend, "option_sets", None)
    return list(offered(device).values()) if callable(offered) else [{}]


def compare_backends(
    model: Any,
    batch_sizes: Sequence[int] = (1, 32),
    *,
    backends: Iterable[str] | None = None,
    options: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    rounds: int = 3,
    retries: int = 2,
    budget_s: float = 0.5,
    warmup_s: float = 0.2,
    timeout_s: float = 600.0,
    launcher: Launcher | None = None,
    progress: Callable[[float, str], None] | None = None,
    cluster: Any = None,
    exclusive: bool = True,
    inputs: Any = None,
) -> BackendComparison:
    """Measure every backend x device x option set that can run ``model``, fairly.

    Each runtime runs in fresh child processes (one per round) at its own settings, the
    runtimes alternating in rotated order (`workbench.compare_runtimes`); every child
    also times its cold start (load, compile, first inference) and the resident memory
    the runtime added. Nothing in this process is changed; the model is never mutated.

    Args:
        model: a sample name, a model file, or a `Model` loaded from either (each child
            loads it again from there).
        batch_sizes: the batch sizes to measure at, each its own comparison.
        backends: backend names to consider (default every registered one).
        options: option sets per backend name (``{"openvino": [{}, {"hint":
            "throughput"}]}``), overriding the backend's own ``option_sets(device)``.
        rounds: processes per runtime and batch size.
        retries: at most this many more rounds per batch size while a runtime's rounds
            are noisy (`workbench.compare_runtimes`); 0 takes the rounds as they come.
        budget_s: time budget of each child's measurement, in seconds.
        warmup_s: minimum warm-up time in each child, in seconds.
        timeout_s: a child running longer is stopped and its round recorded as failed.
        launcher: runs one child spec and returns its result (tests inject a fake).
        progress: ``progress(fraction, message)`` callback.
        cluster: a Dask scheduler address (``"tcp://host:8786"``), ``distributed.Client``
            or cluster object: every child (runtime x round x batch size) becomes a Dask
            task placed like a sweep point (`workbench.cluster.placement`), the devices
            are the workers', a model file travels as its bytes, and each round records
            its worker and host. None runs the children on this machine.
        exclusive: with ``cluster``, one measurement per machine at a time (False:
            faster, but children on one machine disturb each other's timings).
        inputs: real inputs every runtime times instead of generated ones, as
            `wb.profile` takes them (arrays by name or in input order) or a `Dataset` /
            iterable of ``(inputs, labels)`` batches; at batch size ``b`` the first
            ``b`` samples (repeated from the start when there are fewer). On this
            machine only, not with ``cluster``.

    Returns:
        A `BackendComparison` (``.table``, ``.best()``, ``.to_dict()``; a figure with
        `workbench.viz.runtimes.backend_comparison_figure`); from a cluster its table
        has one row per runtime, batch size and host.

    Raises:
        InputError: a model a child cannot load again, no batch sizes, no backend here
            (or on the cluster) that can run the model (the message gives each one's
            reason), both ``launcher`` and ``cluster``, inputs that do not fit the
            model, or inputs with ``cluster``.

    Example:
        >>> c = wb.compare_backends("digits-cnn", batch_sizes=[1, 32])
        >>> c.best("throughput_per_s", batch_size=32)
    """
    from workbench.data import input_pool
    from workbench.loaders import load, samples

    reference = model_reference(model)
    sizes = tuple(checked_batch(b, "each of batch_sizes") for b in batch_sizes)
    if not sizes:
        raise InputError("batch_sizes must name at least one batch size, got none")
    rounds = whole("rounds", rounds, maximum=MAX_ROUNDS)
    retries = whole("retries", retries, minimum=0, maximum=MAX_ROUNDS)
    budget_s, timeout_s = seconds("budget_s", budget_s), seconds("timeout_s", timeout_s)
    warmup_s = number("warmup_s", warmup_s, minimum=0.0, maximum=MAX_SECONDS)
    loaded = samples.load(reference) if reference in samples.names() else load(reference)
    check_input_bytes(loaded, max(sizes))
    pool = None if inputs is None else input_pool(loaded, inputs)

    def measure(
        launcher: Launcher | None,
        progress: Callable[[float, str], None] | None,
        devices: Mapping[str, Sequence[str]] | None = None,
    ) -> BackendComparison:
        runtimes, skipped = candidate_runtimes(loaded, backends, options, devices)
        if not runtimes:
            reasons = "; ".join(f"{b}/{d}: {r}" for b, d, r in skipped) or "no backends given"
            where = "here" if devices is None else "on the cluster"
            raise InputError(f"no backend {where} can run {loaded.name}: {reasons}")
        comparisons: dict[int, RuntimeComparison] = {}
        for i, batch in enumerate(sizes):

            def step(fraction: float, message: str, i: int = i, batch: int = batch) -> None:
                if progress is not None:
                    progress((i + fraction) / len(sizes), f"batch {batch}: {message}")

            comparisons[batch] = compare_runtimes(
                reference,
                [_for_batch(runtime, batch) for runtime in runtimes],
                batch,
                rounds=rounds,
                retries=retries,
                budget_s=budget_s,
                warmup_s=warmup_s,
                timeout_s=timeout_s,
                launcher=launcher,
                progress=step,
                inputs=pool,
            )
        return BackendComparison(reference, sizes, comparisons, skipped)

    if cluster is None:
        return measure(launcher, progress)
    if launcher is not None:
        raise InputError("give launcher= or cluster=, not both: a cluster launches the children")
    if pool is not None:
        raise InputError(
            "inputs= are timed on this machine only: leave cluster= out, or let the "
            "workers generate inputs"
        )
    from workbench.cluster.compare_backends import compare_on_cluster

    return compare_on_cluster(
        cluster, measure, exclusive=exclusive, timeout_s=timeout_s, progress=progress
    )
