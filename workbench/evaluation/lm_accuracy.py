"""What a language-model variant costs in quality: its next-token distributions against
the fp32 reference's on held-out text.

`lm_accuracy` cuts ``windows`` windows of ``window_length`` tokens from held-out text
(by default the trained ``llama-stdlib`` sample's held-out split: the standard library
files its training script left out), scores every position of every window with both
models, and reports

- KL(reference ‖ variant) of the next-token distributions, in nats per token: the mean
  over all positions, with a 95% bootstrap interval over windows (windows are the
  independent units; positions within one are not);
- top-1 agreement: the share of positions where both models' most likely token is the same;
- perplexity of each model on the text's true next tokens, and their difference.

An ONNX variant is scored through its ONNX Runtime decoder, teacher-forced one token per
call on its KV cache (the decoder returns the last position's logits only), i.e. exactly
the graph that generation times; the reference and torch variants in one forward pass.
A random-weight model (``llama-100m``, ``llama-tiny``: speed only) is refused.

Example:
    >>> from workbench.loaders.language import language_model
    >>> q = wb.lm_quantize(language_model("llama-stdlib"), "int4")
    >>> a = wb.lm_accuracy(q, windows=64)
    >>> a.kl_mean, a.kl_ci95, a.top1_agreement, a.delta_perplexity
"""

from __future__ import annotations

import math
import sysconfig
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.argtypes import whole
from workbench.errors import InputError, UnsupportedModelError
from workbench.profiling.results import dump_json, load_json

if TYPE_CHECKING:
    from workbench.evaluation.sweep import TradeoffTable
    from workbench.profiling.generate import GenerationProfile

#: the held-out split of ``sample_models/llama_train.py``: every tenth standard-library
#: file (sorted), joined by newlines, the first this many bytes
HELD_OUT_BYTES = 400_000
#: bootstrap resamples of the windows for the KL interval
BOOTSTRAP = 2000


@dataclass(frozen=True)
class LMAccuracy:
    """A variant's next-token distributions against its fp32 reference's.

    Attributes:
        variant: the variant's name (its class and recipe label).
        reference: the reference's name.
        runtime: where the variant's logits came from (``"onnxruntime"``, ``"torch"``).
        text: what the windows were cut from.
        windows: windows scored (the bootstrap's units).
        window_length: tokens per window; each window scores ``window_length − 1``
            next-token predictions.
        positions: predictions scored in all (the sample size).
        kl_mean: mean KL(reference ‖ variant) per position, in nats.
        kl_ci95: 95% bootstrap interval of ``kl_mean`` over windows (nats).
        kl_max: the largest KL at any position (nats).
        top1_agreement: share of positions where the argmax tokens agree (0–1).
        reference_perplexity: the reference's perplexity on the true next tokens.
        variant_perplexity: the variant's.
        seed: of the window starts and the bootstrap.
    """

    variant: str
    reference: str
    runtime: str
    text: str
    windows: int
    window_length: int
    positions: int
    kl_mean: float
    kl_ci95: tuple[float, float]
    kl_max: float
    top1_agreement: float
    reference_perplexity: float
    variant_perplexity: float
    seed: int

    @property
    def delta_perplexity(self) -> float:
        """Variant's perplexity minus the reference's (positive: worse)."""
        return self.variant_perplexity - self.reference_perplexity

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the interval as a list)."""
        data = asdict(self)
        data["kl_ci95"] = list(self.kl_ci95)
        return data

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The fields as JSON; also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMAccuracy:
        """Read `to_dict`'s output back."""
        values = dict(data)
        values["kl_ci95"] = tuple(values["kl_ci95"])
        return cls(**values)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> LMAccuracy:
        """Read `to_json`'s output (a JSON string or a file) back."""
        return cls.from_dict(load_json(text_or_path, "a language-model accuracy"))

    def __str__(self) -> str:
        low, high = self.kl_ci95
        return (
            f"{self.variant} vs {self.reference} ({self.runtime}): KL {self.kl_mean:.4g} nats "
            f"[95% CI {low:.4g}, {high:.4g}], top-1 agreement {self.top1_agreement:.1%}, "
            f"perplexity {self.variant_perplexity:.4g} vs {self.reference_perplexity:.4g} "
            f"(Δ {self.delta_perplexity:+.3g}); {self.positions} positions in "
            f"{self.windows} windows of {self.text}"
        )


