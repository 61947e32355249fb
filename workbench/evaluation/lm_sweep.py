"""`lm_sweep`: language-model variants x runtimes -> the generative trade-off, stored.

Each point is one variant (`wb.lm_quantize`, or the fp32 model itself: the
``"baseline"``) on one runtime: its generation profile (`wb.generate_profile`: TTFT,
TPOT, decode tokens/s, weights and KV cache, per-layer tables of each phase, the decode
roofline), its accuracy against fp32 (`wb.lm_accuracy`: KL, top-1 agreement, Δ
perplexity; a trained model only: a random-weight one has none, "unavailable: random
weights"), and why it is not faster (`workbench.evaluation.lm_why`, against the baseline
on the same runtime). Every finished point is written to the results store at once, as
`wb.sweep`'s are: rerunning the same sweep skips the points already stored, and a sweep
whose identity changed (weights, variants, runtimes, lengths, versions) starts fresh and
says why.

Example:
    >>> t = wb.lm_sweep(language_model("llama-stdlib"), ["int4", "int8-dynamic"])
    >>> t.df[["variant", "backend", "throughput_per_s", "ttft_ms", "metric_value", "pareto"]]
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.argtypes import whole
from workbench.errors import CancelledError, InvalidArgumentError, WorkbenchError
from workbench.progress import CancelToken, ProgressCallback, say_interrupted, track
from workbench.store import Store, point_key

if TYPE_CHECKING:
    from workbench.evaluation.sweep import TradeoffTable
    from workbench.optimize.lm_quantize import LMTransform

#: the variants swept by default (those this machine cannot build are skipped)
DEFAULT_VARIANTS = ("baseline", "int4", "int8", "int8-dynamic", "bf16")
#: why a random-weight model's rows have no KL
RANDOM_WEIGHTS = "random weights"


def lm_sweep(
    model: Any,
    variants: Sequence[str | LMTransform] | None = None,
    backends: Sequence[str] = ("torch", "onnxruntime"),
    *,
    name: str | None = None,
    prompt_length: int = 32,
    output_length: int = 32,
    batch_size: int = 1,
    runs: int = 3,
    layers: bool = True,
    roofline: bool = True,
    windows: int = 64,
    store: Store | str | Path | None = None,
    sweep_id: str | None = None,
    resume: bool = True,
    retry_failed: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> TradeoffTable:
    """Profile every variant on every runtime it runs on, with its KL, into the store.

    Never changes ``model``. The baseline runs on every runtime in ``backends``; a variant
    on those of its runtimes (``LMVariant.runtimes``) that are in ``backends``. Points are
    stored as they finish; with ``resume`` the points of a stored sweep with the same
    identity are not measured again.

    Args:
        model: a ``transformers`` causal LM in fp32 (`language_model`).
        variants: ``"baseline"``, `LM_METHODS` names or `LMTransform` configs; default
            `DEFAULT_VARIANTS` minus what `wb.lm_methods` says cannot run here.
        backends: generation runtimes (``"torch"``, ``"onnxruntime"``, ...).
        name: the model's name in the store (default its class).
        prompt_length: tokens of the random prompt each generation starts from.
        output_length: tokens generated (≥ 2: TPOT needs a decode step).
        batch_size: sequences generated together.
        runs: timed generations per point.
        layers: per-layer tables of each phase (the why-not report's per-layer reasons).
        roofline: the decode roofline (the why-not report's memory/compute bound).
        windows: held-out windows of the KL (`lm_accuracy`), trained models only.
        store: a `Store`, a path, or None for the default store.
        sweep_id: its id in the store (default: a hash of its identity).
        resume: skip stored points when the identity matches; False measures all again.
        retry_failed: on resume, measure the stored points that failed again.
        progress: ``progress(fraction, message)`` callback.
        cancel: a `CancelToken` checked between points (finished points stay stored).

    Returns:
        `lm_tradeoff`'s `TradeoffTable` of the stored points, plus per row
        ``accuracy_unavailable`` (why there is no KL), ``why`` (`WhyNotFaster.to_dict`),
        ``why_text`` (its reasons in one line) and ``generation`` (the point's
        `GenerationProfile.to_dict`).

    Raises:
        CancelledError: the token was cancelled (rerun to resume).
        InvalidArgumentError: an unknown variant name or runtime, or output_length < 2.

    Example:
        >>> t = wb.lm_sweep(model, ["int4"], ["onnxruntime"], store="runs.sqlite")
        >>> t.pareto()[["variant", "throughput_per_s", "metric_value"]]
    """
    from workbench.backends.base import generative, get_backend
    from workbench.evaluation.lm_accuracy import lm_table
    from workbench.evaluation.sweep import open_sweep
    from workbench.loaders.causal_lm import causal_lm

    for backend in backends:  # a misspelt runtime is refused before anything is built
        generative(get_backend(backend))
    whole("output_length", output_length, minimum=2)
    name = name or causal_lm(model).name
    specs = _labelled(variants)
    store = store if isinstance(store, Store) else Store(store)
    identity = {
        "kind": "generative",
        "model": name,
        "metric": "kl",  # as `wb.sweep`'s meta: `load_sweep` reads the table's direction
        "higher_is_better": False,
        "fingerprint": weights_fingerprint(model),
        "variants": [_describe(spec) for _, spec in specs],
        "backends": list(backends),
        "prompt_length": prompt_length,
        "output_length": output_length,
        "batch_size": batch_size,
        "runs": runs,
        "layers": layers,
        "roofline": roofline,
        "windows": windows,
        "versions": _versions(),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    sweep_id = sweep_id or f"{name}-lm-{digest}"
    notes = open_sweep(store, sweep_id, name, identity, resume)
    done = store.done_keys(sweep_id, failed=not retry_failed)
    points = [(label, spec, b) for label, spec in specs for b in _runtimes(spec, backends)]
    todo = [p for p in points if _key(p[0], p[2], batch_size) not in done]
    if len(todo) < len(points):
        notes.append(
            f"resumed sweep {sweep_id}: {len(points) - len(todo)} of {len(points)} points "
            f"measured earlier come from the store {store.path}; resume=False measures them again"
        )
    measure = functools.partial(
        _profile,
        prompt_length=prompt_length,
        output_length=output_length,
        batch_size=batch_size,
        runs=runs,
        layers=layers,
        roofline=roofline,
    )
    run = _Runner(model, store, sweep_id, measure, windows, batch_size, tuple(backends))
    try:
        for label, spec, backend in track(
            todo, description="lm sweep", progress=progress, cancel=cancel
        ):
            if cancel is not None:
                cancel.check()
            run.point(label, spec, backend)
    except KeyboardInterrupt:
        kept = f"{len(store.points(sweep_id))} of {len(points)} points stored, returned"
        notes.append(say_interrupted("lm sweep", f"{kept}; rerun with sweep_id={sweep_id!r}"))
    finally:
        run.close()
    if cancel is not None and cancel.cancelled:
        raise CancelledError("lm sweep cancelled; rerun with the same sweep_id to resume")
    return lm_table(store.points(sweep_id), sweep_id, identity, notes)


def _labelled(variants: Sequence[Any] | None) -> list[tuple[str, Any]]:
    """(label, spec) per variant, the baseline first; unknown names refused."""
    from workbench.evaluation.sweep import BASELINE
    from workbench.optimize.lm_quantize import LM_METHODS, LMTransform, lm_methods

    if variants is None:
        why = lm_methods()
        variants = [v for v in DEFAULT_VARIANTS if v == BASELINE or why.get(v) is None]
    out: dict[str, Any] = {}
    for spec in variants:
        if spec == BASELINE:
            out[BASELINE] = BASELINE
            continue
        if isinstance(spec, str):
            if spec not in LM_METHODS:
                raise InvalidArgumentError(
                    f"no language-model variant named {spec!r}; known: "
                    f"{', '.join(['baseline', *sorted(LM_METHODS)])}"
                )
            spec = LM_METHODS[spec]
        if not isinstance(spec, LMTransform):
            raise InvalidArgumentError(
                f"a variant is 'baseline', a name or an LMTransform config, not {spec!r}"
            )
        out[spec.label()] = spec
    ordered = sorted(out.items(), key=lambda item: item[0] != BASELINE)  # the baseline first
    return ordered


def _runtimes(spec: Any, backends: Sequence[str]) -> list[str]:
    """The sweep's runtimes this variant runs on; none of them: its first own runtime, so
    the variant is a failed row saying where it runs rather than silently missing."""
    own = getattr(spec, "runtimes", None)
    if own is None:  # the baseline runs everywhere
        return list(backends)
    return [b for b in backends if b in own] or [own[0]]


def _describe(spec: Any) -> Any:
    from workbench.optimize.base import config_to_dict

    return spec if isinstance(spec, str) else config_to_dict(spec)


def _key(label: str, backend: str, batch_size: int) -> str:
    return point_key(
        {"variant": label, "backend": backend, "device": "cpu", "batch_size": batch_size}
    )


def _versions() -> dict[str, str]:
    from workbench.machine import library_versions

    versions = library_versions()
    # no transformers installed: no language model reached here
    with contextlib.suppress(metadata.PackageNotFoundError):
        versions["transformers"] = metadata.version("transformers")
    return versions


def weights_fingerprint(model: Any) -> str:
    """A hash of a torch model's parameters and buffers (names, dtypes, shapes, bytes):
    equal weights give equal digests across processes."""
    import torch

    digest = hashlib.blake2b(digest_size=8)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            digest.update(f"{key}{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().contiguous().view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _profile(model: Any, backend: str, **settings: Any) -> Any:
    from workbench.profiling.generate import generate_profile

    return generate_profile(model, backend=backend, **settings)


class _Runner:
    """Builds each variant once, measures its points, saves each as it finishes."""

    def __init__(
        self,
        model: Any,
        store: Store,
        sweep_id: str,
        measure: Any,
        windows: int,
        batch_size: int,
        backends: tuple[str, ...],
    ) -> None:
        self.model, self.store, self.sweep_id, self.backends = model, store, sweep_id, backends
        self.measure, self.windows, self.batch_size = measure, windows, batch_size
        self.random = bool(getattr(model.config, "workbench_random_weights", False))
        self.built: dict[str, Any] = {}
        self.accuracy: dict[str, tuple[Any, str | None]] = {}

    def point(self, label: str, spec: Any, backend: str) -> None:
        from workbench.evaluation.lm_accuracy import tradeoff_row

        row: dict[str, Any] = {
            "variant": label,
            "backend": backend,
            "device": "cpu",
            "batch_size": self.batch_size,
            "metric": "kl",
            "error": None,
        }
        row["key"] = point_key(row)
        try:
            own = getattr(spec, "runtimes", None)
            if backend not in self.backends and own is not None:  # see `_runtimes`
                raise InvalidArgumentError(
                    f"{label} runs on {', '.join(own)}; add it to the sweep's backends"
                )
            variant = self._variant(label, spec)
            runtimes = getattr(variant, "runtimes", None)
            profile = self.measure(variant, backend)
            accuracy, unavailable = self._accuracy(label, variant)
            row.update(tradeoff_row(variant, profile, accuracy))
            row["accuracy_unavailable"] = unavailable
            row["generation"] = profile.to_dict()
            if runtimes is not None:
                why = self._why(variant, profile, backend)
                row["why"] = why.to_dict()
                row["why_text"] = "; ".join(f"{r.phase} {r.kind}: {r.text}" for r in why.reasons)
        except (CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # one failed point, not a failed sweep
            row["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
        self.store.save_point(self.sweep_id, row)

    def _variant(self, label: str, spec: Any) -> Any:
        from workbench.evaluation.sweep import BASELINE

        if spec == BASELINE:
            return self.model
        if label not in self.built:
            from workbench.optimize.lm_quantize import lm_quantize

            try:
                self.built[label] = lm_quantize(self.model, spec)
            except WorkbenchError as exc:
                self.built[label] = exc
        found = self.built[label]
        if isinstance(found, Exception):
            raise found
        return found

    def _accuracy(self, label: str, variant: Any) -> tuple[Any, str | None]:
        """(the variant's `LMAccuracy` or None, why there is none), once per variant."""
        if variant is self.model:
            return None, None  # the reference: KL 0 by definition
        if self.random:
            return None, RANDOM_WEIGHTS
        if label not in self.accuracy:
            from workbench.evaluation.lm_accuracy import lm_accuracy

            try:
                self.accuracy[label] = (lm_accuracy(variant, windows=self.windows), None)
            except WorkbenchError as exc:  # e.g. no held-out text for this model
                self.accuracy[label] = (None, str(exc))
        return self.accuracy[label]

    def _why(self, variant: Any, profile: Any, backend: str) -> Any:
        from workbench.evaluation.lm_why import why_not_faster
        from workbench.evaluation.sweep import BASELINE
        from workbench.profiling.generate import GenerationProfile

        stored = self.store.points(self.sweep_id)
        base = None
        if len(stored) and "generation" in stored:
            found = stored[(stored["variant"] == BASELINE) & (stored["backend"] == backend)]
            found = found[found["error"].isna()] if "error" in found else found
            if len(found):
                base = GenerationProfile.from_dict(found["generation"].iloc[-1])
        return why_not_faster(profile, base, getattr(variant, "recipe", None))

    def close(self) -> None:
        for variant in self.built.values():
            close = getattr(variant, "close", None)
            if callable(close):
                close()
