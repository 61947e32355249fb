"""Which layers of a language model quantization hurts, and a mixed-precision plan that
keeps those wider under a KL budget.

`lm_sensitivity` quantizes one decoder projection (or one block) ALONE, every other
weight in fp32 (the config's ``exclude`` holds all the others, as `wb.sensitivity` does
for forward models), and scores each such variant with `lm_accuracy`'s machinery on the
same held-out windows (the reference's logits computed once): one row per layer, named
by its module path, with the KL of the next-token distributions, its 95% interval, top-1
agreement and Δ perplexity.

`lm_mixed_plan` turns that into a plan: the layers that cost the most KL per weight
(decode reads every weight once per token, so a byte kept wider is what a layer's
precision costs in speed) are kept in int8 (or fp32), the rest int4, and the fewest such
layers are found whose whole plan MEASURES within the budget (each trial built and scored
on the same windows). The plan is a `MixedWeightOnly` config, its variant built like any
other (`wb.lm_quantize(model, plan.config)`), so it is profiled and compared as one.

Example:
    >>> s = wb.lm_sensitivity(model, "int4")        # one row per projection
    >>> s.df[["layer", "kl", "kl_ci_low", "kl_ci_high", "top1_agreement"]]
    >>> plan = wb.lm_mixed_plan(s, kl_budget=0.002)
    >>> plan.config.int8, plan.accuracy.kl_mean     # kept in int8; the plan's measured KL
    >>> wb.generate_profile(plan.variant, backend="onnxruntime")
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from workbench.argtypes import number
from workbench.errors import InvalidArgumentError, TransformError
from workbench.evaluation.lm_accuracy import HeldOutWindows, LMAccuracy, held_out_windows
from workbench.optimize.base import config_to_dict
from workbench.optimize.lm_quantize import (
    LM_METHODS,
    DynamicInt8,
    LMTransform,
    LMVariant,
    MixedWeightOnly,
    WeightOnly,
    lm_config_from_recipe,
    lm_quantize,
)
from workbench.profiling.results import dump_json, load_json
from workbench.progress import CancelToken, ProgressCallback, track

#: what one sensitivity row is: a projection (a Linear) or a decoder block
Granularity = Literal["projection", "block"]

#: the columns of `LMSensitivity.df`: `wb.sensitivity`'s names where they mean the same
#: (``metric_value`` = ``kl``), the KL's interval and the LM measures beside them
LM_SENSITIVITY_COLUMNS = [
    "layer", "op_type", "params", "kl", "kl_ci_low", "kl_ci_high", "kl_max",
    "top1_agreement", "delta_perplexity", "kl_per_mparam", "share", "positions", "error",
]  # fmt: skip


def lm_layers(model: Any, granularity: Granularity = "projection") -> list[str]:
    """The module paths `lm_sensitivity` tries one at a time, in the model's order.

    Args:
        model: a ``transformers`` causal LM.
        granularity: ``"projection"``: every ``Linear`` (``model.layers.0.self_attn.q_proj``
            … ``lm_head``); ``"block"``: the decoder blocks holding them
            (``model.layers.0``) and the Linears outside any block (``lm_head``).

    Raises:
        InvalidArgumentError: another granularity.
    """
    if granularity not in ("projection", "block"):
        raise InvalidArgumentError(
            f"granularity must be 'projection' or 'block', got {granularity!r}"
        )
    linears = _linears(model)
    if granularity == "projection":
        return list(linears)
    blocks: dict[str, None] = {}
    for name in linears:
        parts = name.split(".")
        # the first numbered part is the block's index in its ModuleList
        cut = next((i for i, part in enumerate(parts) if part.isdigit()), None)
        blocks[name if cut is None else ".".join(parts[: cut + 1])] = None
    return list(blocks)


def _linears(model: Any) -> dict[str, int]:
    """Each ``Linear``'s module path and its weight's parameter count."""
    import torch

    return {
        name: int(module.weight.numel())
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }


def _under(path: str, layer: str) -> bool:
    return path == layer or path.startswith(layer + ".")


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """One layer quantized alone: its `LMAccuracy` against fp32, or why it failed.

    Attributes:
        layer: the module path (the name the per-layer tables use).
        op_type: the module's class (``Linear``, ``LlamaDecoderLayer``).
        params: weights under it that the config quantizes (MatMul weights).
        accuracy: the variant's accuracy; None when building or scoring it failed.
        error: why it failed (one line), else None.
    """

    layer: str
    op_type: str
    params: int
    accuracy: LMAccuracy | None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class LMSensitivity:
    """`lm_sensitivity`'s result: the KL cost of quantizing each layer alone.

    Attributes:
        model: the reference's name.
        recipe: the config's recipe (`config_to_dict`) each layer was quantized with.
        granularity: ``"projection"`` or ``"block"``.
        full: the accuracy of the config on every layer at once, on the same windows.
        layers: one `LayerCost` per layer, the most KL first.
        windows, window_length, seed: the held-out sample (as `lm_accuracy`'s).
        reference: the fp32 model itself (not serialised: None after ``from_json``).
    """

    model: str
    recipe: dict[str, Any]
    granularity: str
    full: LMAccuracy
    layers: tuple[LayerCost, ...]
    windows: int
    window_length: int
    seed: int
    reference: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def config(self) -> LMTransform:
        """The config each layer was quantized with."""
        return lm_config_from_recipe(self.recipe)

    @property
    def df(self) -> Any:
        """One row per layer (`LM_SENSITIVITY_COLUMNS`), the most KL first: ``kl`` in
        nats per position, ``kl_per_mparam`` = KL per million weights (the plan's order),
        ``share`` = the layer's KL over the sum of all layers' (additive only roughly)."""
        import pandas as pd

        total = sum(c.accuracy.kl_mean for c in self.layers if c.accuracy) or float("nan")
        rows = []
        for cost in self.layers:
            a = cost.accuracy
            rows.append(
                {
                    "layer": cost.layer,
                    "op_type": cost.op_type,
                    "params": cost.params,
                    "kl": a.kl_mean if a else None,
                    "kl_ci_low": a.kl_ci95[0] if a else None,
                    "kl_ci_high": a.kl_ci95[1] if a else None,
                    "kl_max": a.kl_max if a else None,
                    "top1_agreement": a.top1_agreement if a else None,
                    "delta_perplexity": a.delta_perplexity if a else None,
                    "kl_per_mparam": a.kl_mean / cost.params * 1e6 if a and cost.params else None,
                    "share": a.kl_mean / total if a else None,
                    "positions": a.positions if a else None,
                    "error": cost.error,
                }
            )
        return pd.DataFrame(rows, columns=LM_SENSITIVITY_COLUMNS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (each layer's accuracy as `LMAccuracy.to_dict`)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del data["reference"]
        data["full"] = self.full.to_dict()
        data["layers"] = [
            {**dataclasses.asdict(c), "accuracy": c.accuracy.to_dict() if c.accuracy else None}
            for c in self.layers
        ]
        return data

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The fields as JSON; also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMSensitivity:
        """Read `to_dict`'s output back (without the reference model)."""
        values = dict(data)
        values["full"] = LMAccuracy.from_dict(values["full"])
        values["layers"] = tuple(
            LayerCost(
                **{
                    **c,
                    "accuracy": LMAccuracy.from_dict(c["accuracy"]) if c["accuracy"] else None,
                }
            )
            for c in values["layers"]
        )
        return cls(**values)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> LMSensitivity:
        """Read `to_json`'s output (a JSON string or a file) back."""
        return cls.from_dict(load_json(text_or_path, "a language-model sensitivity"))

    def _facts(self) -> list[tuple[str, str]]:
        low, high = self.full.kl_ci95
        return [
            ("model", self.model),
            ("config", str(self.recipe.get("label"))),
            ("layers", f"{len(self.layers)} ({self.granularity})"),
            ("all layers", f"KL {self.full.kl_mean:.3g} [{low:.3g}, {high:.3g}]"),
            ("sample", f"{self.full.positions:,} positions in {self.windows} windows"),
        ]

    def __str__(self) -> str:
        from workbench.profiling.formatting import frame_text

        facts = ", ".join(f"{name} {text}" for name, text in self._facts())
        return f"LMSensitivity({facts}; KL in nats per position)\n{frame_text(self.df)}"

    def _repr_html_(self) -> str:
        from workbench.profiling.formatting import frame_html, summary_html

        title = "Language-model sensitivity, one layer quantized at a time (KL, nats)"
        return summary_html(title, self._facts(), frame_html(self.df))


def lm_sensitivity(
    model: Any,
    config: str | LMTransform = "int4",
    *,
    granularity: Granularity = "projection",
    layers: list[str] | None = None,
    windows: int = 64,
    window_length: int = 64,
    text: Any = None,
    seed: int = 1,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> LMSensitivity:
    """The KL cost of quantizing each layer of a causal LM alone (the rest fp32).

    Never changes ``model``. The decoder is exported once; each layer's variant is that
    decoder quantized with every other ``Linear`` in the config's ``exclude``, scored
    against the reference's logits on the same held-out windows (computed once).

    Args:
        model: a trained ``transformers`` causal LM (fp32).
        config: an ONNX Runtime config with per-layer ``exclude``: ``"int4"``,
            ``"int8"``, ``"int8-dynamic"``, a `WeightOnly` or a `DynamicInt8`.
        granularity: ``"projection"`` (every Linear) or ``"block"`` (`lm_layers`).
        layers: module paths to try instead (any module: ``"model.layers.1.mlp"``).
        windows, window_length, text, seed: the held-out sample, as `lm_accuracy`'s.
        progress: ``progress(fraction, message)``; cancel: a `CancelToken`.

    Returns:
        An `LMSensitivity`: one `LayerCost` per layer, the most KL first, and the
        config's KL on every layer at once (``full``) on the same windows. A layer whose
        variant fails holds its error and the others are kept.

    Raises:
        UnsupportedModelError: a random-weight model (accuracy means nothing there) or
            not a causal LM.
        InvalidArgumentError: a config without per-layer control, an unknown layer or
            granularity.
        InputError, ParameterError: as `lm_accuracy`.

    Example:
        >>> s = wb.lm_sensitivity(model, "int4", granularity="block")
        >>> s.df[["layer", "kl", "kl_ci_low", "kl_ci_high"]]
    """
    config = _layered(config)
    held = held_out_windows(
        model, windows=windows, window_length=window_length, text=text, seed=seed
    )  # refuses random weights before anything is built
    linears = _linears(model)
    names = layers or lm_layers(model, granularity)
    missing = [name for name in names if not any(_under(p, name) for p in linears)]
    if missing:
        raise InvalidArgumentError(
            f"{type(model).__name__} has no Linear under {missing[0]!r}; give module paths "
            "such as 'lm_head' or 'model.layers.0.mlp' (wb.lm_layers lists them)"
        )
    kinds = dict(model.named_modules())
    with _exported(model) as decoder:
        full = _score(model, config, decoder, held)
        costs = []
        for name in track(names, description="lm sensitivity", progress=progress, cancel=cancel):
            others = tuple(p for p in linears if not _under(p, name))
            alone = dataclasses.replace(
                config, exclude=tuple(dict.fromkeys((*config.exclude, *others)))
            )  # type: ignore[arg-type]
            params = sum(n for p, n in linears.items() if _under(p, name))
            try:
                accuracy, error = _score(model, alone, decoder, held), None
            except TransformError as exc:  # one layer failing must not lose the others
                accuracy, error = None, str(exc)
            costs.append(LayerCost(name, type(kinds[name]).__name__, params, accuracy, error))
    costs.sort(key=lambda c: -c.accuracy.kl_mean if c.accuracy else 0.0)
    return LMSensitivity(
        model=type(model).__name__,
        recipe=config_to_dict(config),
        granularity="custom" if layers else granularity,
        full=full,
        layers=tuple(costs),
        windows=held.batch.shape[0],
        window_length=held.batch.shape[1],
        seed=seed,
        reference=model,
    )


def _layered(config: str | LMTransform) -> WeightOnly | DynamicInt8:
    """The config as one with per-layer ``exclude``, or a one-line refusal."""
    if isinstance(config, str):
        if config not in LM_METHODS:
            raise InvalidArgumentError(
                f"no language-model variant named {config!r}; known: {sorted(LM_METHODS)}"
            )
        config = LM_METHODS[config]
    if not isinstance(config, WeightOnly | DynamicInt8):
        raise InvalidArgumentError(
            f"{config.label()} has no per-layer control; give 'int4', 'int8', "
            "'int8-dynamic', a WeightOnly or a DynamicInt8 config"
        )
    return config


class _exported:
    """The model's ONNX decoder, exported once into a folder removed on exit."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __enter__(self) -> Path:
        from workbench.loaders.causal_lm import export_decoder

        self.folder = Path(tempfile.mkdtemp(prefix="wb-lm-sensitivity-"))
        path = self.folder / "decoder.onnx"
        try:
            export_decoder(self.model, path)
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        return path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _score(model: Any, config: LMTransform, decoder: Path, held: HeldOutWindows) -> LMAccuracy:
    variant = lm_quantize(model, config, decoder=decoder)
    try:
        return held.score(variant)
    finally:
        variant.close()


@dataclasses.dataclass(frozen=True)
class PlanTrial:
    """One plan measured during the search: the ``kept`` most costly layers wider.

    Attributes:
        kept: layers kept in the wider precision (the first ``kept`` of the order).
        kl: the plan's measured KL (nats per position).
        kl_ci95: its 95% interval.
    """

    kept: int
    kl: float
    kl_ci95: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class LMMixedPlan:
    """`lm_mixed_plan`'s result: the plan, its measured accuracy and how it was found.

    Attributes:
        model: the reference's name.
        kl_budget: the budget asked for (nats per position, on the plan's mean KL).
        keep: the wider precision, ``"int8"`` or ``"fp32"``.
        recipe: the plan's config (`config_to_dict` of a `MixedWeightOnly`).
        accuracy: the plan's `LMAccuracy`, measured on the sensitivity's windows.
        order: the layers in the order they are kept wider (most KL per weight first).
        trials: every plan measured on the way (`PlanTrial`), in the order tried.
        variant: the plan's built `LMVariant` (not serialised: None after ``from_json``).
    """

    model: str
    kl_budget: float
    keep: str
    recipe: dict[str, Any]
    accuracy: LMAccuracy
    order: tuple[str, ...]
    trials: tuple[PlanTrial, ...]
    variant: LMVariant | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def config(self) -> MixedWeightOnly:
        """The plan as a config: ``wb.lm_quantize(model, plan.config)`` rebuilds it."""
        config = lm_config_from_recipe(self.recipe)
        assert isinstance(config, MixedWeightOnly)
        return config

    @property
    def kept(self) -> tuple[str, ...]:
        """The layers the plan keeps wider than int4."""
        config = self.config
        return (*config.int8, *config.exclude)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del data["variant"]
        data["accuracy"] = self.accuracy.to_dict()
        data["trials"] = [dataclasses.asdict(t) for t in self.trials]
        return data

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The fields as JSON; also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMMixedPlan:
        """Read `to_dict`'s output back (without the built variant)."""
        values = dict(data)
        values["accuracy"] = LMAccuracy.from_dict(values["accuracy"])
        values["order"] = tuple(values["order"])
        values["trials"] = tuple(
            PlanTrial(t["kept"], t["kl"], tuple(t["kl_ci95"])) for t in values["trials"]
        )
        values.pop("variant", None)
        return cls(**values)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> LMMixedPlan:
        """Read `to_json`'s output (a JSON string or a file) back."""
        return cls.from_dict(load_json(text_or_path, "a mixed-precision plan"))

    def __str__(self) -> str:
        low, high = self.accuracy.kl_ci95
        kept = ", ".join(self.kept) or "none"
        return (
            f"{self.recipe['label']}: KL {self.accuracy.kl_mean:.3g} nats [95% CI "
            f"{low:.3g}, {high:.3g}] within the budget {self.kl_budget:g}, top-1 agreement "
            f"{self.accuracy.top1_agreement:.1%}; {len(self.kept)} of {len(self.order)} "
            f"layers kept in {self.keep}: {kept} ({len(self.trials)} plans measured)"
        )


def lm_mixed_plan(
    sensitivity: LMSensitivity,
    kl_budget: float = 0.002,
    *,
    keep: Literal["int8", "fp32"] = "int8",
    model: Any = None,
    text: Any = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> LMMixedPlan:
    """The fewest layers to keep wider than int4 so the whole plan's MEASURED KL is
    within ``kl_budget``, built as a variant.

    The layers are kept wider in the order of the most KL per weight (decode reads every
    weight once per token, so the speed a layer costs is its bytes); the smallest
    number of them whose plan measures within the budget is found by bisection on that
    order (a plan is built and scored per trial, on the sensitivity's windows; the first
    trial is where the layers' own KLs, added up, say the budget is met).

    Args:
        sensitivity: `lm_sensitivity` with an int4 `WeightOnly` config.
        kl_budget: the most mean KL (nats per position) the plan may measure.
        keep: the precision of the layers kept: ``"int8"`` (block-wise, the same block
            size and accuracy level) or ``"fp32"`` (left as they are).
        model: the reference, when ``sensitivity`` was read from JSON.
        text: the held-out text, when the sensitivity was measured on a given one.
        progress: ``progress(fraction, message)``; cancel: a `CancelToken`.

    Returns:
        An `LMMixedPlan`: its config (a `MixedWeightOnly`), measured `LMAccuracy`, the
        trials, and the built ``variant`` (profile it like any other).

    Raises:
        TransformError: no plan meets the budget (the line says the closest plan's KL).
        InvalidArgumentError: a sensitivity of another config, another ``keep``, no model.
        ParameterError: a budget that is not a positive number.

    Example:
        >>> plan = wb.lm_mixed_plan(wb.lm_sensitivity(model), kl_budget=0.002)
        >>> wb.generate_profile(plan.variant, backend="onnxruntime")
    """
    budget = number("kl_budget", kl_budget, above=0)
    if keep not in ("int8", "fp32"):
        raise InvalidArgumentError(f"keep must be 'int8' or 'fp32', got {keep!r}")
    base = sensitivity.config
    if type(base) is not WeightOnly or base.bits != 4:
        raise InvalidArgumentError(
            f"a mixed plan starts from int4 weight-only; this sensitivity is of {base.label()}"
        )
    model = sensitivity.reference if model is None else model
    if model is None:
        raise InvalidArgumentError(
            "this sensitivity was read back without its model; give model= (the reference)"
        )
    if text is None and sensitivity.full.text.startswith("the given"):
        raise InvalidArgumentError(
            f"this sensitivity was measured on {sensitivity.full.text}; give the same text="
        )
    measured = [c for c in sensitivity.layers if c.accuracy is not None]
    order = [
        c.layer
        for c in sorted(measured, key=lambda c: -c.accuracy.kl_mean / max(c.params, 1))  # type: ignore[union-attr]
    ]
    held = held_out_windows(
        model,
        windows=sensitivity.windows,
        window_length=sensitivity.window_length,
        text=text,
        seed=sensitivity.seed,
    )
    fields = dataclasses.asdict(base)

    def plan(kept: int) -> MixedWeightOnly:
        wider = tuple(order[:kept])
        if keep == "int8":
            return MixedWeightOnly(**{**fields, "int8": wider})
        return MixedWeightOnly(**{**fields, "exclude": (*base.exclude, *wider)})

    trials: dict[int, tuple[LMAccuracy, LMVariant | None]] = {0: (sensitivity.full, None)}
    with _exported(model) as decoder:

        def measure(kept: int) -> bool:
            if cancel is not None:
                cancel.check()
            if progress is not None:
                progress(len(trials) / (len(trials) + 4), f"plan keeping {kept} layers")
            variant = lm_quantize(model, plan(kept), decoder=decoder)
            trials[kept] = (held.score(variant), variant)
            return trials[kept][0].kl_mean <= budget

        high = _search(sensitivity, order, budget, measure)
        # every trial but the chosen one goes now (each holds a decoder on disk)
        for kept, (_, variant) in trials.items():
            if variant is not None and kept != high:
                variant.close()
        if high == 0:  # the config on every layer already meets it: build it as the plan
            trials[0] = (sensitivity.full, lm_quantize(model, plan(0), decoder=decoder))
    if progress is not None:
        progress(1.0, "plan done")
    history = tuple(PlanTrial(k, a.kl_mean, a.kl_ci95) for k, (a, _) in trials.items())
    if high is None:
        closest = min(trials, key=lambda k: trials[k][0].kl_mean)
        best = trials[closest][0]
        hint = " or keep='fp32'" if keep == "int8" else ""
        raise TransformError(
            f"no plan meets kl_budget={budget:g}: the closest keeps {closest} of {len(order)} "
            f"layers in {keep} and measures KL {best.kl_mean:.3g} nats [95% CI "
            f"{best.kl_ci95[0]:.3g}, {best.kl_ci95[1]:.3g}]; raise the budget{hint}"
        )
    accuracy, variant = trials[high]
    return LMMixedPlan(
        model=sensitivity.model,
        kl_budget=budget,
        keep=keep,
        recipe=config_to_dict(plan(high)),
        accuracy=accuracy,
        order=tuple(order),
        trials=history,
        variant=variant,
    )


def _search(
    sensitivity: LMSensitivity, order: list[str], budget: float, measure: Any
) -> int | None:
    """The fewest layers kept that met the budget (None: none did): bisection on the
    number kept, the first probe where the layers' own KLs, subtracted from the full
    config's, reach the budget."""
    if sensitivity.full.kl_mean <= budget:
        return 0
    cost = {c.layer: c.accuracy.kl_mean for c in sensitivity.layers if c.accuracy}
    left, guess = sensitivity.full.kl_mean, len(order)
    for index, name in enumerate(order):
        left -= cost[name]
        if left <= budget:
            guess = index + 1
            break
    low, high = 0, None  # low: known to fail; high: known to meet
    probe = guess
    while True:
        if measure(probe):
            high = probe
        else:
            low = probe
        top = len(order) + 1 if high is None else high  # n + 1: "not even all of them"
        if top - low <= 1:
            return high
        probe = (low + top) // 2
