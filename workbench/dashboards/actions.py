"""The dashboard's long work, as plain functions of the public API (no UI library here).

Each function takes a progress callback and a `CancelToken` so the dashboard can run it
on a worker thread; none mutates the model it is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

import workbench as wb
from workbench.dashboards.cache import RESULTS, RunKey
from workbench.errors import InputError, TransformError, WorkbenchError
from workbench.model import Model, recipe_label
from workbench.optimize.base import Transform, chain_to_dict, make_config
from workbench.optimize.prune import LayerRatios
from workbench.profiling.profile import Profile
from workbench.progress import CancelToken, ProgressCallback

#: quantization methods offered by the Optimize page ("none" keeps full precision)
QUANT_METHODS = (
    "none", "int8-dynamic", "int8-static", "fp16",
    # embedding tables (recommendation models): row-wise int8 / int4, fp16, rare rows pruned
    "table-int8", "table-int4", "table-fp16", "table-prune",
)  # fmt: skip
#: calibration methods of static INT8
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")

_samples: dict[str, Model] = {}
_samples_lock = threading.Lock()
# One measurement at a time in this process: two timings sharing the CPU would each
# report the other's interference. Jobs of other sessions queue; their pages stay live.
_measuring = threading.RLock()


@contextlib.contextmanager
def measuring(
    cancel: CancelToken | None = None, progress: ProgressCallback | None = None
) -> Iterator[None]:
    """Hold the process-wide measurement lock; cancellable while waiting for it."""
    while not _measuring.acquire(timeout=0.1):
        if cancel is not None:
            cancel.check()
        if progress is not None:
            progress(0.0, "waiting for another measurement to finish")
    try:
        yield
    finally:
        _measuring.release()


def sample_names() -> list[str]:
    """Names of the shipped sample models."""
    return list(wb.samples.names())


def load_sample(name: str) -> Model:
    """A sample model, loaded once per process (models are never mutated, so shared)."""
    with _samples_lock:
        if name not in _samples:
            _samples[name] = wb.samples.load(name)
        return _samples[name]


def model_key(model: Model) -> str:
    """A cache key naming the model and its exact weights."""
    return f"{model.name}#{model.fingerprint()[:12]}"


def layers_available() -> bool:
    """Whether per-layer profiling is installed (``workbench.profiling.layers``)."""
    return importlib.util.find_spec("workbench.profiling.layers") is not None


def profile_key(model: Model, backend: str, device: str, batch_size: int, layers: bool) -> RunKey:
    """The cache key of a profile (per-layer and end-to-end-only profiles differ)."""
    kind = "profile+layers" if layers and layers_available() else "profile"
    return RunKey(model_key(model), model.recipe_name, backend, device, batch_size, kind)


def measure_profile(
    model: Model,
    backend: str,
    device: str,
    batch_size: int,
    *,
    layers: bool = True,
    budget_s: float = 0.5,
    store: Any = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Profile:
    """Profile ``model`` (cached by `profile_key`) and save it to ``store`` when given."""
    key = profile_key(model, backend, device, batch_size, layers)
    cached = RESULTS.get(key)
    if cached is not None:
        return cached
    with measuring(cancel, progress):
        result = wb.profile(
            model,
            backend=backend,
            device=device,
            batch_size=batch_size,
            layers=layers and layers_available(),
            layer_repeats=10,
            budget_s=budget_s,
            progress=progress,
            cancel=cancel,
        )
    if not (layers and layers_available()) and layers:
        missing = "per-layer profiling is not installed in this build"
        result = dataclasses.replace(result, notes=(*result.notes, missing))
    RESULTS.put(key, result)
    if store is not None:
        store.save_profile(result)
    return result


def evaluation_data(model: Model, split: str = "test") -> Any | None:
    """The digits data when the model takes (N, 1, 8, 8) images; a sample's own held-out
    data (``dlrm``'s clicks, ``two-tower``'s users); else None."""
    if _takes_digits(model):
        return wb.samples.dataset("digits", split=split)
    name = _sample_name(model)
    if name is None or not _card_metrics(model):
        return None
    try:
        return wb.samples.dataset(name, split=split)
    except WorkbenchError:  # a sample without data of its own (or without this split)
        return None


def evaluation_metric(model: Model) -> str:
    """The metric the dashboard scores ``model`` by: the first its sample card records
    on the held-out split (``test_roc_auc`` -> ``"roc_auc"``, ``test_recall@10``), else
    ``"accuracy"``."""
    return next(iter(_card_metrics(model)), "accuracy")


def _takes_digits(model: Model) -> bool:
    return len(model.inputs) == 1 and tuple(model.inputs[0].shape[1:]) == (1, 8, 8)


def _sample_name(model: Model) -> str | None:
    source = str(getattr(model, "source", "") or "")
    return source.removeprefix("sample:") if source.startswith("sample:") else None


def _card_metrics(model: Model) -> list[str]:
    """The metrics a sample's card records on its test split, by name, in card order."""
    from workbench.evaluation.metrics import get_metric

    card = model.metadata.get("card") or {}
    found = []
    for key in card:
        name = str(key).removeprefix("test_")
        if key.startswith("test_") and isinstance(card[key], (int, float)):
            try:
                get_metric(name)
            except WorkbenchError:
                continue
            found.append(name)
    return found


