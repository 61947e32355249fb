"""`sweep`: variants x backends x devices -> a `TradeoffTable` with its Pareto front.

Each point is one variant (a transform of the model, or the baseline) on one backend
and device: its quality on the data (`evaluate`) and its latency (`profile` without
per-layer timing). A point that fails (a backend that cannot run Q/DQ ops, torch given
an ONNX INT8 model) is kept with its error and the sweep goes on. Every finished point
is written to the results store at once; rerunning the same sweep skips the points
already done, so an interrupted sweep loses nothing.

A sweep's identity (`sweep_identity`) is everything that changes its results: the model's
weights, the variants' full configs, backends, devices, batch size, time budget, backend
options, metric, a content fingerprint of the evaluation and calibration data (inputs
and labels, `data_fingerprint`) and the versions of the packages and runtimes. The
default ``sweep_id`` is a hash of it; a stored sweep is resumed only when its recorded
identity is the same, otherwise it starts fresh and `TradeoffTable.notes` says what
changed.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import logging
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from workbench.argtypes import batch_size as checked_batch
from workbench.argtypes import check_input_bytes
from workbench.backends.base import get_backend
from workbench.backends.spec import parse_backend
from workbench.errors import CancelledError, WorkbenchError
from workbench.evaluation.metrics import get_metric
from workbench.evaluation.pareto import pareto_mask
from workbench.model import Model, to_numpy
from workbench.profiling.measure import NOISY_ATTEMPTS, TimingOptions, timing_of
from workbench.profiling.results import dump_json, load_json
from workbench.progress import CancelToken, ProgressCallback, say_interrupted, track
from workbench.store import Store, point_key

if TYPE_CHECKING:
    from workbench.profiling.profile import Profile

#: the row columns of a `TradeoffTable`, in display order
COLUMNS = [
    "variant", "backend", "device", "batch_size", "latency_ms", "latency_p90_ms",
    "throughput_per_s", "size_bytes", "metric", "metric_value", "delta", "speedup",
    "pareto", "error", "recipe", "samples", "noisy", "run_id", "key",
]  # fmt: skip

BASELINE = "baseline"
#: a point still to measure: ``((label, variant spec), backend, device)``
Point = tuple[tuple[str, Any], str, str]
#: saves one finished point's row and its `Profile` (None for a failed point)
SavePoint = Callable[[dict[str, Any], "Profile | None"], None]
#: ``runner(point_runner, points, save, progress=, cancel=)``: measures ``points`` and
#: calls ``save`` once per finished point (`run_points` here; `workbench.cluster` on Dask)
PointsRunner = Callable[..., None]
#: bytes hashed per update when fingerprinting data (bounds the copy of a non-contiguous array)
_CHUNK_BYTES = 1 << 24
#: identity entries that describe the sweep without changing its results
_NOT_IDENTITY = frozenset({"model", "data"})

log = logging.getLogger(__name__)


def default_variants(model: Model | None = None) -> list[Any]:
    """The default sweep: baseline, INT8 dynamic, INT8 static, FP16, pruning at 3 levels.

    Torch models get structured channel pruning (25/50/75%) with a 3-epoch fine-tune;
    ONNX-only models get unstructured magnitude pruning at the same levels.

    Example:
        >>> [str(v) if isinstance(v, str) else v.label() for v in default_variants()]
    """
    from workbench.optimize.prune import ChannelPrune, MagnitudePrune
    from workbench.optimize.quantize import Fp16, Int8Dynamic, Int8Static

    variants: list[Any] = [BASELINE, Int8Dynamic(), Int8Static(), Fp16()]
    if model is not None and model.framework == "onnx":
        return variants + [MagnitudePrune(sparsity=s) for s in (0.25, 0.5, 0.75)]
    return variants + [ChannelPrune(sparsity=s, finetune_epochs=3) for s in (0.25, 0.5, 0.75)]


# eq=False: == is identity; a generated __eq__ would compare DataFrames and raise
@dataclass(frozen=True, eq=False)
class TradeoffTable:
    """One row per variant x backend x device (see `COLUMNS`), with the Pareto front.

    Attributes:
        df: the rows. ``latency_ms`` / ``latency_p90_ms`` are the median and 90th
            percentile of the end-to-end latency; ``delta`` is ``metric_value`` minus the
            baseline's on the same backend and device; ``speedup`` is the baseline's
            median latency over this one's, ``speedup_low`` / ``speedup_high`` the range
            the two medians' 95% CIs allow; ``samples`` is the number of timed runs,
            ``noisy`` flags a latency whose verdict (``verdict``: its spread, or a
            contended machine, see `Measurement.verdict`) survived
            `workbench.profiling.measure.NOISY_ATTEMPTS` measurements, and a speed-up
            from a noisy pair is shown with its range; failed points have ``error``.
        metric: the metric's name.
        higher_is_better: the metric's direction.
        sweep_id: the id under which the points are stored.
        meta: the settings the sweep was started with (its identity).
        notes: what the user should know about this run, e.g. why a stored sweep was
            not resumed.
    """

    df: pd.DataFrame
    metric: str = "accuracy"
    higher_is_better: bool = True
    sweep_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def pareto(self) -> pd.DataFrame:
        """The Pareto-optimal rows (no other point is both faster and better), fastest first."""
        front = self.df[self.df["pareto"].fillna(False).astype(bool)]
        return front.sort_values("latency_ms", ignore_index=True)

    def uncertain_speedups(self) -> list[bool]:
        """Per row: its speed-up comes from a noisy pair (the row's latency or its
        baseline's on the same backend and device was noisy)."""
        if "noisy" not in self.df:
            return [False] * len(self.df)
        noisy = self.df["noisy"].fillna(False).astype(bool)
        base = self.df[(self.df["variant"] == BASELINE) & noisy]
        noisy_base = set(zip(base["backend"], base["device"], strict=True))
        return [
            bool(n) or (b, d) in noisy_base
            for n, b, d in zip(noisy, self.df["backend"], self.df["device"], strict=True)
        ]

    def failed(self) -> pd.DataFrame:
        """Rows whose point failed, with their errors."""
        return self.df[self.df["error"].notna()]

    def to_dict(self) -> dict[str, Any]:
        rows = self.df.astype(object).where(self.df.notna(), None).to_dict(orient="records")
        return {
            "sweep_id": self.sweep_id,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "meta": self.meta,
            "notes": self.notes,
            "rows": rows,
        }

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The table as JSON (``rows`` holds the columns above); also written to ``path``."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> TradeoffTable:
        """Rebuild from `to_json` output, or from the file at a path holding it."""
        data = load_json(text_or_path, "a trade-off table")
        return cls(
            pd.DataFrame.from_records(data["rows"]),
            metric=data["metric"],
            higher_is_better=data["higher_is_better"],
            sweep_id=data["sweep_id"],
            meta=dict(data["meta"]),
            notes=list(data["notes"]),
        )

    def to_html(self, path: str | Path | None = None) -> str:
        """The table's self-contained report (trade-off plot, table, Pareto front), as
        ``workbench report`` writes it for a stored sweep.

        Args:
            path: also write the HTML file there when given.

        Returns:
            One HTML document that opens with no network (plotly.js and styles inline).

        Example:
            >>> table.to_html("sweep.html")
        """
        from workbench.profiling.html_export import to_html

        return to_html(self, path)

    def __len__(self) -> int:
        return len(self.df)

    def __repr__(self) -> str:
        from workbench.profiling.formatting import frame_text

        shown = self._shown()
        notes = "".join(f"\nnote: {n}" for n in self.notes)
        return f"TradeoffTable({self.metric}, sweep {self.sweep_id})\n{frame_text(shown)}{notes}"

    def _shown(self) -> pd.DataFrame:
        """The displayed columns, each metric value in its own unit (accuracy in %)."""
        from workbench.evaluation.metrics import metric_text

        shown = self.df[[c for c in COLUMNS[:14] if c in self.df]].copy()
        if "speedup" in shown:  # a speed-up from a noisy pair only with its range
            records = self.df.to_dict(orient="records")
            shown["speedup"] = [
                speedup_text(row, True) if uncertain else row["speedup"]
                for row, uncertain in zip(records, self.uncertain_speedups(), strict=True)
            ]
        if "metric_value" in shown:
            metrics = shown["metric"] if "metric" in shown else [self.metric] * len(shown)
            shown["metric_value"] = [
                metric_text(str(m), v) for m, v in zip(metrics, shown["metric_value"], strict=True)
            ]
        return shown

    def _repr_html_(self) -> str:
        from workbench.profiling.formatting import frame_html, summary_html
        from workbench.profiling.results import figure_html

        shown = self._shown()
        if "error" in shown:
            shown["error"] = self.df["error"].fillna("").astype(str).str.slice(0, 80)
        front = self.df.get("pareto", pd.Series(False, index=self.df.index))
        front = front.fillna(False).astype(bool)
        failed = int(self.df["error"].notna().sum()) if "error" in self.df else 0
        facts = [
            ("points", f"{len(self.df):,}"),
            ("on the Pareto front", f"{int(front.sum()):,} (bold)"),
            ("failed", f"{failed:,}"),
            (
                "metric",
                f"{self.metric} ({'higher' if self.higher_is_better else 'lower'} is better)",
            ),
        ]
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        body = frame_html(shown, bold=list(front)) + (f"<ul>{notes}</ul>" if notes else "")
        return summary_html(f"Trade-offs, sweep {self.sweep_id}", facts, figure_html(self) + body)


def sweep(
    model: Any,
    variants: list[Any] | None = None,
    backends: list[str] | tuple[str, ...] = ("onnxruntime", "torch"),
    data: Any = None,
    *,
    devices: list[str] | tuple[str, ...] = ("cpu",),
    batch_size: int = 32,
    metric: Any = "accuracy",
    output: str | int | None = None,
    calibration: Any = None,
    budget_s: float = 0.5,
    options: dict[str, Any] | None = None,
    store: Store | str | Path | None = None,
    sweep_id: str | None = None,
    resume: bool = True,
    retry_failed: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    runner: PointsRunner | None = None,
    timing: TimingOptions | None = None,
) -> TradeoffTable:
    """Evaluate and time every variant on every backend and device.

    Never changes ``model``. Each finished point is saved to the store before the next
    starts; with ``resume=True`` points already in the store for this ``sweep_id`` are
    not measured again, provided the stored sweep has the same identity (model, variants,
    data content, metric, options, versions: see `sweep_identity`). Otherwise, and with
    ``resume=False``, the sweep starts fresh and ``notes`` says why.

    Args:
        model: a `Model` or anything `workbench.load` accepts (the baseline).
        variants: transforms (configs, registry names such as ``"int8-dynamic"``, recipe
            dicts), ready `Model` variants, or ``"baseline"``; default `default_variants`.
        backends: backend names, each optionally with its own option set as
            ``"name[key=value,...]"`` (``"onnxruntime[optimization=basic]"``, see
            `workbench.backends.spec`): every option set is its own row.
        data: evaluation data (a `Dataset` or iterable of batches); a sample model's
            test split when omitted.
        devices: devices to try on each backend (those a backend lacks are recorded as
            failed points).
        batch_size: batch size of the latency measurement.
        metric: see `workbench.evaluation.metrics.get_metric`.
        output: the model output the metric scores, by name or index (default: the
            first it fits, probabilities or logits before labels; see `evaluate`).
        calibration: calibration / fine-tuning data for the transforms (a sample's
            training split when omitted).
        budget_s: time budget of each latency measurement, in seconds.
        options: backend options for every compile (e.g. ``{"threads": 1}``).
        store: a `Store`, a path, or None for the default store.
        sweep_id: id of the sweep in the store (default: a hash of its identity).
        resume: skip points already stored under ``sweep_id`` when its identity matches;
            False discards them.
        retry_failed: on resume, measure the stored points that failed again.
        progress: ``progress(fraction, message)`` callback (replaces the tqdm bar).
        cancel: a `CancelToken` checked between points; finished points stay stored.
            Interrupted (Ctrl+C, a kernel interrupt), the sweep returns the points stored
            so far, says so in one line, and notes it in ``notes``.
        runner: runs the points still to measure (default `run_points`, in this
            process); ``wb.sweep(..., cluster=...)`` passes one that runs them on Dask
            workers (`workbench.cluster`).
        timing: a `TimingOptions` shared with `profile`, `scenario` and `slo`; a sweep
            reads its ``budget_s`` (a noisy point is measured up to
            `workbench.profiling.measure.NOISY_ATTEMPTS` times).

    Returns:
        A `TradeoffTable`.

    Raises:
        CancelledError: the token was cancelled (rerun to resume).

    Example:
        >>> t = wb.sweep(wb.samples.load("digits-mlp"), backends=["onnxruntime", "torch"])
        >>> t.pareto()[["variant", "backend", "latency_ms", "metric_value"]]
    """
    from workbench.loaders import load
    from workbench.optimize.data_source import resolve_data

    batch_size = checked_batch(batch_size)
    budget_s = cast(float, timing_of(sweep, timing, budget_s=budget_s).budget_s)
    for name in backends:  # a misspelt backend is refused before any variant is built
        get_backend(parse_backend(name)[0])
    model = load(model)
    check_input_bytes(model, batch_size)
    scorer = get_metric(metric)
    data = resolve_data(model, data, "test", "a sweep's evaluation")
    store = store if isinstance(store, Store) else Store(store)
    specs = _labelled(variants if variants is not None else default_variants(model))
    settings = sweep_identity(
        model,
        [spec for _, spec in specs],
        backends,
        data,
        devices=devices,
        batch_size=batch_size,
        metric=scorer,
        output=output,
        calibration=calibration,
        budget_s=budget_s,
        options=options,
    )
    sweep_id = sweep_id or _sweep_id(settings)
    notes = open_sweep(store, sweep_id, model.name, settings, resume)
    done = store.done_keys(sweep_id, failed=not retry_failed)
    points = [(v, b, d) for v in specs for b in backends for d in devices]
    todo = [p for p in points if _key(p[0][0], p[1], p[2], batch_size) not in done]
    if len(todo) < len(points):
        notes.append(
            f"resumed sweep {sweep_id}: {len(points) - len(todo)} of {len(points)} points "
            f"measured earlier come from the store {store.path}; resume=False "
            "(workbench sweep --fresh) measures every point again"
        )
        log.warning(notes[-1])
    run = PointRunner(model, data, scorer, batch_size, budget_s, options or {}, calibration, output)
    # the point and its profile are saved atomically, as each point finishes
    save = functools.partial(store.save_point, sweep_id)
    try:
        (runner or run_points)(run, todo, save, progress=progress, cancel=cancel)
    except KeyboardInterrupt:  # Ctrl+C or a kernel interrupt: the stored points are the result
        kept = f"{len(store.points(sweep_id))} of {len(points)} points stored, returned"
        notes.append(say_interrupted("sweep", f"{kept}; rerun with sweep_id={sweep_id!r}"))
    if cancel is not None and cancel.cancelled:
        raise CancelledError("sweep cancelled; rerun with the same sweep_id to resume")
    return table_from_rows(
        store.points(sweep_id), scorer.name, scorer.higher_is_better, sweep_id, settings, notes
    )


def run_points(
    run: PointRunner,
    todo: list[Point],
    save: SavePoint,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> None:
    """Measure ``todo`` in this process, one point after another, saving each as it finishes.

    The default `PointsRunner` of `sweep`; each variant is built once, on first use.
    """
    built: dict[str, Model | Exception] = {}
    for (label, spec), backend, device in track(
        todo, description="sweep", progress=progress, cancel=cancel
    ):
        if cancel is not None:
            cancel.check()  # again after the progress callback, which may have cancelled
        if label not in built:
            built[label] = run.build(spec)
        row, measured = run.point(label, built[label], backend, device)
        save(row, measured)


def sweep_identity(
    model: Model,
    variants: list[Any],
    backends: Iterable[str],
    data: Any,
    *,
    devices: Iterable[str] = ("cpu",),
    batch_size: int = 32,
    metric: Any = "accuracy",
    output: str | int | None = None,
    calibration: Any = None,
    budget_s: float = 0.5,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything that changes a sweep's results, as JSON-ready values.

    Two sweeps with equal identities measure the same thing, so one may resume the
    other; the default sweep id is a hash of it. ``model`` and ``data`` (the names) are
    recorded for display and do not count (`identity_changes` skips them).

    Args:
        model: the baseline `Model`.
        variants: the variant specs (configs, names, recipe dicts, `Model`s, ``"baseline"``).
        backends: backend names.
        data: the evaluation data (a `Dataset` or re-iterable of batches).
        devices: device names.
        batch_size: the latency batch size.
        metric: a metric name or scorer (`get_metric`).
        output: the output the metric scores; recorded only when given, so sweeps that
            let `evaluate` choose keep their identity.
        calibration: the transforms' data, or None for the sample's training split.
        budget_s: the time budget of each latency measurement.
        options: backend options.

    Returns:
        A dict: model name and fingerprint, variants' full configs, backends, devices,
        batch size, budget, options, metric and direction, data name and content
        fingerprint, calibration fingerprint, package and runtime versions.
    """
    scorer = get_metric(metric)
    backends = list(backends)
    return {
        "model": model.name,
        "fingerprint": model.fingerprint(),
        "variants": [_describe(spec) for spec in variants],
        "backends": backends,
        "devices": list(devices),
        "batch_size": batch_size,
        "budget_s": budget_s,
        "options": json.loads(json.dumps(options or {}, sort_keys=True, default=str)),
        "metric": scorer.name,
        "higher_is_better": scorer.higher_is_better,
        "data": str(getattr(data, "name", "")),
        "data_fingerprint": data_fingerprint(data),
        "calibration_fingerprint": None if calibration is None else data_fingerprint(calibration),
        "versions": _versions(backends),
        **({"output": output} if output is not None else {}),
    }


def identity_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Names of the identity entries that differ (a missing entry differs), sorted."""
    keys = (set(before) | set(after)) - _NOT_IDENTITY
    return sorted(k for k in keys if before.get(k) != after.get(k))


def data_fingerprint(data: Any) -> str:
    """A hash of a dataset's content: every input array and the labels, in order.

    Batching does not matter (a `Dataset` is hashed as whole arrays, other iterables
    batch by batch, each array's bytes in order with its dtype and per-sample shape), and
    arrays are fed to the hash in chunks of at most 16 MiB, so large data costs one
    read and no full copy. Order counts: a loader that shuffles gives a new fingerprint
    on each pass, so its sweeps never resume (pass a `Dataset` or an unshuffled loader).

    Args:
        data: a `Dataset` or an iterable of ``(inputs, labels)`` batches (read once).

    Returns:
        A 16-character hex digest; equal data gives equal digests across processes.
    """
    from workbench.data import Dataset

    batches = [(data.inputs, data.labels)] if isinstance(data, Dataset) else data
    digests: dict[str, Any] = {}
    samples = 0
    for inputs, labels in batches:
        named = _named_arrays(inputs)
        samples += len(named[0][1]) if named else 0
        for name, array in [*named, ("labels", to_numpy(labels))]:
            if name not in digests:  # dtype and per-sample shape, once: batching is invisible
                digests[name] = hashlib.sha256(f"{array.dtype.str}{array.shape[1:]}".encode())
            _hash_array(digests[name], array)
    total = hashlib.sha256(f"samples={samples}".encode())
    for name in sorted(digests):
        total.update(f"{name}={digests[name].hexdigest()}".encode())
    return total.hexdigest()[:16]


def _named_arrays(inputs: Any) -> list[tuple[str, np.ndarray]]:
    if isinstance(inputs, dict):
        return [(f"input:{k}", to_numpy(v)) for k, v in sorted(inputs.items())]
    if isinstance(inputs, list | tuple) and inputs and all(hasattr(v, "shape") for v in inputs):
        return [(f"input:{i}", to_numpy(v)) for i, v in enumerate(inputs)]
    return [("input:0", to_numpy(inputs))]


def _hash_array(digest: Any, array: np.ndarray) -> None:
    if array.dtype.hasobject:  # strings or mixed labels: no buffer to read
        digest.update(repr(array.tolist()).encode())
        return
    rows = max(1, _CHUNK_BYTES // max(1, array[:1].nbytes)) if array.ndim else 1
    flat = array.reshape(1) if array.ndim == 0 else array
    for start in range(0, len(flat), rows):
        digest.update(np.ascontiguousarray(flat[start : start + rows]).data.cast("B"))


def _versions(backends: list[str]) -> dict[str, str]:
    """Versions of Python, workbench, numpy, onnx and each backend's runtime."""
    from importlib import metadata

    from workbench.backends.base import get_backend
    from workbench.backends.spec import parse_backend
    from workbench.machine import DISTRIBUTION

    found = {"python": platform.python_version()}
    for package in ("workbench", "numpy", "onnx"):
        try:
            found[package] = metadata.version(DISTRIBUTION if package == "workbench" else package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    for name in backends:
        try:
            runtime = get_backend(parse_backend(name)[0])
            found[f"backend:{name}"] = str(runtime.availability().version)
        except WorkbenchError as exc:  # an unknown backend is a failed row, not a failed sweep
            found[f"backend:{name}"] = f"unavailable ({type(exc).__name__})"
    return found


def open_sweep(
    store: Store, sweep_id: str, model: str, identity: dict[str, Any], resume: bool
) -> list[str]:
    """Record the sweep in the store, resuming it only when its identity is unchanged.

    Returns:
        Notes for the user: why stored points were not reused, if any were not.
    """
    try:
        stored: dict[str, Any] | None = store.sweep_meta(sweep_id)
    except KeyError:
        stored = None
    notes = []
    if stored is None:
        earlier = _latest_other_sweep(store, model, sweep_id)
        changes = identity_changes(earlier[1], identity) if earlier else []
        if earlier is not None and changes and resume:
            notes.append(
                f"new sweep {sweep_id}: the last sweep of {model} ({earlier[0]}) was not "
                f"resumed because its {', '.join(changes)} differ"
            )
        store.start_sweep(sweep_id, model, identity)
    elif not resume:
        notes.append(f"sweep {sweep_id} started fresh (resume=False); stored points discarded")
        store.restart_sweep(sweep_id, model, identity)
    elif changes := identity_changes(stored, identity):
        notes.append(
            f"sweep {sweep_id} started fresh: its stored points were measured with a "
            f"different {', '.join(changes)}"
        )
        store.restart_sweep(sweep_id, model, identity)
    for note in notes:
        log.warning(note)
    return notes


def _latest_other_sweep(
    store: Store, model: str, sweep_id: str
) -> tuple[str, dict[str, Any]] | None:
    """The newest stored sweep of ``model`` other than ``sweep_id`` with its identity."""
    runs = store.runs()
    others = runs[(runs["kind"] == "sweep") & (runs["model"] == model)]
    others = others[others["sweep_id"] != sweep_id]
    if others.empty:
        return None
    latest = str(others["sweep_id"].iloc[0])
    return latest, store.sweep_meta(latest)


def load_sweep(sweep_id: str, store: Store | str | Path | None = None) -> TradeoffTable:
    """A stored sweep as a `TradeoffTable` (its points so far, with the Pareto front).

    Args:
        sweep_id: the sweep's id (``wb.runs()`` lists them).
        store: a `Store`, a path, or None for the default store.

    Raises:
        KeyError: no such sweep in the store.

    Example:
        >>> load_sweep(wb.runs().query("kind == 'sweep'").sweep_id.iloc[0]).pareto()
    """
    store = store if isinstance(store, Store) else Store(store)
    meta = store.sweep_meta(sweep_id)
    metric, higher = str(meta.get("metric", "metric")), bool(meta.get("higher_is_better", True))
    return table_from_rows(store.points(sweep_id), metric, higher, sweep_id, meta)


class PointRunner:
    """Builds variants and measures points; never raises for a failed point."""

    def __init__(
        self,
        model: Model,
        data: Any,
        scorer: Any,
        batch_size: int,
        budget_s: float,
        options: dict[str, Any],
        calibration: Any,
        output: str | int | None = None,
    ) -> None:
        self.model, self.data, self.scorer = model, data, scorer
        self.batch_size, self.budget_s, self.options = batch_size, budget_s, options
        self.calibration, self.output = calibration, output

    def build(self, spec: Any) -> Model | Exception:
        from workbench.optimize.base import transform

        if spec == BASELINE:
            return self.model
        if isinstance(spec, Model):
            return spec
        try:
            # through the entry point, so a derived base model's steps stay in the recipe
            return transform(self.model, spec, self.calibration)
        except Exception as exc:  # a failed transform is one failed row, not a failed sweep
            if isinstance(exc, CancelledError):
                raise
            return exc

    def point(
        self,
        label: str,
        variant: Model | Exception,
        backend: str,
        device: str,
    ) -> tuple[dict[str, Any], Profile | None]:
        row: dict[str, Any] = {
            "variant": label,
            "backend": backend,
            "device": device,
            "batch_size": self.batch_size,
            "metric": self.scorer.name,
            "error": None,
        }
        row["key"] = point_key(row)
        if isinstance(variant, Exception):
            row["error"] = f"transform failed: {type(variant).__name__}: {variant}"
            return row, None
        row["recipe"] = variant.recipe
        row["size_bytes"] = variant.size_bytes
        try:
            values, measured = self._measure(variant, backend, device)
        except CancelledError:
            raise
        except Exception as exc:  # unsupported ops, missing devices: record and go on
            row["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
            return row, None
        return {**row, **values}, measured

    def _measure(self, variant: Model, backend: str, device: str) -> tuple[dict[str, Any], Profile]:
        from workbench.backends.base import check_supported, get_backend
        from workbench.backends.spec import parse_backend
        from workbench.evaluation.metrics import evaluate
        from workbench.profiling.run import profile

        # "onnxruntime[optimization=basic]": one backend under its own option set
        backend, own = parse_backend(backend)
        options = {**self.options, **own}
        check_supported(get_backend(backend), variant)
        start = time.perf_counter()
        score = evaluate(
            variant,
            self.data,
            backend,
            device,
            self.scorer,
            output=self.output,
            options=options,
            bar=False,
        )
        result = profile(
            variant,
            backend,
            device,
            self.batch_size,
            layers=False,
            budget_s=self.budget_s,
            options=options,
            attempts=NOISY_ATTEMPTS,
        )
        ci_low, ci_high = result.latency.median_ci
        return {
            "latency_ms": result.latency.median,
            "latency_p90_ms": result.latency.p90,
            "throughput_per_s": result.throughput,
            "samples": result.latency.n,
            "noisy": result.latency.noisy,
            "verdict": result.latency.verdict,
            "latency_ci_low_ms": ci_low,
            "latency_ci_high_ms": ci_high,
            "metric_value": score.value,
            "run_id": result.run_id,
            "seconds": time.perf_counter() - start,
        }, result


def table_from_rows(
    rows: pd.DataFrame | list[dict[str, Any]],
    metric: str,
    higher_is_better: bool,
    sweep_id: str = "",
    meta: dict[str, Any] | None = None,
    notes: list[str] | None = None,
) -> TradeoffTable:
    """A `TradeoffTable` from stored points: adds ``delta``, ``speedup`` and ``pareto``.

    ``meta`` (the sweep's settings) and ``notes`` travel with it, as the table is frozen.
    """
    df = pd.DataFrame(rows).copy()
    for column in COLUMNS:
        if column not in df:
            df[column] = None
    for column in (
        "latency_ms",
        "latency_p90_ms",
        "throughput_per_s",
        "metric_value",
        "size_bytes",
    ):
        df[column] = pd.to_numeric(df[column], errors="coerce")
    df["error"] = df["error"].astype(object).where(df["error"].notna(), None)
    df["delta"], df["speedup"] = _relative_to_baseline(df)
    df["speedup_low"], df["speedup_high"] = _speedup_range(df)
    df["pareto"] = pareto_mask(
        df["latency_ms"], df["metric_value"], higher_is_better=higher_is_better
    )
    extra = [c for c in df.columns if c not in COLUMNS]
    return TradeoffTable(
        df[COLUMNS + extra], metric, higher_is_better, sweep_id, dict(meta or {}), list(notes or [])
    )


def _relative_to_baseline(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    base = df[(df["variant"] == BASELINE) & df["error"].isna()]
    lookup = {(r.backend, r.device): (r.metric_value, r.latency_ms) for r in base.itertuples()}
    fallback = (base["metric_value"].iloc[0], np.nan) if len(base) else (np.nan, np.nan)
    delta, speedup = [], []
    for row in df.itertuples():
        value, latency = lookup.get((row.backend, row.device), fallback)
        delta.append(row.metric_value - value)
        speedup.append(latency / row.latency_ms if row.latency_ms else np.nan)
    return pd.Series(delta, index=df.index, dtype=float), pd.Series(
        speedup, index=df.index, dtype=float
    )


def _speedup_range(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The speed-ups the baseline's and the row's median CIs allow (NaN without CIs:
    points stored before they were recorded)."""
    from workbench.profiling.timer import Ratio

    def sides(row: Any) -> tuple[float, float, float]:
        return (row.latency_ms, row.latency_ci_low_ms, row.latency_ci_high_ms)

    if not {"latency_ci_low_ms", "latency_ci_high_ms"} <= set(df):
        return pd.Series(np.nan, index=df.index), pd.Series(np.nan, index=df.index)
    numeric = df.assign(
        latency_ci_low_ms=pd.to_numeric(df["latency_ci_low_ms"], errors="coerce"),
        latency_ci_high_ms=pd.to_numeric(df["latency_ci_high_ms"], errors="coerce"),
    )
    base = numeric[(numeric["variant"] == BASELINE) & numeric["error"].isna()]
    lookup = {(r.backend, r.device): sides(r) for r in base.itertuples()}
    low, high = [], []
    for row in numeric.itertuples():
        pair = lookup.get((row.backend, row.device))
        ratio = Ratio.between(pair, sides(row), False) if pair else None
        low.append(ratio.low if ratio else np.nan)
        high.append(ratio.high if ratio else np.nan)
    return pd.Series(low, index=df.index, dtype=float), pd.Series(high, index=df.index, dtype=float)


def speedup_text(row: Mapping[str, Any], uncertain: bool) -> str:
    """A row's speed-up for display: ``1.31×``, or with its range when the pair was noisy
    (``~98× (uncertain: 3.1×–410×)``), never a bare number from a noisy pair."""
    from workbench.profiling.timer import Ratio

    ratio = Ratio(
        float(row.get("speedup", np.nan)),
        float(row.get("speedup_low", np.nan)),
        float(row.get("speedup_high", np.nan)),
        uncertain,
    )
    return ratio.text()


def _labelled(variants: list[Any]) -> list[tuple[str, Any]]:
    """Unique display labels for the variants (a repeated label gets ``#2``, ``#3``)."""
    from workbench.optimize.base import make_config

    out: list[tuple[str, Any]] = []
    seen: dict[str, int] = {}
    for spec in variants:
        if spec is None or spec == BASELINE:
            label, spec = BASELINE, BASELINE
        elif isinstance(spec, Model):
            label = spec.recipe_name
        else:
            try:
                label = make_config(spec).label()
            except WorkbenchError:
                label = str(spec)
        seen[label] = seen.get(label, 0) + 1
        out.append((label if seen[label] == 1 else f"{label}#{seen[label]}", spec))
    return out


def _describe(spec: Any) -> Any:
    """What identifies a variant in a sweep's identity: its full config, not just its label."""
    from workbench.optimize.base import config_to_dict, make_config

    if isinstance(spec, Model):
        return spec.fingerprint()
    if spec == BASELINE:
        return BASELINE
    try:
        return config_to_dict(make_config(spec))
    except WorkbenchError:  # an unknown transform becomes a failed row, not a failed sweep
        return str(spec)


def _key(label: str, backend: str, device: str, batch_size: int) -> str:
    return point_key(
        {"variant": label, "backend": backend, "device": device, "batch_size": batch_size}
    )


def _sweep_id(settings: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return f"{settings['model']}-{digest}"
