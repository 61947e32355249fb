"""Fair comparison of runtimes: each in its own fresh process, at its own defaults, alternated.

Why a process per runtime: runtimes share a process badly. ONNX Runtime's idle threads
spin for a while after each run, OpenMP and BLAS pools do the same, and whichever runtime
runs next in that process loses cores to them; thread pools, allocator caches and numba's
JIT state also carry over. Timing both in one process measures their interference, not
either runtime.

Why default settings: a runtime's settings are never changed to make another look better
(turning ORT's thread spinning off so that numba gets the cores is the example we once got
wrong: it doubled ORT's latency). Each runtime runs as its users would run it, with only
the options the caller gives *that* runtime.

Why rounds: a shared machine drifts (turbo, neighbours, thermal state), so the processes
alternate over several rounds (3 at least by default), each round in a rotated order so
that every runtime runs next to the baseline and drift cancels in the per-round ratios,
and the spread over rounds is reported next to the median; each child records the
machine's load before and after it ran, and its `Measurement` the contention during.

Why a verdict: a runtime whose rounds disagree, or whose rounds were noisy (their spread,
or a contended machine), gets a verdict in words and its ratio is uncertain; the
comparison then runs more rounds (``retries``, bounded) before giving up and saying so.

The model travels to each child as a reference (a sample name or a model file path),
never as pickled user code. The child is ``python -m workbench.profiling.compare_runtimes``, reading
one JSON spec on stdin and writing one JSON result line on stdout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.errors import InputError
from workbench.profiling.results import dump_json, load_json
from workbench.profiling.timer import Measurement

__all__ = [
    "RoundResult",
    "Runtime",
    "RuntimeComparison",
    "compare_runtimes",
    "model_reference",
    "run_child",
]

#: marks the child's result line on stdout (libraries may print other lines)
RESULT_PREFIX = "WORKBENCH_FAIR_RESULT "
#: a child answers a spec dict with a result dict (tests inject a fake one)
Launcher = Callable[[dict[str, Any]], dict[str, Any]]
#: per-round values whose interquartile range exceeds this share of their median disagree
#: (an interquartile range, not the full range, so that more rounds can outvote one outlier)
ROUND_DISAGREEMENT = 0.15


@dataclass(frozen=True)
class Runtime:
    """One runtime to compare: a backend on a device with that backend's own options.

    Attributes:
        backend: backend registry name (``"onnxruntime"``, ``"numba"``, ``"torch"``).
        device: device string.
        options: compile options of this runtime only (empty: its defaults).
        label: display name; default ``backend`` (plus device and options when set).
        model: a model reference of this entry's own (a sample name or file path), for
            comparing variants of one model (its INT8 or pruned file) on a runtime; empty:
            the comparison's model.
    """

    backend: str
    device: str = "cpu"
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    model: str = ""

    @property
    def name(self) -> str:
        """The label, or one made from backend, device and options."""
        if self.label:
            return self.label
        name = self.backend if self.device == "cpu" else f"{self.backend}/{self.device}"
        extra = ", ".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{name} ({extra})" if extra else name

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "options": dict(self.options)}


@dataclass(frozen=True)
class RoundResult:
    """One child process: one runtime measured once, in one round.

    Attributes:
        runtime: the runtime's `Runtime.name`.
        round: the round (0-based); ``position`` its place in that round's order.
        measurement: the end-to-end `Measurement` (ms), None when the child failed.
        load_before: the 1, 5, 15 minute load averages when the child started timing.
        load_after: the same when it finished.
        pid: the child's process id.
        environment: the child's thread settings and library versions.
        error: what went wrong, one line ("" when nothing did).
        startup: the child's cold start and memory: ``load_s``, ``startup_s`` (the
            runtime's one-off start in the process: its import, a JIT's target), and
            apart from it ``compile_s`` (numba's plan at the timed shapes included, no
            inference), ``first_inference_ms``, ``rss_before_bytes`` (after loading,
            before compiling), ``runtime_bytes`` (resident memory compiling and running
            added).
    """

    runtime: str
    round: int
    position: int
    measurement: Measurement | None
    load_before: tuple[float, ...] = ()
    load_after: tuple[float, ...] = ()
    pid: int = 0
    environment: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""
    startup: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["measurement"] = self.measurement.to_dict() if self.measurement else None
        data["environment"] = dict(self.environment)
        data["startup"] = dict(self.startup)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundResult:
        m = data.get("measurement")
        return cls(
            **{
                **data,
                "measurement": Measurement.from_dict(m) if m else None,
                "load_before": tuple(data.get("load_before", ())),
                "load_after": tuple(data.get("load_after", ())),
            }
        )


@dataclass(frozen=True)
class RuntimeComparison:
    """Runtimes measured with the fair protocol, round by round.

    ``table`` has one row per runtime: ``median_ms`` is the median of the per-round
    medians, ``min_ms``/``max_ms`` their range; ``ratio`` is the median over rounds of
    (this runtime's median / the baseline's median in the same round), ``ratio_min`` and
    ``ratio_max`` its range; ``load_max`` the highest 1-minute load average any of its
    children saw; ``threads`` the thread count its children ran with; ``verdict`` why
    its numbers are not to be trusted ("" when they are: see `verdict`), and ``noisy``
    (its own verdict or the baseline's is not empty: read the ratio with its range).

    Attributes:
        model: the model reference (sample name or file path).
        batch_size: batch size of the generated inputs.
        runtimes: the runtimes, in the order given.
        baseline: the name of the runtime ratios are against.
        results: every child's `RoundResult`, in the order they ran.
        machine: a description of the machine.
        created_at: ISO timestamp (UTC) of the start.
        planned_rounds: the rounds asked for; more ran when the first were noisy
            (0: as many as ran, for comparisons stored before this field).
    """

    model: str
    batch_size: int
    runtimes: tuple[Runtime, ...]
    baseline: str
    results: tuple[RoundResult, ...]
    machine: str = ""
    created_at: str = ""
    planned_rounds: int = 0

    def measurements(self, runtime: str) -> list[Measurement]:
        """The per-round measurements of one runtime (failed rounds left out)."""
        return [r.measurement for r in self._rounds(runtime) if r.measurement is not None]

    def _rounds(self, runtime: str) -> list[RoundResult]:
        return [r for r in self.results if r.runtime == runtime]

    def _round_medians(self, runtime: str) -> dict[int, float]:
        return {r.round: r.measurement.median for r in self._rounds(runtime) if r.measurement}

    def _ratios(self, runtime: str) -> list[float]:
        base, medians = self._round_medians(self.baseline), self._round_medians(runtime)
        return [medians[r] / base[r] for r in medians if r in base and base[r] > 0]

    @property
    def rounds_run(self) -> int:
        """Rounds that ran (more than `planned_rounds` when the first were noisy)."""
        return max((r.round for r in self.results), default=-1) + 1

    def verdict(self, runtime: str) -> str:
        """Why this runtime's numbers cannot be trusted, in words ("" when they can).

        Its rounds disagree (the interquartile range of their medians, or of their ratios
        to the baseline, is over `ROUND_DISAGREEMENT` of the median), half or more of its
        rounds were
        noisy (`Measurement.verdict`: spread, load, steal, oversubscription), or too few
        rounds ran for a median of rounds to mean anything.
        """
        count = len(self._round_medians(runtime))
        reasons = [f"{count} round(s): fewer than 3, no median of rounds"] if count < 3 else []
        reasons += self.curable_reasons(runtime)
        if reasons and self.rounds_run > self.planned_rounds > 0:
            reasons.append(f"after {self.rounds_run - self.planned_rounds} extra round(s)")
        return "noisy: " + "; ".join(reasons) if reasons else ""

    def curable_reasons(self, runtime: str) -> list[str]:
        """What more rounds may cure, in words: disagreeing rounds, noisy rounds (empty:
        nothing; `compare_runtimes` runs more rounds while any runtime has some)."""
        reasons = []
        values = list(self._round_medians(runtime).values())
        ratios = self._ratios(runtime) if runtime != self.baseline else []
        for what, xs, fmt in (("medians", values, "{:.4g} ms"), ("ratios", ratios, "{:.3g}×")):
            if len(xs) > 1 and _iqr(xs) > ROUND_DISAGREEMENT * statistics.median(xs):
                span = f"{fmt.format(min(xs))}–{fmt.format(max(xs))}"
                reasons.append(f"rounds disagree ({what} {span})")
                break
        noisy = [m for m in self.measurements(runtime) if m.noisy]
        if noisy and 2 * len(noisy) >= len(values):
            common = statistics.mode(r for m in noisy for r in m.noise_reasons)
            reasons.append(f"{len(noisy)} of {len(values)} rounds noisy ({common})")
        return reasons

    def uncertain(self) -> list[str]:
        """The runtimes whose verdict, or the baseline's, is not empty."""
        if self.verdict(self.baseline):
            return [r.name for r in self.runtimes]
        return [r.name for r in self.runtimes if self.verdict(r.name)]

    @property
    def table(self) -> pd.DataFrame:
        """One row per runtime: spread over rounds, ratio to the baseline, load."""
        rows = []
        uncertain = set(self.uncertain())
        for runtime in self.runtimes:
            name = runtime.name
            medians = self._round_medians(name)
            ratios = self._ratios(name)
            threads = {
                int(r.environment["threads"])
                for r in self._rounds(name)
                if r.environment.get("threads")
            }
            loads = [r.load_before[0] for r in self._rounds(name) if r.load_before]
            loads += [r.load_after[0] for r in self._rounds(name) if r.load_after]
            values = list(medians.values())
            rows.append(
                {
                    "runtime": name,
                    "backend": runtime.backend,
                    "device": runtime.device,
                    "rounds": len(values),
                    "median_ms": statistics.median(values) if values else float("nan"),
                    "min_ms": min(values, default=float("nan")),
                    "max_ms": max(values, default=float("nan")),
                    "ratio": statistics.median(ratios) if ratios else float("nan"),
                    "ratio_min": min(ratios, default=float("nan")),
                    "ratio_max": max(ratios, default=float("nan")),
                    "samples": sum(m.n for m in self.measurements(name)),
                    "noisy_rounds": sum(m.noisy for m in self.measurements(name)),
                    "load_max": max(loads, default=float("nan")),
                    "threads": "/".join(map(str, sorted(threads))),
                    "noisy": name in uncertain,
                    "verdict": self.verdict(name),
                    "errors": "; ".join(sorted({r.error for r in self._rounds(name) if r.error})),
                }
            )
        return pd.DataFrame.from_records(rows).set_index("runtime")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (every round's raw samples included)."""
        return {
            "model": self.model,
            "batch_size": self.batch_size,
            "runtimes": [r.to_dict() for r in self.runtimes],
            "baseline": self.baseline,
            "results": [r.to_dict() for r in self.results],
            "machine": self.machine,
            "created_at": self.created_at,
            "planned_rounds": self.planned_rounds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuntimeComparison:
        """Rebuild from `to_dict` output."""
        return cls(
            model=data["model"],
            batch_size=int(data["batch_size"]),
            runtimes=tuple(Runtime(**r) for r in data["runtimes"]),
            baseline=data["baseline"],
            results=tuple(RoundResult.from_dict(r) for r in data["results"]),
            machine=data.get("machine", ""),
            created_at=data.get("created_at", ""),
            planned_rounds=int(data.get("planned_rounds", 0)),
        )

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The comparison, every sample included, as JSON; also written to ``path``."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> RuntimeComparison:
        """Rebuild from `to_json` output, or from the file at a path holding it."""
        return cls.from_dict(load_json(text_or_path, "a runtime comparison"))

    def _header(self) -> str:
        rounds = self.rounds_run
        extra = rounds - self.planned_rounds if self.planned_rounds else 0
        more = f" ({extra} more than planned: the first were noisy)" if extra > 0 else ""
        uncertain = self.uncertain()
        warning = f"; uncertain (read with the range): {', '.join(uncertain)}" if uncertain else ""
        return (
            f"{self.model} at batch {self.batch_size}: each runtime in its own process at its "
            f"own defaults, {rounds} alternating rounds{more}; ratio vs {self.baseline}{warning}"
        )

    def __repr__(self) -> str:
        from workbench.profiling.formatting import frame_text

        columns = [
            "median_ms", "min_ms", "max_ms", "ratio", "ratio_min", "ratio_max", "load_max",
            "threads", "noisy", "verdict",
        ]  # fmt: skip
        text = frame_text(self.table[columns], index=True)
        return f"RuntimeComparison({self._header()})\n{text}"

    def _repr_html_(self) -> str:
        from workbench.profiling.formatting import frame_html, summary_html
        from workbench.profiling.results import figure_html
        from workbench.units import format_ms

        table = self.table.drop(columns=["backend", "device"])
        facts = [(str(name), format_ms(row["median_ms"])) for name, row in table.iterrows()]
        figure = figure_html(self)
        return summary_html(self._header(), facts, figure + frame_html(table, index=True))


def _iqr(values: list[float]) -> float:
    import numpy as np

    q1, q3 = np.percentile(values, [25, 75])
    return float(q3 - q1)


def compare_runtimes(
    model: Any,
    runtimes: Iterable[Runtime | str | tuple[Any, ...]],
    batch_size: int = 1,
    *,
    rounds: int = 5,
    retries: int = 2,
    budget_s: float = 1.0,
    warmup_s: float = 0.5,
    baseline: str | None = None,
    timeout_s: float = 600.0,
    launcher: Launcher | None = None,
    progress: Callable[[float, str], None] | None = None,
    inputs: Any = None,
) -> RuntimeComparison:
    """Compare runtimes fairly: each in a fresh process at its own defaults, alternated.

    Every round starts one child process per runtime, in a rotated order (round ``r``
    starts with runtime ``r mod n``); each child loads the model, compiles it with only
    that runtime's options, warms up for ``warmup_s`` and times end-to-end inferences
    with the measuring lifecycle (`workbench.profiling.measure`: adaptive repeats within
    ``budget_s``, one attempt: the rounds are the repeats). A runtime's settings are never
    changed for another's sake. A failing child is recorded with its error, not raised.
    Nothing in this process is changed; the model is never mutated.

    Args:
        model: a sample name (``"digits-cnn"``), a model file path, or a `Model` loaded
            from either (the child loads it again from there); a `Runtime` with its own
            ``model`` uses that instead (variants of one model).
        runtimes: `Runtime` objects, backend names, or ``(backend, device[, options])``.
        batch_size: batch size of the generated inputs.
        rounds: how many times each runtime is measured, each time in a new process
            (3 at least for a median of rounds to mean something; fewer says so).
        retries: at most this many more rounds, one at a time, while some runtime's
            `RuntimeComparison.verdict` is not empty; the verdict then says it gave up.
        budget_s: time budget of each child's measurement, in seconds.
        warmup_s: minimum warm-up time in each child, in seconds.
        baseline: the runtime ratios are against (default the first).
        timeout_s: a child running longer is stopped and its round recorded as failed.
        launcher: runs one child spec and returns its result (default a subprocess of
            this Python; tests inject a fake).
        progress: ``progress(fraction, message)`` callback.
        inputs: real inputs every child times instead of generated ones, as
            `wb.profile` takes them (arrays by name or in input order) or a `Dataset`
            / iterable of ``(inputs, labels)`` batches: the first ``batch_size``
            samples (repeated from the start when there are fewer). They travel to the
            children as an ``.npz`` file (``spec["inputs"]``), removed afterwards.

    Returns:
        A `RuntimeComparison` (``.table`` for the numbers, ``.to_dict()`` for JSON).

    Raises:
        InputError: a model that cannot travel to a child, no runtimes, duplicate
            runtime names, an unknown baseline, rounds/batch size below 1, or inputs
            that do not fit the model.

    Example:
        >>> c = wb.compare_runtimes("digits-cnn", ["onnxruntime", "numba"], batch_size=32)
        >>> c.table[["median_ms", "ratio", "ratio_min", "ratio_max"]]
    """
    reference = model_reference(model)
    chosen = [_as_runtime(r) for r in runtimes]
    names = [r.name for r in chosen]
    if not chosen:
        raise InputError("compare_runtimes needs at least one runtime, e.g. ['onnxruntime']")
    if len(set(names)) != len(names):
        raise InputError(f"runtime names must differ, got {names}: give each a label")
    baseline = baseline or names[0]
    if baseline not in names:
        raise InputError(f"baseline {baseline!r} is not one of the runtimes {names}")
    if rounds < 1 or batch_size < 1:
        raise InputError(f"rounds and batch_size must be at least 1, got {rounds}, {batch_size}")
    # every reference checked before the first child starts
    references = {r.name: model_reference(r.model) if r.model else reference for r in chosen}
    launch = launcher or (lambda spec: run_child(spec, timeout_s))
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results: list[RoundResult] = []
    total = rounds * len(chosen)
    # a noisy comparison gets more rounds, bounded; each is a full rotated round, so every
    # ratio stays paired with a baseline run of the same round
    partial = RuntimeComparison(reference, batch_size, tuple(chosen), baseline, (), "", "", rounds)
    with _inputs_file(reference, inputs, batch_size) as inputs_path:
        for r in range(rounds + max(0, retries)):
            if r >= rounds:
                partial = dataclasses.replace(partial, results=tuple(results))
                if not any(partial.curable_reasons(runtime.name) for runtime in chosen):
                    break
                total += len(chosen)
            for position in range(len(chosen)):
                runtime = chosen[(r + position) % len(chosen)]
                if progress is not None:
                    planned = f"{r + 1}/{rounds}" if r < rounds else f"{r + 1} (noisy: one more)"
                    progress(len(results) / total, f"round {planned}: {runtime.name}")
                spec = {
                    "model": references[runtime.name],
                    "runtime": runtime.to_dict(),
                    "batch_size": batch_size,
                    "budget_s": budget_s,
                    "warmup_s": warmup_s,
                    **({"inputs": inputs_path} if inputs_path else {}),
                }
                results.append(_round_result(runtime.name, r, position, launch(spec)))
    return RuntimeComparison(
        model=reference,
        batch_size=batch_size,
        runtimes=tuple(chosen),
        baseline=baseline,
        results=tuple(results),
        machine=_machine(),
        created_at=started,
        planned_rounds=rounds,
    )


@contextlib.contextmanager
def _inputs_file(reference: str, inputs: Any, batch_size: int) -> Iterator[str]:
    """The path of an ``.npz`` file holding ``batch_size`` samples of ``inputs`` for the
    children (checked against the model here first), or ``""`` without inputs."""
    if inputs is None:
        yield ""
        return
    import numpy as np

    from workbench.data import batch_inputs, input_pool
    from workbench.loaders import load, samples

    model = samples.load(reference) if reference in samples.names() else load(reference)
    arrays = batch_inputs(model, input_pool(model, inputs), batch_size)
    with tempfile.TemporaryDirectory(prefix="wb-fair-") as folder:
        path = str(Path(folder) / "inputs.npz")
        np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stub reads names as flags
        yield path


def model_reference(model: Any) -> str:
    """What a child process loads: a sample name or a file path.

    Raises:
        InputError: the model is not a sample nor a file, or exists only in memory.
    """
    from workbench.loaders import samples

    if isinstance(model, Path | str):
        text = str(model)
        if text in samples.names() or Path(text).is_file():
            return str(Path(text).resolve()) if Path(text).is_file() else text
        raise InputError(
            f"{text!r} is neither a sample ({', '.join(samples.names())}) nor a model file"
        )
    source = str(getattr(model, "source", ""))
    if getattr(model, "recipe", None) is None:
        if source.startswith("sample:"):
            return source.removeprefix("sample:")
        if Path(source).is_file():
            return str(Path(source).resolve())
    raise InputError(
        "compare_runtimes measures each runtime in a fresh process, which must load the model "
        "itself: pass a sample name or a model file (save this one with model.to_onnx(path))"
    )


def _as_runtime(value: Runtime | str | tuple[Any, ...]) -> Runtime:
    if isinstance(value, Runtime):
        return value
    if isinstance(value, str):
        return Runtime(value)
    if isinstance(value, tuple) and 1 <= len(value) <= 3:
        defaults: tuple[Any, ...] = ("cpu", {})
        backend, device, options = (*value, *defaults[len(value) - 1 :])
        return Runtime(str(backend), str(device), dict(options))
    raise InputError(
        f"a runtime is a Runtime, a backend name or (backend, device, options): {value!r}"
    )


def _round_result(name: str, r: int, position: int, data: Mapping[str, Any]) -> RoundResult:
    measured = data.get("measurement")
    return RoundResult(
        runtime=name,
        round=r,
        position=position,
        measurement=Measurement.from_dict(measured) if measured else None,
        load_before=tuple(data.get("load_before", ())),
        load_after=tuple(data.get("load_after", ())),
        pid=int(data.get("pid", 0)),
        environment=dict(data.get("environment", {})),
        error=str(data.get("error", "")),
        startup=dict(data.get("startup", {})),
    )


def _machine() -> str:
    from workbench.machine import describe_machine

    return describe_machine()


# ---- the child -----------------------------------------------------------------------------
def run_child(spec: Mapping[str, Any], timeout_s: float = 600.0) -> dict[str, Any]:
    """Measure one runtime in a fresh Python process; its result, or ``{"error": ...}``."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "workbench.profiling.compare_runtimes"],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return dict(json.loads(line.removeprefix(RESULT_PREFIX)))
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"child exited with {done.returncode}: {tail}"}


def measure_in_this_process(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The child's work: load, compile with this runtime's options only, time; plain data.

    Cold start (load, runtime start, compile, first inference) is timed once on the way, and the
    resident memory compiling and running added is read after the timed runs.
    """
    import time

    import psutil

    from workbench.loaders import load, samples
    from workbench.machine import environment
    from workbench.profiling.measure import (
        TimingOptions,
        compiled,
        first_inference_ms,
        measure,
    )

    reference, runtime = str(spec["model"]), dict(spec["runtime"])
    started = time.perf_counter()
    model = samples.load(reference) if reference in samples.names() else load(reference)
    load_s = time.perf_counter() - started
    inputs = _child_inputs(model, spec)
    device = runtime.get("device", "cpu")
    timing = TimingOptions(
        budget_s=float(spec.get("budget_s", 1.0)), warmup_s=float(spec.get("warmup_s", 0.5))
    )
    label = f"{model.name} {runtime['backend']}/{device} bs={spec['batch_size']}"
    rss_before = psutil.Process().memory_info().rss
    # the session's process-wide settings (torch's, Numba's threads) hold while timing, as
    # in `profile`: the runner then times the forward pass alone
    with compiled(model, runtime["backend"], device, runtime.get("options", {})) as run:
        runner = run.session.runner(inputs)
        first_ms = first_inference_ms(runner)
        load_before = os.getloadavg()
        measurement = measure(runner, timing, device=device, label=label, threads=run.threads)
        load_after = os.getloadavg()
        rss_after = psutil.Process().memory_info().rss
    return {
        "measurement": measurement.to_dict(),
        "startup": {
            "load_s": load_s,
            "startup_s": run.startup_s,
            "compile_s": run.compile_s,
            "first_inference_ms": first_ms,
            "rss_before_bytes": rss_before,
            "runtime_bytes": max(0, rss_after - rss_before),
        },
        "load_before": load_before,
        "load_after": load_after,
        "pid": os.getpid(),
        "environment": environment(threads=run.threads),
    }


def _child_inputs(model: Any, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs the parent sent (``spec["inputs"]``, an ``.npz`` path), else generated."""
    if not spec.get("inputs"):
        return dict(model.example_inputs(int(spec["batch_size"])))
    import numpy as np

    with np.load(str(spec["inputs"]), allow_pickle=False) as arrays:
        return model.check_inputs({name: arrays[name] for name in arrays.files})


def _main() -> None:
    spec = json.loads(sys.stdin.read())
    try:
        result = measure_in_this_process(spec)
    except Exception as exc:  # the parent records the failed round and carries on
        result = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0], "pid": os.getpid()}
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    _main()