def variant_steps(
    method: str,
    calibration_method: str,
    sparsity: float,
    structured: bool,
    exclude: tuple[str, ...] = (),
    layer_sparsity: LayerRatios = (),
    finetune_epochs: int = 0,
) -> list[Transform]:
    """The Optimize page's controls as transform configs: prune (if ``sparsity`` > 0 or a
    layer has its own ratio), then quantize (unless ``method`` is ``"none"``); empty for
    the baseline. ``exclude`` (layers the Sensitivity page keeps in full precision) goes
    to the quantization step, ``layer_sparsity`` (its per-layer prune ratios) to pruning;
    structured pruning fine-tunes for ``finetune_epochs`` on the training split."""
    steps = []
    if sparsity > 0 or any(ratio > 0 for _, ratio in layer_sparsity):
        kind = "prune-channels" if structured else "prune-magnitude"
        own: dict[str, Any] = {"layer_sparsity": layer_sparsity} if layer_sparsity else {}
        if structured and finetune_epochs:
            own["finetune_epochs"] = int(finetune_epochs)
        steps.append(make_config(kind, sparsity=sparsity, **own))
    kept = {"exclude": tuple(exclude)} if exclude else {}
    if method == "int8-static":
        steps.append(make_config(method, method=calibration_method, **kept))
    elif method != "none":
        steps.append(make_config(method, **kept))
    return steps


def variant_label(
    method: str,
    calibration_method: str,
    sparsity: float,
    structured: bool,
    exclude: tuple[str, ...] = (),
    layer_sparsity: LayerRatios = (),
    finetune_epochs: int = 0,
) -> str:
    """The recipe's label, as the built variant will carry it: ``prune-channels(50%, ft3)
    → int8-static(entropy)``, or ``baseline``; ``… except features.0`` when layers are
    kept; ``prune-magnitude(50%, features.0 20%)`` when a layer has its own prune ratio."""
    steps = variant_steps(
        method,
        calibration_method,
        sparsity,
        structured,
        exclude,
        layer_sparsity,
        finetune_epochs,
    )
    label = recipe_label(chain_to_dict(steps) if steps else None)
    if exclude and method != "none":
        names = sorted(exclude)
        # the label is also the cache key: it names every kept layer, or a digest of them
        shown = ", ".join(names) if len(names) <= 3 else f"{len(names)} layers #{_digest(names)}"
        label += f" except {shown}"
    return label


def _digest(names: list[str]) -> str:
    return f"{zlib.crc32(','.join(names).encode()):08x}"


def build_variant(
    model: Model,
    method: str,
    calibration_method: str,
    sparsity: float,
    structured: bool,
    exclude: tuple[str, ...] = (),
    layer_sparsity: LayerRatios = (),
    finetune_epochs: int = 0,
) -> Model:
    """Prune (if ``sparsity`` > 0 or a layer has its own ratio; structured pruning then
    fine-tunes ``finetune_epochs``), then quantize (unless ``method`` is ``"none"``),
    keeping the ``exclude`` layers in full precision.

    Raises:
        TransformError: the transform cannot apply to this model (explained).
    """
    steps = variant_steps(
        method,
        calibration_method,
        sparsity,
        structured,
        exclude,
        layer_sparsity,
        finetune_epochs,
    )
    if not steps:
        return model
    pruned = steps[0].name.startswith("prune-")
    if pruned and structured and model.framework != "torch":
        raise TransformError("structured pruning needs a PyTorch model; untick 'structured'")
    # static INT8 calibrates and fine-tuning trains on the training split
    return wb.transform(model, steps, data=evaluation_data(model, split="train"))


#: weight bytes of a quantized layer over its float32 bytes
_WEIGHT_BYTES = {"int8-dynamic": 0.25, "int8-static": 0.25, "fp16": 0.5}
_WEIGHTED_OPS = {"Conv", "Gemm", "MatMul", "Linear", "Conv2d", "ConvTranspose"}


