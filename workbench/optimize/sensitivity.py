"""Speed-aware sensitivity: what transforming each layer costs in quality and gains in time.

`sensitivity` applies a transform to one layer at a time (every other candidate layer
in the config's ``exclude``) and measures, per layer: the metric and its change, the
output error against the original as SQNR in dB (signal power over error power of the
first output; ``inf`` when identical), and the end-to-end latency and its change.
`suggest` turns that into a plan: greedily add the layers that cost least quality and
make the model faster, keeping the measured drop within ``max_drop``; the result is a
config (with ``exclude`` set) that `quantize` / `prune` accept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import CancelledError, TransformError
from workbench.model import Model
from workbench.optimize import base
from workbench.optimize.base import Transform, make_config
from workbench.progress import CancelToken, ProgressCallback, say_interrupted, track

_WEIGHT_OPS = {"Linear", "Conv1d", "Conv2d", "Conv3d", "Conv", "Gemm", "MatMul", "ConvTranspose"}

SENSITIVITY_COLUMNS = [
    "layer", "op_type", "metric_value", "metric_delta", "sqnr_db", "latency_ms",
    "latency_delta_ms", "speedup", "error",
]  # fmt: skip


class SensitivityReport(pd.DataFrame):
    """`sensitivity`'s table: a DataFrame with `SENSITIVITY_COLUMNS` that shows its units.

    ``attrs`` holds the metric's name, the baseline's value and latency. Slices and copies
    are plain DataFrames.
    """

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return pd.DataFrame

    def _facts(self) -> list[tuple[str, str]]:
        from workbench.profiling.formatting import format_cell

        failed = int(self["error"].notna().sum()) if "error" in self else 0
        return [
            ("layers", f"{len(self):,}" + (f" ({failed:,} failed)" if failed else "")),
            (
                f"baseline {self.attrs.get('metric', 'metric')}",
                format_cell("metric_value", self.attrs.get("baseline")),
            ),
            ("baseline latency", format_cell("latency_ms", self.attrs.get("baseline_latency_ms"))),
        ]

    def __repr__(self) -> str:
        from workbench.profiling.formatting import frame_text

        facts = ", ".join(f"{name} {text}" for name, text in self._facts())
        note = f"\n{self.attrs['interrupted']}" if "interrupted" in self.attrs else ""
        return f"Sensitivity({facts})\n{frame_text(pd.DataFrame(self))}{note}"

    def _repr_html_(self) -> str:
        import html

        from workbench.profiling.formatting import frame_html, summary_html
        from workbench.profiling.results import figure_html

        note = self.attrs.get("interrupted")
        body = frame_html(pd.DataFrame(self)) + (f"<p>{html.escape(note)}</p>" if note else "")
        return summary_html(
            "Sensitivity, one layer at a time", self._facts(), figure_html(self) + body
        )


def candidate_layers(model: Model, config: Transform) -> list[str]:
    """Layers a transform can act on one at a time (weighted Linear / Conv / MatMul layers).

    Channel pruning lists only the layers whose outputs can be pruned; torch-side
    transforms use the torch layers, ONNX-side ones (INT8, FP16 via ONNX) the ONNX layers.
    """
    if config.name == "prune-channels" and model.module is not None:
        import torch

        from workbench.optimize.channels import plan_channels

        example = tuple(torch.from_numpy(a) for a in model.example_inputs(2).values())
        tie = bool(getattr(config, "tie_residuals", True))
        return [g.producer for g in plan_channels(model.module, example, tie=tie).groups]
    ops = set(getattr(config, "op_types", None) or _WEIGHT_OPS) & _WEIGHT_OPS
    if "Gemm" in ops or "MatMul" in ops:
        ops |= {"Linear"}  # torch's Linear exports to Gemm or MatMul
    return [x.name for x in _layers(model, config) if x.op_type in ops and x.params > 0]


def _layers(model: Model, config: Transform) -> list[Any]:
    torch_side = config.name.startswith("prune-") and model.framework == "torch"
    return model.layers if torch_side else model.to_onnx().layers


#: baseline / variant timing rounds per layer (the median of each is kept)
_ROUNDS = 3


class _Bench:
    """Runs a model over the data and times it, against a fixed reference."""

    def __init__(
        self,
        model: Model,
        data: Any,
        metric: Any,
        backend: str,
        device: str,
        batch_size: int,
        budget_s: float,
        options: dict[str, Any] | None,
    ) -> None:
        from workbench.evaluation.metrics import get_metric

        self.data, self.metric = data, get_metric(metric)
        self.backend, self.device, self.batch_size = backend, device, batch_size
        self.budget_s, self.options = budget_s, options or {}
        self.model = model
        self.reference, self.labels = self.outputs(model)
        self.base_value = self.metric(self.reference, self.labels)
        self.base_latency = self.latency(model)

    def outputs(self, model: Model) -> tuple[np.ndarray, np.ndarray]:
        from workbench.backends.base import get_backend
        from workbench.evaluation.metrics import output_names, pick_output
        from workbench.optimize.data_source import to_numpy

        session = get_backend(self.backend).compile(model, self.device, **self.options)
        try:
            outs, labels = [], []
            index = None
            for inputs, target in self.data:
                feeds = inputs if isinstance(inputs, dict) else _as_tuple(inputs)
                ran = session.run(feeds)
                # the output the metric fits (a classifier's probabilities, not its labels)
                if index is None:
                    index, _ = pick_output(output_names(model, len(ran)), ran, self.metric)
                outs.append(ran[index])
                labels.append(np.atleast_1d(to_numpy(target)))
        finally:
            session.close()
        scored = np.concatenate(outs)
        if scored.dtype.kind == "f":  # float64 for the metric's sums; labels stay integers
            scored = scored.astype(np.float64)
        return scored, np.concatenate(labels)

    def latency(self, model: Model, budget_s: float | None = None) -> float:
        from workbench.profiling.run import profile

        result = profile(
            model,
            self.backend,
            self.device,
            self.batch_size,
            layers=False,
            budget_s=self.budget_s if budget_s is None else budget_s,
            options=self.options,
        )
        return result.latency.median

    def paired_latency(self, model: Model) -> tuple[float, float]:
        """Median latency (ms) of the baseline and ``model``, timed in alternation.

        A shared or throttling machine drifts by tens of percent within seconds (and one
        session may land in a faster mode than the next), so a baseline timed once at the
        start would shift every layer's speed-up alike: each variant is compared with the
        baseline timed beside it, each getting ``budget_s`` over `_ROUNDS` fresh sessions.
        """
        share = self.budget_s / _ROUNDS
        base, variant = [], []
        for _ in range(_ROUNDS):
            base.append(self.latency(self.model, share))
            variant.append(self.latency(model, share))
        return float(np.median(base)), float(np.median(variant))

    def score(self, model: Model, timed: bool = True) -> dict[str, Any]:
        outputs, _ = self.outputs(model)
        value = self.metric(outputs, self.labels)
        row = {
            "metric_value": value,
            "metric_delta": value - self.base_value,
            "sqnr_db": sqnr_db(self.reference, outputs),
        }
        if timed:
            reference, latency = self.paired_latency(model)
            row.update(
                latency_ms=latency,
                latency_delta_ms=latency - reference,
                speedup=reference / latency,
            )
        return row

    def drop_points(self, value: float) -> float:
        """Quality lost against the baseline, in the metric's points (>0 is worse)."""
        sign = 1.0 if self.metric.higher_is_better else -1.0
        return sign * (self.base_value - value) * self.metric.points


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``test`` against ``reference``, in dB.

    Example:
        >>> sqnr_db(np.ones(4), np.ones(4) * 1.01)
        40.0
    """
    reference = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((reference - np.asarray(test, dtype=np.float64)) ** 2))
    signal = float(np.sum(reference**2))
    if noise == 0.0:
        return float("inf")
    return float(10.0 * np.log10(max(signal, 1e-300) / noise))


def sensitivity(
    model: Any,
    data: Any = None,
    transform: Transform | str = "int8-static",
    *,
    metric: Any = "accuracy",
    layers: list[str] | None = None,
    backend: str = "onnxruntime",
    device: str = "cpu",
    batch_size: int = 32,
    budget_s: float = 0.3,
    calibration: Any = None,
    options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> SensitivityReport:
    """Transform one layer at a time; report its metric change, SQNR and latency change.

    Never changes ``model``.

    Args:
        model: a `Model` or anything `workbench.load` accepts.
        data: evaluation data (a sample's test split when omitted).
        transform: a config or registry name whose config has an ``exclude`` field.
        metric: metric name, `Metric` or callable.
        layers: the layers to try (default `candidate_layers`).
        backend: where the metric and latency are measured (the baseline too).
        device: device string.
        batch_size: batch size of the latency measurements.
        budget_s: seconds of timing per variant, and as many for the baseline timed
            in alternation with it (each layer's speed-up is against that baseline).
        calibration: calibration / fine-tuning data for the transform.
        options: backend compile options (e.g. ``{"threads": 1}``).
        progress: ``progress(fraction, message)`` callback; cancel: a `CancelToken`.

    Returns:
        A `SensitivityReport` (a DataFrame) with `SENSITIVITY_COLUMNS`, one row per
        layer (``error`` set when the transform failed for that layer), sorted by metric
        change (least harmful first). ``attrs`` holds the baseline's metric value and
        latency. Interrupted (Ctrl+C, a kernel interrupt), it holds the layers measured
        so far, and ``attrs["interrupted"]`` the line that said so.

    Raises:
        TransformError: the transform has no per-layer ``exclude``.

    Example:
        >>> wb.sensitivity(m, data, transform="int8-static")[["layer", "sqnr_db", "speedup"]]
    """
    from workbench.loaders import load
    from workbench.optimize.data_source import resolve_data

    _check_calibration_data(calibration)
    model = load(model)
    config = make_config(transform)
    config.with_exclude(())  # fails early for transforms without per-layer control
    data = resolve_data(model, data, "test", "sensitivity")
    bench = _Bench(model, data, metric, backend, device, batch_size, budget_s, options)
    names = layers or candidate_layers(model, config)
    # "one layer only": every other layer is excluded, not just the other candidates,
    # so e.g. INT8 leaves the activations around the other layers in float too
    every = _all_layers(model, config, names)
    kinds = {x.name: x.op_type for x in _layers(model, config)}
    rows: list[dict[str, Any]] = []
    interrupted = None
    try:
        for name in track(names, description="sensitivity", progress=progress, cancel=cancel):
            row: dict[str, Any] = {"layer": name, "op_type": kinds.get(name, ""), "error": None}
            try:
                only = _only(config, every, [name])
                row.update(bench.score(base.transform(model, only, calibration)))
            except CancelledError:
                raise
            except Exception as exc:  # one layer failing must not lose the others
                row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
    except KeyboardInterrupt:  # Ctrl+C or a kernel interrupt: the layers measured so far
        kept = f"{len(rows)} of {len(names)} layers measured, returned"
        interrupted = say_interrupted("sensitivity", kept)
    frame = pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)
    frame = frame.sort_values("metric_delta", ascending=not bench.metric.higher_is_better)
    frame = SensitivityReport(frame.reset_index(drop=True))
    frame.attrs.update(
        metric=bench.metric.name, baseline=bench.base_value, baseline_latency_ms=bench.base_latency
    )
    if interrupted:
        frame.attrs["interrupted"] = interrupted
    return frame


def suggest(
    model: Any,
    data: Any = None,
    transform: Transform | str = "int8-static",
    max_drop: float = 1.0,
    *,
    metric: Any = "accuracy",
    report: pd.DataFrame | None = None,
    calibration: Any = None,
    backend: str = "onnxruntime",
    device: str = "cpu",
    batch_size: int = 32,
    budget_s: float = 0.3,
    options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Transform:
    """The fastest set of layers to transform within a quality budget, as a config.

    Greedy: layers that made the model faster on their own are added in order of
    least harm (then most speed-up); each addition is kept only if the measured drop
    of the whole set stays within ``max_drop``.

    Args:
        model: a `Model` or anything `workbench.load` accepts. Never changed.
        data: evaluation data (a sample's test split when omitted).
        transform: a config or registry name with an ``exclude`` field.
        max_drop: allowed quality loss in the metric's points (accuracy: percentage
            points, so 1.0 = one point; MSE: its own units).
        metric: metric name, `Metric` or callable.
        report: a `sensitivity` result to reuse (else it is measured first).
        calibration, backend, device, batch_size, budget_s, options, progress, cancel:
            as for `sensitivity`.

    Returns:
        The transform's config with ``exclude`` set to the layers left untouched.

    Raises:
        TransformError: no layer can be transformed within the budget.
        KeyboardInterrupt: interrupted during the sensitivity pass it runs itself.

    Example:
        >>> plan = wb.suggest(m, data, transform="int8-static", max_drop=1.0)
        >>> q = wb.quantize(m, plan)
    """
    from workbench.loaders import load
    from workbench.optimize.data_source import resolve_data

    _check_calibration_data(calibration)
    model = load(model)
    config = make_config(transform)
    data = resolve_data(model, data, "test", "suggest")
    kw: dict[str, Any] = {
        "backend": backend,
        "device": device,
        "batch_size": batch_size,
        "budget_s": budget_s,
    }
    if report is None:
        report = sensitivity(
            model, data, config, metric=metric, calibration=calibration, options=options,
            progress=progress, cancel=cancel, **kw,
        )  # fmt: skip
        if "interrupted" in report.attrs:  # the user stopped it: search no further
            raise KeyboardInterrupt
    bench = _Bench(model, data, metric, backend, device, batch_size, budget_s, options)
    ok = report[report["error"].isna() & (report["latency_delta_ms"] < 0)]
    order = ok.sort_values(["metric_delta", "speedup"], ascending=[False, False])
    if not bench.metric.higher_is_better:
        order = ok.sort_values(["metric_delta", "speedup"], ascending=[True, False])
    everything = list(report["layer"])
    chosen: list[str] = []
    for name in order["layer"]:
        if cancel is not None:
            cancel.check()
        trial = _only(config, everything, [*chosen, name])
        variant = base.transform(model, trial, calibration)
        value = bench.score(variant, timed=False)["metric_value"]
        if bench.drop_points(value) <= max_drop:
            chosen.append(name)
    if not chosen:
        raise TransformError(
            f"no layer of {model.name} can be transformed with {config.label()} and make it "
            f"faster within max_drop={max_drop}; see wb.sensitivity for each layer's cost"
        )
    return _only(config, everything, chosen)


def _check_calibration_data(calibration: Any) -> None:
    # here ``calibration`` is the transform's data; the method belongs in the config
    if isinstance(calibration, str):
        raise TransformError(
            f"calibration= takes the transform's data here, got {calibration!r}; set the "
            f"method in the config: transform=Int8Static(method={calibration!r})"
        )


def _only(config: Transform, layers: list[str], chosen: list[str]) -> Transform:
    excluded = [*config.exclude, *(n for n in layers if n not in chosen)]  # type: ignore[attr-defined]
    return config.with_exclude(list(dict.fromkeys(excluded)))


def _all_layers(model: Model, config: Transform, candidates: list[str]) -> list[str]:
    if config.name.startswith("prune-") and model.framework == "torch":
        return candidates
    return [x.name for x in model.to_onnx().layers]


def _as_tuple(inputs: Any) -> Any:
    return tuple(inputs) if isinstance(inputs, list | tuple) else (inputs,)