def stdlib_held_out() -> np.ndarray:
    """The trained sample's held-out bytes (token ids 0–255): the standard-library files
    ``sample_models/llama_train.py`` held out (every tenth, sorted)."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    held = b"\n".join(path.read_bytes() for path in files[::10])[:HELD_OUT_BYTES]
    return np.frombuffer(held, dtype=np.uint8).astype(np.int64)


def lm_accuracy(
    variant: Any,
    reference: Any = None,
    *,
    windows: int = 64,
    window_length: int = 64,
    text: str | np.ndarray | None = None,
    seed: int = 1,
) -> LMAccuracy:
    """Score a variant's next-token distributions against its fp32 reference's.

    Args:
        variant: an `LMVariant` (`wb.lm_quantize`) or a ``transformers`` causal LM.
        reference: the fp32 model; None: the variant's own ``reference``.
        windows: windows of held-out text scored (the sample of the interval).
        window_length: tokens per window (≥ 2, within the model's context).
        text: held-out text (encoded by the reference's tokenizer) or token ids (1-D);
            None: the trained sample's held-out split (a byte-level model).
        seed: of the window starts and the bootstrap.

    Returns:
        A frozen `LMAccuracy` (``to_json`` / ``from_json``).

    Raises:
        UnsupportedModelError: accuracy asked for a random-weight model, or a model
            that is not a causal LM.
        InputError: no reference, no text for a model without a byte tokenizer, a text
            shorter than one window, a window longer than the context.
        ParameterError: ``windows`` < 1 or ``window_length`` < 2.
    """
    _refuse_random_weights(variant)  # before the reference's logits are computed
    return held_out_windows(
        reference if reference is not None else getattr(variant, "reference", None),
        windows=windows,
        window_length=window_length,
        text=text,
        seed=seed,
    ).score(variant)


@dataclass(frozen=True)
class HeldOutWindows:
    """Windows of held-out text and the fp32 reference's logits on them: what
    `lm_accuracy` scores a variant against, computed once for many variants of one
    reference (`score`), as a per-layer sensitivity needs.

    Attributes:
        reference: the fp32 model.
        batch: the windows' token ids (windows, window_length).
        expected: the reference's logits on them (windows, window_length, vocabulary).
        source: what the windows were cut from.
        seed: of the window starts and the bootstrap.
        rng_state: the generator's state after drawing the starts (each score's
            bootstrap starts from it, so every variant is resampled alike).
    """

    reference: Any
    batch: np.ndarray
    expected: np.ndarray
    source: str
    seed: int
    rng_state: dict[str, Any]

    def score(self, variant: Any) -> LMAccuracy:
        """`lm_accuracy` of ``variant`` on these windows (an `LMVariant` or a causal LM).

        Raises:
            UnsupportedModelError: a random-weight or non-causal-LM variant.
        """
        from workbench.loaders.causal_lm import causal_lm

        _refuse_random_weights(variant)
        runtime, observed = _variant_logits(variant, self.batch)
        rng = np.random.default_rng()
        rng.bit_generator.state = self.rng_state
        return _compare(
            self.expected,
            observed,
            self.batch,
            rng,
            seed=self.seed,
            source=self.source,
            runtime=runtime,
            names=(causal_lm(variant).name, causal_lm(self.reference).name),
        )


def held_out_windows(
    reference: Any,
    *,
    windows: int = 64,
    window_length: int = 64,
    text: str | np.ndarray | None = None,
    seed: int = 1,
) -> HeldOutWindows:
    """The windows `lm_accuracy` scores and the reference's logits on them (arguments as
    `lm_accuracy`'s); ``.score(variant)`` gives a variant's `LMAccuracy`.

    Raises:
        as `lm_accuracy`.

    Example:
        >>> held = held_out_windows(model, windows=64)
        >>> [held.score(wb.lm_quantize(model, c)).kl_mean for c in ("int4", "int8")]
    """
    from workbench.loaders.causal_lm import causal_lm

    windows = whole("windows", windows, minimum=1)
    window_length = whole("window_length", window_length, minimum=2)
    if reference is None:
        raise InputError("no fp32 reference: give reference= (the model the variant came from)")
    _refuse_random_weights(reference)
    lm = causal_lm(reference)
    if window_length > lm.context:
        raise InputError(
            f"window_length {window_length} exceeds {lm.name}'s context of {lm.context}"
        )
    ids, source = _held_out(reference, text)
    if len(ids) < window_length:
        raise InputError(f"the text has {len(ids)} tokens, fewer than one window ({window_length})")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - window_length + 1, windows)
    batch = np.stack([ids[s : s + window_length] for s in starts])
    expected = _torch_logits(reference, batch)
    state = dict(rng.bit_generator.state)
    return HeldOutWindows(reference, batch, expected, source, seed, state)


def _refuse_random_weights(model: Any) -> None:
    from workbench.loaders.causal_lm import causal_lm

    if getattr(getattr(model, "config", None), "workbench_random_weights", False):
        raise UnsupportedModelError(
            f"accuracy asked for a random-weight model ({causal_lm(model).name}: for "
            "speed only); measure accuracy on a trained model such as llama-stdlib"
        )


def _held_out(reference: Any, text: str | np.ndarray | None) -> tuple[np.ndarray, str]:
    from workbench.loaders.tokenizers import model_tokenizer

    if text is not None and not isinstance(text, str):
        return np.asarray(text, dtype=np.int64).ravel(), "the given token ids"
    tokenizer = model_tokenizer(reference)
    if text is not None:
        if tokenizer is None:
            raise InputError("a text needs the reference's tokenizer, and it has none; give ids")
        return np.asarray(tokenizer.encode(text), dtype=np.int64), "the given text"
    if tokenizer is None or tokenizer.name != "bytes":
        raise InputError(
            "the default held-out text is the byte-level sample's (llama-stdlib); "
            "give text= (held-out text or token ids) for this model"
        )
    return stdlib_held_out(), "the standard library's held-out files (llama-stdlib's split)"


def _torch_logits(model: Any, batch: np.ndarray, chunk: int = 32) -> np.ndarray:
    """Every position's logits (windows, length, vocabulary) as float32, in one forward
    pass per chunk of windows."""
    import torch

    parts = []
    with torch.inference_mode():
        for rows in torch.from_numpy(batch).split(chunk):
            parts.append(model(input_ids=rows).logits.float().numpy())
    return np.concatenate(parts)


def _variant_logits(variant: Any, batch: np.ndarray) -> tuple[str, np.ndarray]:
    """(runtime, every position's logits) of the variant on its own runtime."""
    runtimes = getattr(variant, "runtimes", ("torch",))
    if "torch" in runtimes:
        return "torch", _torch_logits(variant, batch)
    from workbench.backends.base import generative, get_backend

    decoder = generative(get_backend(runtimes[0])).decoder(variant)
    try:
        start, logits = getattr(decoder, "start", None), getattr(decoder, "logits", None)
        if not callable(start) or not callable(logits):
            raise UnsupportedModelError(
                f"{runtimes[0]}'s decoder gives no logits (start/logits); score it on torch"
            )
        start(batch.shape[0])
        steps = [logits(batch[:, i : i + 1]) for i in range(batch.shape[1])]
    finally:
        decoder.close()
    return runtimes[0], np.stack(steps, axis=1).astype(np.float32)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _compare(
    expected: np.ndarray,
    observed: np.ndarray,
    batch: np.ndarray,
    rng: np.random.Generator,
    *,
    seed: int,
    source: str,
    runtime: str,
    names: tuple[str, str],
) -> LMAccuracy:
    """The statistics of two models' logits on the same windows (the last position
    predicts past the window and is not scored)."""
    log_p = _log_softmax(expected[:, :-1].astype(np.float64))
    log_q = _log_softmax(observed[:, :-1].astype(np.float64))
    kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)  # (windows, length - 1)
    per_window = kl.mean(1)
    resampled = rng.integers(0, len(per_window), (BOOTSTRAP, len(per_window)))
    means = per_window[resampled].mean(1)
    truth = batch[:, 1:, None]
    nll_p = -np.take_along_axis(log_p, truth, -1).mean()
    nll_q = -np.take_along_axis(log_q, truth, -1).mean()
    return LMAccuracy(
        variant=names[0],
        reference=names[1],
        runtime=runtime,
        text=source,
        windows=batch.shape[0],
        window_length=batch.shape[1],
        positions=int(kl.size),
        kl_mean=float(kl.mean()),
        kl_ci95=(float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))),
        kl_max=float(kl.max()),
        top1_agreement=float((log_p.argmax(-1) == log_q.argmax(-1)).mean()),
        reference_perplexity=math.exp(nll_p),
        variant_perplexity=math.exp(nll_q),
        seed=seed,
    )