def cost_scales(
    profile: Profile,
    method: str,
    sparsity: float,
    structured: bool,
    exclude: tuple[str, ...] = (),
    layer_sparsity: LayerRatios = (),
) -> tuple[dict[str, float], dict[str, float]]:
    """What the recipe does to each layer's FLOPs and bytes, for `estimate_latency_ms`.

    Channel pruning at ratio r keeps 1 - r of a layer's FLOPs and bytes (its consumer's
    inputs shrink too, so the saving is underestimated); magnitude pruning leaves dense
    kernels the same work, so it changes nothing; quantizing (``method``) shrinks the
    weights' bytes of the layers not in ``exclude``. The model's last weighted layer
    writes its outputs and is never channel-pruned by the global ratio.
    """
    table = profile.layers
    if table.empty:
        return {}, {}
    weighted = table[table["op_type"].isin(_WEIGHTED_OPS) & (table["params_bytes"] > 0)]
    names = list(weighted["layer"])
    ratios = {name: sparsity for name in names[:-1]} | dict(layer_sparsity)
    flops = {k: 1.0 - r for k, r in ratios.items()} if structured else {}
    nbytes = dict(flops)
    shrink = _WEIGHT_BYTES.get(method)
    if shrink is not None:
        for row in weighted.itertuples():
            if row.layer not in exclude and row.bytes and row.bytes > 0:
                saved = (1.0 - shrink) * row.params_bytes * nbytes.get(row.layer, 1.0)
                nbytes[row.layer] = nbytes.get(row.layer, 1.0) - saved / row.bytes
    return flops, nbytes


@dataclass(frozen=True)
class VariantResult:
    """One measured variant: its size, metric and profile (never mutated once built).

    Attributes:
        label: the recipe's label (`variant_label`, `recipe_label`).
        size_bytes: the serialised model's size.
        metric: the metric's name (``"accuracy"``).
        metric_value: the metric on the held-out data, None without labelled data.
        profile: the variant's `Profile` (per layer when available).
        notes: what is missing, in words.
    """

    label: str
    size_bytes: int
    metric: str
    metric_value: float | None
    profile: Profile
    notes: tuple[str, ...] = field(default_factory=tuple)

    def row(self) -> dict[str, Any]:
        """One trade-off row (the columns `viz.tradeoff` reads)."""
        latency = self.profile.latency
        return {
            "variant": self.label,
            "backend": self.profile.backend,
            "device": self.profile.device,
            "latency_ms": latency.median,
            "latency_p90_ms": latency.p90,
            "size_bytes": self.size_bytes,
            "metric": self.metric,
            "metric_value": self.metric_value,
            "run_id": self.profile.run_id,
        }


def measure_variant(
    model: Model,
    recipe: tuple[Any, ...],
    backend: str,
    device: str,
    batch_size: int,
    *,
    store: Any = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> VariantResult:
    """Build the variant ``recipe`` = (method, calibration_method, sparsity, structured[,
    exclude[, layer_sparsity[, finetune_epochs]]]) and measure it.

    Cached by (model, recipe, backend, device, batch size).
    """
    label = variant_label(*recipe)
    key = RunKey(model_key(model), label, backend, device, batch_size, "variant")
    cached = RESULTS.get(key)
    if cached is not None:
        return cached
    step = progress or (lambda fraction, message: None)
    with measuring(cancel, step):  # building and evaluating load the CPU too
        variant, value, notes = _build_and_score(model, recipe, backend, device, cancel, step)
        step(0.4, "profiling")
        profile = measure_profile(
            variant,
            backend,
            device,
            batch_size,
            store=store,
            cancel=cancel,
            progress=lambda f, m: step(0.4 + 0.6 * f, m),
        )
    metric = evaluation_metric(model)
    result = VariantResult(label, variant.size_bytes, metric, value, profile, tuple(notes))
    RESULTS.put(key, result)
    return result


def _build_and_score(
    model: Model,
    recipe: tuple[Any, ...],
    backend: str,
    device: str,
    cancel: CancelToken | None,
    step: ProgressCallback,
) -> tuple[Model, float | None, list[str]]:
    """The variant, its accuracy on the held-out digits (None without data), and notes."""
    step(0.0, f"building {variant_label(*recipe)}")
    variant = build_variant(model, *recipe)
    if cancel is not None:
        cancel.check()
    data, metric = evaluation_data(model), evaluation_metric(model)
    if data is None:
        return variant, None, [f"no labelled data for this model's inputs: {metric} not measured"]
    step(0.2, f"evaluating {metric}")
    from workbench.evaluation.metrics import evaluate

    def score(of: Model) -> float:
        found = evaluate(
            of, data, metric=metric, backend=backend, device=device, cancel=cancel, bar=False
        )
        return float(found.value)

    value = score(variant)
    differs = _card_disagrees(model, metric, value if variant is model else None, score)
    return (variant, None, [differs]) if differs else (variant, value, [])


#: per (model, metric): "" when the dashboard's scoring reproduces the sample card's
#: number, else why not (scored here on the same data, so it must agree)
_card_checks: dict[tuple[str, str], str] = {}
#: how far the dashboard's metric may be from the card's (runtimes differ in rounding)
CARD_TOLERANCE = 0.01


def _card_disagrees(model: Model, metric: str, baseline: float | None, score: Any) -> str:
    """Why ``metric`` is not shown for ``model`` ("" when it is): a sample scored on its
    own data must reproduce its card's ``test_<metric>``; where it does not (an
    IsolationForest's scores fall with anomaly, so ROC-AUC reads 1 - AUC) the number
    would mislead."""
    expected = (model.metadata.get("card") or {}).get(f"test_{metric}")
    if _takes_digits(model) or _sample_name(model) is None or not isinstance(expected, float):
        return ""
    key = (model_key(model), metric)
    if key not in _card_checks:
        value = score(model) if baseline is None else baseline
        _card_checks[key] = (
            ""
            if abs(value - expected) <= CARD_TOLERANCE
            else f"{metric} scored here ({value:.4f}) does not reproduce the sample card's "
            f"({expected:.4f}; the outputs mean something else to it): not shown"
        )
    return _card_checks[key]


#: the Sensitivity page's transforms whose ticks set per-layer ratios (the others' ticks
#: keep layers whole)
PRUNE_TRANSFORMS = ("prune-magnitude", "prune-channels")
#: transforms the Sensitivity page can apply one layer at a time (they have ``exclude``)
SENSITIVITY_TRANSFORMS = ("int8-static", "int8-dynamic", "fp16", *PRUNE_TRANSFORMS)


def sensitivity_config(transform: str, sparsity: float) -> Transform:
    """The config the Sensitivity page analyses: pruning at ``sparsity``, others as named."""
    return (
        make_config(transform, sparsity=sparsity)
        if transform in PRUNE_TRANSFORMS
        else make_config(transform)
    )


def _calibration(model: Model, transform: str) -> Any | None:
    """The training split for static INT8's calibration; the others need none."""
    return evaluation_data(model, split="train") if transform == "int8-static" else None


def _labelled_data(model: Model) -> Any:
    data = evaluation_data(model)
    if data is None:
        raise InputError(
            f"{model.name} has no labelled data here (the dashboard knows the digits "
            "inputs and the samples' own data only); run wb.sensitivity(model, data) in a "
            "notebook"
        )
    return data


def measure_sensitivity(
    model: Model,
    transform: str,
    backend: str,
    device: str,
    batch_size: int,
    *,
    sparsity: float = 0.5,
    budget_s: float = 0.1,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> pd.DataFrame:
    """`wb.sensitivity` of ``model`` under ``transform``, one layer at a time (cached);
    pruning transforms prune each layer to ``sparsity``.

    Raises:
        InputError: no labelled data for this model's inputs.
    """
    config = sensitivity_config(transform, sparsity)
    key = RunKey(model_key(model), f"sensitivity {config.label()}", backend, device, batch_size, "")
    cached = RESULTS.get(key)
    if cached is not None:
        return cached
    data = _labelled_data(model)
    with measuring(cancel, progress):
        frame = wb.sensitivity(
            model,
            data,
            config,
            metric=evaluation_metric(model),
            backend=backend,
            device=device,
            batch_size=batch_size,
            budget_s=budget_s,
            calibration=_calibration(model, transform),
            progress=progress,
            cancel=cancel,
        )
    RESULTS.put(key, frame)
    return frame


def suggest_kept(
    model: Model,
    transform: str,
    report: pd.DataFrame,
    max_drop: float,
    backend: str,
    device: str,
    batch_size: int,
    *,
    sparsity: float = 0.5,
    budget_s: float = 0.1,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[str, ...]:
    """`wb.suggest`'s plan as the layers it leaves untouched (its ``exclude``)."""
    data = _labelled_data(model)
    with measuring(cancel, progress):
        config = wb.suggest(
            model,
            data,
            sensitivity_config(transform, sparsity),
            max_drop,
            report=report,
            calibration=_calibration(model, transform),
            backend=backend,
            device=device,
            batch_size=batch_size,
            budget_s=budget_s,
            progress=progress,
            cancel=cancel,
        )
    return tuple(sorted(getattr(config, "exclude", ())))