def lm_tradeoff(
    points: Sequence[tuple[Any, GenerationProfile, LMAccuracy | None]],
) -> TradeoffTable:
    """The generative trade-off: one row per (variant, runtime), decode speed against KL.

    Args:
        points: ``(model, generation profile, accuracy)`` triples: the model profiled (an
            `LMVariant`, or the fp32 reference itself: the ``"baseline"`` row, KL 0 by
            definition), its `GenerationProfile` on one runtime, and its `LMAccuracy`
            (None where accuracy is not measured, e.g. random weights: no KL is shown and
            the row is never on the Pareto front). The accuracy of a recipe measured on
            the trained sample may stand beside the speed of the same recipe on a
            random-weight config; the row's ``kl_model`` says which model the KL is of.

    Returns:
        A `TradeoffTable` (``metric`` ``"kl"``, lower is better) whose ``latency_ms`` is
        the median TPOT and ``throughput_per_s`` the decode tokens/s, with ``ttft_ms``,
        ``weights_bytes``, ``kv_cache_bytes``, ``memory_bytes`` (weights + KV cache),
        ``kl_ci_low`` / ``kl_ci_high``, ``top1_agreement``, ``delta_perplexity`` and
        ``kl_model`` beside the shared columns; ``speedup`` is against the baseline on
        the same runtime (the sweep's rule), ``speedup_vs_baseline`` against the
        baseline row on whatever runtime it ran (e.g. torch eager fp32).

    Example:
        >>> q = wb.lm_quantize(model, "int4")
        >>> lm_tradeoff([(model, wb.generate_profile(model), None),
        ...              (q, wb.generate_profile(q, backend="onnxruntime"), wb.lm_accuracy(q))])
    """
    return lm_table([tradeoff_row(model, profile, accuracy) for model, profile, accuracy in points])


def tradeoff_row(
    model: Any, profile: GenerationProfile, accuracy: LMAccuracy | None
) -> dict[str, Any]:
    """One row of the generative trade-off (`lm_tradeoff`'s columns) for a model measured
    on one runtime: the reference itself (no ``label``: the ``"baseline"`` row, KL 0) or
    an `LMVariant` (its KL from ``accuracy``; None: not measured)."""
    from workbench.evaluation.sweep import BASELINE

    label = getattr(model, "label", None)
    decode = profile.tpot or profile.ttft  # one token: the prefill is all there is
    low, high = decode.median_ci
    kl: float | None = accuracy.kl_mean if accuracy else (None if label else 0.0)
    return {
        "variant": label or BASELINE,
        "backend": profile.backend,
        "device": profile.device,
        "batch_size": profile.batch_size,
        "latency_ms": decode.median,
        "latency_p90_ms": decode.p90,
        "latency_ci_low_ms": low,
        "latency_ci_high_ms": high,
        "throughput_per_s": profile.decode_tokens_per_s,
        "size_bytes": getattr(model, "size_bytes", None) or profile.weights_bytes,
        "metric": "kl",
        "metric_value": kl,
        "recipe": getattr(model, "recipe", None),
        "samples": decode.n,
        "noisy": decode.noisy,
        "ttft_ms": profile.ttft.median,
        "weights_bytes": profile.weights_bytes,
        "kv_cache_bytes": profile.kv_cache_bytes,
        "memory_bytes": profile.weights_bytes + profile.kv_cache_bytes,
        "kl_ci_low": accuracy.kl_ci95[0] if accuracy else None,
        "kl_ci_high": accuracy.kl_ci95[1] if accuracy else None,
        "top1_agreement": accuracy.top1_agreement if accuracy else None,
        "delta_perplexity": accuracy.delta_perplexity if accuracy else None,
        "kl_model": accuracy.reference if accuracy else None,
    }


def lm_table(
    rows: Any,
    sweep_id: str = "",
    meta: dict[str, Any] | None = None,
    notes: list[str] | None = None,
) -> TradeoffTable:
    """The generative `TradeoffTable` of `tradeoff_row` rows (a list or a DataFrame of
    stored points): ``speedup_vs_baseline`` against the baseline row whatever runtime it
    ran on, and a note naming the rows without a KL."""
    import pandas as pd

    from workbench.evaluation.sweep import BASELINE, table_from_rows

    frame = pd.DataFrame(rows)
    if "variant" not in frame:  # no points yet: the table's columns, no rows
        return table_from_rows(frame, "kl", False, sweep_id, {"kind": "generative", **(meta or {})})
    ok = frame["error"].isna() if "error" in frame else pd.Series(True, index=frame.index)
    base = frame.loc[(frame["variant"] == BASELINE) & ok, "latency_ms"]
    # across runtimes too: the question is "how much faster than eager fp32"
    first = float(base.iloc[0]) if len(base) else None
    frame["speedup_vs_baseline"] = [
        first / ms if first and ms == ms and ms else None for ms in frame["latency_ms"]
    ]
    why = frame.get("accuracy_unavailable", pd.Series(None, index=frame.index, dtype=object))
    unmeasured: dict[str, list[str]] = {}
    for variant, value, reason, good in zip(
        frame["variant"], frame["metric_value"], why, ok, strict=True
    ):
        if good and (value is None or value != value):
            reason = reason if isinstance(reason, str) and reason else "accuracy not measured"
            unmeasured.setdefault(reason, []).append(str(variant))
    own = [f"no KL for {', '.join(names)}: {reason}" for reason, names in unmeasured.items()]
    return table_from_rows(
        frame, "kl", False, sweep_id, {"kind": "generative", **(meta or {})}, [*(notes or []), *own]
    )
