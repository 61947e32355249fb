"""Generation profiles: a causal LM timed token by token (TTFT, TPOT, inter-token latencies).

One generation is a prefill call on the prompt (which yields the first token) and then
one decode step per further token, the KV cache carried between calls. Every call is
timed with `Timer.clock` (so a fake clock checks the arithmetic exactly), the machine's
CPU counters are read around the timed runs as `Timer` does, and each quantity is a
`Measurement`:

- ``ttft``: time to first token (the prefill call and its argmax), one sample per run;
- ``inter_token``: every decode step of every timed run (the inter-token latencies);
- ``tpot``: per run, TPOT = (E2E − TTFT) / (N − 1);
- ``e2e``: the whole generation, one sample per run.

Decoding is greedy. A backend generates through its optional ``decoder`` method (the
`Decoder` protocol of `workbench.backends.base`): ``"torch"`` (eager), ``"torch-compile"``
(Inductor, compiled before timing) and ``"onnxruntime"`` (the decoder exported with past
key/values, the cache kept bound in ORT between steps) have one, and so may a plugin's
(`generation_backends` lists them); the tokens of any backend but torch are
checked against torch's, naming the first step that differs.

Example:
    >>> g = wb.generate_profile(model, backend="onnxruntime", prompt_length=8, output_length=4)
    >>> g.ttft.median, g.tpot.median, g.decode_tokens_per_s
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from workbench.argtypes import batch_size as check_batch_size
from workbench.argtypes import whole
from workbench.backends.base import Decoder, generative, get_backend, settings_of
from workbench.errors import InputError, UnsupportedModelError
from workbench.profiling.results import dump_json, load_json
from workbench.profiling.timer import Measurement, Timer, Watch, gc_paused

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from workbench.loaders.causal_lm import CausalLM
    from workbench.loaders.tokenizers import Tokenizer

#: whose greedy tokens another backend's are checked against
REFERENCE_BACKEND = "torch"


@dataclass(frozen=True)
class GenerationProfile:
    """A causal LM's greedy generation, timed token by token on one backend.

    Attributes:
        model: the model's name (its class).
        backend: ``"torch"`` or ``"onnxruntime"``.
        device: where it ran.
        batch_size: sequences generated together.
        prompt_length: tokens in each prompt.
        depth: tokens already in each sequence's cache before the prompt (as llama-bench
            ``-d``): an untimed prefill puts them there, then the prompt is timed.
        output_length: tokens generated per sequence (N).
        tokens: the generated token ids, one tuple per sequence (the last timed run).
        ttft: time to first token, one sample per timed run (ms).
        inter_token: the decode steps' latencies, every step of every timed run (ms);
            None when N is 1 (no decode step).
        tpot: time per output token, (E2E − TTFT) / (N − 1) per run (ms); None when N is 1.
        e2e: the whole generation, one sample per run (ms).
        kv_bytes_per_token: KV-cache bytes one token of one sequence adds (from the config).
        kv_cache_bytes: the cache at the end, from the config: per token × batch ×
            (depth + prompt + N − 1) (the last token is generated, never fed back).
        kv_cache_bytes_measured: the bytes the runtime's cache tensors held at the end.
        weights_bytes: bytes of the model's distinct parameter tensors.
        step_weights_bytes: the weight bytes a decode step reads (an input embedding
            not shared with the output head is looked up, not read whole).
        reference_backend: the backend whose greedy tokens these were checked against.
        diverges_at: the first generated step (0-based) where the tokens differ from the
            reference's, or None when they agree (or were not checked).
        bandwidth_bytes_per_s: this machine's measured memory bandwidth
            (`machine_ceilings`), the decode roofline's bound; None when not asked for.
        prefill_layers: the per-layer table of the prefill (`layer_table`'s columns,
            canonical module paths, leaves view, ``(unattributed)`` row: the median
            TTFT minus the layers' sum); None when not asked for or unavailable.
        decode_layers: the same for one decode step (against the median inter-token
            latency).
        notes: what is missing and why (e.g. per-layer tables on a runtime without them).
        tokenizer: the name of the tokenizer that encoded the prompt and decoded `text`
            (``"bytes"``, a folder's name), or None without one.
        prompt_text: the prompts as given, when they were text.
        text: the generated tokens decoded, one string per sequence; None without a
            tokenizer.
        compile_s: seconds the backend spent compiling (torch-compile), before and
            apart from every timed and warm-up generation; None for a runtime that
            does not compile as it generates.
        process_rss_added_bytes: the process's peak resident set over the warm-up and
            timed generations minus its resident set before the decoder was built (the
            runtime's own weights, cache, activations, workspaces); None when unmeasured.
        memory_rest_bytes: the memory split's rest: ``process_rss_added_bytes`` less
            the measured KV cache and the runtime's own copy of the weights (ORT,
            torch-compile; torch eager uses the model's): activations, logits,
            workspaces, allocator caches. None when unavailable (see next).
        memory_rest_unavailable: why ``memory_rest_bytes`` is None.
        layers_tpot: TPOT of the per-layer pass's own generations, instruments on
            (hooks, the Numba executor's step timing; on ORT the generations run plain
            and the blocks and the profiler run between them), one sample per
            instrumented generation (ms);
            None without per-layer tables or a decode step. Against ``tpot``: what
            the breakdown costs (`profiling_cost`).
        layers_method: how a decoder measured its per-layer tables, when it says
            (ORT: its blocks, the decode step whose inputs were kept, each phase's
            blocks' plain sum and per-block scale factors, the profiler's kernel sums
            as reported and net of its calibrated per-kernel cost, the pass's own
            seconds); None otherwise.
        machine_ceilings: this machine's measured ceilings (`machine_ceilings`, as a
            profile records them) with ``roofline=True``, so the phase tables' modules
            sit on the roofline (`workbench.viz.phase_roofline`); None otherwise.
    """

    model: str
    backend: str
    device: str
    batch_size: int
    prompt_length: int
    output_length: int
    depth: int
    tokens: tuple[tuple[int, ...], ...]
    ttft: Measurement
    inter_token: Measurement | None
    tpot: Measurement | None
    e2e: Measurement
    kv_bytes_per_token: int
    kv_cache_bytes: int
    kv_cache_bytes_measured: int
    weights_bytes: int
    step_weights_bytes: int
    reference_backend: str | None = None
    diverges_at: int | None = None
    bandwidth_bytes_per_s: float | None = None
    prefill_layers: Any = field(default=None, compare=False)
    decode_layers: Any = field(default=None, compare=False)
    notes: tuple[str, ...] = ()
    tokenizer: str | None = None
    prompt_text: tuple[str, ...] | None = None
    text: tuple[str, ...] | None = None
    compile_s: float | None = None
    process_rss_added_bytes: int | None = None
    memory_rest_bytes: int | None = None
    memory_rest_unavailable: str | None = None
    layers_tpot: Measurement | None = None
    layers_method: dict[str, Any] | None = field(default=None, compare=False)
    machine_ceilings: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def prefill_tokens_per_s(self) -> float:
        """Prompt tokens processed per second, at the median TTFT."""
        return self.ttft.throughput(self.batch_size * self.prompt_length)

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Tokens generated per second in the decode phase, at the median TPOT."""
        return None if self.tpot is None else self.tpot.throughput(self.batch_size)

    @property
    def decode_bytes_per_step(self) -> float | None:
        """Bytes a decode step reads, averaged over the steps: the weights once, and each
        sequence's K and V over the tokens it attends to (past and new: D + P + i + 1 at
        step i, D + P + N/2 on average). None without a decode step."""
        if self.output_length < 2:
            return None
        attended = self.depth + self.prompt_length + self.output_length / 2
        return self.step_weights_bytes + self.kv_bytes_per_token * self.batch_size * attended

    @property
    def decode_bytes_per_s(self) -> float | None:
        """The memory traffic decoding attains: bytes per step over the median TPOT."""
        per_step = self.decode_bytes_per_step
        if per_step is None or self.tpot is None or self.tpot.median <= 0:
            return None
        return per_step * 1000.0 / self.tpot.median

    @property
    def bandwidth_fraction(self) -> float | None:
        """Decode's attained memory traffic over the machine's measured bandwidth (the
        decode roofline); None without a decode step or a measured bandwidth."""
        attained = self.decode_bytes_per_s
        if attained is None or not self.bandwidth_bytes_per_s:
            return None
        return attained / self.bandwidth_bytes_per_s

    @property
    def profiling_cost(self) -> float | None:
        """TPOT with the per-layer breakdown on over the plain TPOT (medians); None
        without both."""
        if self.layers_tpot is None or self.tpot is None or self.tpot.median <= 0:
            return None
        return self.layers_tpot.median / self.tpot.median

    def layer_sum_ratio(self, phase: str) -> float | None:
        """The per-layer medians of ``phase`` (``"prefill"`` or ``"decode"``) added up,
        over that phase's plain median (TTFT, or the median inter-token latency); None
        without its table."""
        table = self.prefill_layers if phase == "prefill" else self.decode_layers
        timed = self.ttft if phase == "prefill" else self.inter_token
        if table is None or timed is None or timed.median <= 0:
            return None
        from workbench.profiling.table import UNATTRIBUTED

        layers = table.loc[table["layer"] != UNATTRIBUTED, "latency_ms"]
        return float(layers.sum()) / timed.median

    def token_times(self) -> np.ndarray:
        """Each timed run's per-token latencies (ms), shape (runs, N): column 0 is the
        TTFT (the prefill), column i the decode step that produced token i + 1."""
        runs = self.ttft.n
        first = np.asarray(self.ttft.samples_ms, dtype=float).reshape(runs, 1)
        if self.inter_token is None:
            return first
        steps = np.asarray(self.inter_token.samples_ms, dtype=float)
        return np.concatenate([first, steps.reshape(runs, self.output_length - 1)], axis=1)

    # ---- data ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data: every field, each Measurement with its raw samples."""

        def measured(m: Measurement | None) -> dict[str, Any] | None:
            return None if m is None else m.to_dict()

        return {
            "kind": "generation",
            "model": self.model,
            "backend": self.backend,
            "device": self.device,
            "batch_size": self.batch_size,
            "prompt_length": self.prompt_length,
            "output_length": self.output_length,
            "depth": self.depth,
            "tokens": [list(row) for row in self.tokens],
            "ttft": measured(self.ttft),
            "inter_token": measured(self.inter_token),
            "tpot": measured(self.tpot),
            "e2e": measured(self.e2e),
            "prefill_tokens_per_s": self.prefill_tokens_per_s,
            "decode_tokens_per_s": self.decode_tokens_per_s,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "kv_cache_bytes": self.kv_cache_bytes,
            "kv_cache_bytes_measured": self.kv_cache_bytes_measured,
            "weights_bytes": self.weights_bytes,
            "step_weights_bytes": self.step_weights_bytes,
            "decode_bytes_per_step": self.decode_bytes_per_step,
            "decode_bytes_per_s": self.decode_bytes_per_s,
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "bandwidth_fraction": self.bandwidth_fraction,
            "prefill_layers": _records(self.prefill_layers),
            "decode_layers": _records(self.decode_layers),
            "notes": list(self.notes),
            "reference_backend": self.reference_backend,
            "diverges_at": self.diverges_at,
            "tokenizer": self.tokenizer,
            "prompt_text": None if self.prompt_text is None else list(self.prompt_text),
            "text": None if self.text is None else list(self.text),
            "compile_s": self.compile_s,
            "process_rss_added_bytes": self.process_rss_added_bytes,
            "memory_rest_bytes": self.memory_rest_bytes,
            "memory_rest_unavailable": self.memory_rest_unavailable,
            "layers_tpot": measured(self.layers_tpot),
            "profiling_cost": self.profiling_cost,
            "layers_method": self.layers_method,
            "machine_ceilings": self.machine_ceilings,
        }

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The generation profile as JSON (`to_dict`), also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationProfile:
        """Rebuild from `to_dict` output (statistics are recomputed from the samples).

        Raises:
            InputError: the data is not a generation profile.
        """
        if not isinstance(data, dict) or data.get("kind") != "generation":
            raise InputError(
                'not a generation profile (no "kind": "generation"); '
                "give the JSON GenerationProfile.to_json wrote"
            )

        def measured(key: str) -> Measurement | None:
            value = data.get(key)
            return None if value is None else Measurement.from_dict(value)

        try:
            return cls(
                model=str(data["model"]),
                backend=str(data["backend"]),
                device=str(data["device"]),
                batch_size=int(data["batch_size"]),
                prompt_length=int(data["prompt_length"]),
                output_length=int(data["output_length"]),
                depth=int(data.get("depth", 0)),
                tokens=tuple(tuple(int(t) for t in row) for row in data["tokens"]),
                ttft=Measurement.from_dict(data["ttft"]),
                inter_token=measured("inter_token"),
                tpot=measured("tpot"),
                e2e=Measurement.from_dict(data["e2e"]),
                kv_bytes_per_token=int(data["kv_bytes_per_token"]),
                kv_cache_bytes=int(data["kv_cache_bytes"]),
                kv_cache_bytes_measured=int(data["kv_cache_bytes_measured"]),
                weights_bytes=int(data["weights_bytes"]),
                step_weights_bytes=int(data["step_weights_bytes"]),
                reference_backend=data.get("reference_backend"),
                diverges_at=data.get("diverges_at"),
                bandwidth_bytes_per_s=data.get("bandwidth_bytes_per_s"),
                prefill_layers=_frame(data.get("prefill_layers")),
                decode_layers=_frame(data.get("decode_layers")),
                notes=tuple(str(n) for n in data.get("notes", ())),
                tokenizer=data.get("tokenizer"),
                prompt_text=_strings(data.get("prompt_text")),
                text=_strings(data.get("text")),
                compile_s=data.get("compile_s"),
                process_rss_added_bytes=data.get("process_rss_added_bytes"),
                memory_rest_bytes=data.get("memory_rest_bytes"),
                memory_rest_unavailable=data.get("memory_rest_unavailable"),
                layers_tpot=measured("layers_tpot"),
                layers_method=data.get("layers_method"),
                machine_ceilings=data.get("machine_ceilings"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"a generation profile's JSON lacks or garbles {exc}") from exc

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> GenerationProfile:
        """Rebuild from `to_json` output, or from the file at a path holding it."""
        return cls.from_dict(load_json(text_or_path, "a generation profile"))

    # ---- display ---------------------------------------------------------------------
    def facts(self) -> list[tuple[str, str]]:
        """The key numbers, formatted: (name, text)."""
        from workbench.units import format_bytes, format_ms, format_number

        def ms(m: Measurement | None) -> str:
            return "unavailable (N = 1)" if m is None else format_ms(m.median)

        decode = self.decode_tokens_per_s
        facts = [
            ("TTFT", format_ms(self.ttft.median)),
            ("TPOT", ms(self.tpot)),
            (
                "ITL p90",
                "unavailable (N = 1)"
                if self.inter_token is None
                else format_ms(self.inter_token.p90),
            ),
            (
                "ITL p99",
                "unavailable (N = 1)"
                if self.inter_token is None
                else format_ms(self.inter_token.p99),
            ),
            ("E2E", format_ms(self.e2e.median)),
            ("prefill tok/s", format_number(self.prefill_tokens_per_s)),
            ("decode tok/s", "unavailable (N = 1)" if decode is None else format_number(decode)),
            ("KV / token", format_bytes(self.kv_bytes_per_token)),
            ("KV cache", format_bytes(self.kv_cache_bytes_measured)),
            ("weights", format_bytes(self.weights_bytes)),
            (
                "rest",
                f"unavailable ({self.memory_rest_unavailable or 'not measured'})"
                if self.memory_rest_bytes is None
                else format_bytes(self.memory_rest_bytes)
                + " (activations, workspaces: peak resident set less weights and cache)",
            ),
            ("decode bandwidth", self._bandwidth_text()),
        ]
        if self.layers_tpot is not None:
            facts.append(
                (
                    "TPOT, layers timed",
                    f"{format_ms(self.layers_tpot.median)} ({self.profiling_cost:.2f}x the "
                    "plain run: what the per-layer breakdown costs)",
                )
            )
        pass_s = (self.layers_method or {}).get("pass_s")
        if pass_s is not None:
            facts.append(
                (
                    "the per-layer pass",
                    f"{pass_s:.2f} s beside the generations (blocks and profiler on the "
                    "kept inputs, between generations)",
                )
            )
        sums = [(p, self.layer_sum_ratio(p)) for p in ("prefill", "decode")]
        if any(ratio is not None for _, ratio in sums):
            facts.append(("layers / phase", self._sums_text(sums)))
        if self.compile_s is not None:
            facts.append(("compile", f"{self.compile_s:.2f} s (before timing, in no number above)"))
        if self.prompt_text is not None:
            facts.append(("prompt", _shortened(self.prompt_text[0])))
        if self.text is not None:
            facts.append(("text", _shortened(self.text[0])))
        if self.reference_backend is not None:
            facts.append(
                (
                    f"tokens vs {self.reference_backend}",
                    "identical"
                    if self.diverges_at is None
                    else f"differ from step {self.diverges_at}",
                )
            )
        return facts

    def _sums_text(self, sums: list[tuple[str, float | None]]) -> str:
        """``"prefill 0.98, decode 1.01 of the plain phase times"``, and how a decoder
        that says so (`layers_method`) measured them: ORT's blocks timed plain, and its
        profiler's kernel sums as reported and net of its own cost."""
        text = ", ".join(f"{p} {r:.2f}" for p, r in sums if r is not None)
        text += " of the plain phase times"
        method = self.layers_method or {}
        kernels = []
        for phase, timed in (("prefill", self.ttft), ("decode", self.inter_token)):
            facts = method.get(phase) or {}
            if facts.get("raw_sum_ms") and timed is not None and timed.median > 0:
                kernels.append(
                    f"{phase} {facts['raw_sum_ms'] / timed.median:.2f} as reported, "
                    f"{facts['net_sum_ms'] / timed.median:.2f} net"
                )
        if method.get("method") == "blocks":
            scales = [
                f"{phase} {min(factors):.2f}-{max(factors):.2f}x"
                for phase in ("prefill", "decode")
                if (factors := list(((method.get(phase) or {}).get("block_scale") or {}).values()))
            ]
            text += (
                f"; {len(method.get('blocks', ()))} blocks timed plain, each split among its "
                "modules by the node profiler's kernels, so the rows are scaled per block "
                f"({', '.join(scales)}: a block's plain time over its kernels' net sum)"
            )
        if kernels:
            text += f"; the profiler's kernels: {', '.join(kernels)}"
        return text

    def _bandwidth_text(self) -> str:
        from workbench.units import format_bytes, format_share

        attained, fraction = self.decode_bytes_per_s, self.bandwidth_fraction
        if attained is None:
            return "unavailable (N = 1)"
        text = f"{format_bytes(attained)}/s"
        if fraction is None:
            return f"{text} (bound not measured: ask with roofline=True, --roofline)"
        return f"{text}, {format_share(fraction)} of {format_bytes(self.bandwidth_bytes_per_s)}/s"

    def title(self) -> str:
        depth = f", depth {self.depth}" if self.depth else ""
        return (
            f"{self.model} generation on {self.backend} {self.device}: batch {self.batch_size}, "
            f"prompt {self.prompt_length}, output {self.output_length}{depth} (greedy)"
        )

    def summary(self) -> str:
        """Plain text: the title, one line per number, and any noise verdict."""
        width = max(len(name) for name, _ in self.facts())
        lines = [self.title()] + [f"  {name:<{width}}  {text}" for name, text in self.facts()]
        for phase, table in (("prefill", self.prefill_layers), ("decode", self.decode_layers)):
            top = _top_layers(table)
            if top:
                lines.append(f"  {phase} top layers: {top}")
        noisy = [m.verdict for m in (self.ttft, self.inter_token) if m is not None and m.noisy]
        lines += [f"  {text}" for text in (*noisy, *self.notes)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        import html

        from workbench.profiling.formatting import summary_html
        from workbench.profiling.results import figure_html

        noisy = [m.verdict for m in (self.ttft, self.inter_token) if m is not None and m.noisy]
        body = "".join(f"<div><i>{html.escape(text)}</i></div>" for text in noisy)
        return summary_html(self.title(), self.facts(), figure_html(self) + body)


def _strings(values: Any) -> tuple[str, ...] | None:
    return None if values is None else tuple(str(v) for v in values)


def _shortened(text: str, limit: int = 60) -> str:
    """``repr`` of the text (newlines visible), cut to ``limit`` characters."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _records(table: Any) -> list[dict[str, Any]] | None:
    if table is None:
        return None
    return list(json.loads(table.to_json(orient="records")))


def _frame(records: Any) -> Any:
    if records is None:
        return None
    import pandas as pd

    return pd.DataFrame.from_records(records)


def _top_layers(table: Any, count: int = 3) -> str:
    """``"lm_head 41%, model.layers.0.mlp.up_proj 9%, …"``: the largest shares."""
    from workbench.units import format_share

    if table is None or not len(table):
        return ""
    rows = table.dropna(subset=["share"]).nlargest(count, "share")
    return ", ".join(f"{row.layer} {format_share(row.share)}" for row in rows.itertuples())


def prompt_ids(
    lm: CausalLM,
    prompt: Sequence[Sequence[int]] | np.ndarray | None,
    prompt_length: int,
    batch_size: int,
    seed: int,
) -> np.ndarray:
    """The prompt as a (batch, length) int64 array: the given token ids, or random ones.

    Raises:
        InputError: rows of different lengths (no padding is done), an empty prompt,
            or a token id outside the vocabulary.
    """
    if prompt is None:
        rng = np.random.default_rng(seed)
        return rng.integers(0, lm.vocab_size, (batch_size, prompt_length), dtype=np.int64)
    rows = [list(np.asarray(row).reshape(-1)) for row in prompt]
    lengths = sorted({len(row) for row in rows})
    if not rows or lengths == [0]:
        raise InputError("the prompt is empty; give at least one token id per sequence")
    if len(lengths) > 1:
        raise InputError(
            f"the prompts have different lengths {lengths} and padding is not supported; "
            "give prompts of one length"
        )
    ids = np.asarray(rows)
    if not np.issubdtype(ids.dtype, np.integer):
        raise InputError(f"a prompt is token ids (integers), got {ids.dtype}")
    if ids.min() < 0 or ids.max() >= lm.vocab_size:
        raise InputError(
            f"token ids must be in [0, {lm.vocab_size}) for {lm.name}'s vocabulary; "
            f"got {int(ids.min())} … {int(ids.max())}"
        )
    return ids.astype(np.int64)


def prompt_texts(prompt: Any) -> list[str] | None:
    """The prompt as a list of texts when it is text (a string or strings), else None."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    return None


def prompt_tokenizer(
    lm: CausalLM, model: Any, tokenizer: Any, texts: list[str] | None
) -> Tokenizer | None:
    """The tokenizer a generation uses: the one named, else the model folder's own.

    Raises:
        InputError: text is given and there is no tokenizer (token ids still work), or
            the tokenizer's vocabulary is larger than the model's.
        ModelLoadError: the named tokenizer folder holds none.
    """
    from workbench.loaders.tokenizers import check_vocabulary, load_tokenizer, model_tokenizer

    found = load_tokenizer(tokenizer) if tokenizer is not None else model_tokenizer(model)
    if found is None:
        if texts is not None:
            raise InputError(
                f"a text prompt needs a tokenizer and {lm.name} was not loaded from a folder "
                "with one; pass tokenizer= (a folder with tokenizer.json, or 'bytes' for a "
                "byte-level model), or give token ids"
            )
        return None
    check_vocabulary(found, lm.vocab_size, lm.name)
    return found


def encode_texts(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Each text's token ids.

    Raises:
        InputError: the texts encode to different lengths (no padding is done).
    """
    rows = [tokenizer.encode(text) for text in texts]
    lengths = sorted({len(row) for row in rows})
    if len(lengths) > 1:
        raise InputError(
            f"the prompts encode to different lengths {lengths} (tokens) and padding is not "
            "supported; give texts of one length in tokens"
        )
    return rows


def resident_bytes() -> int:
    """This process's resident set now (bytes)."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def reset_peak_resident() -> bool:
    """Reset the kernel's peak resident set of this process to its current one (Linux's
    ``/proc/self/clear_refs``); False where there is no such counter. Reading it later
    costs nothing while timing, unlike a sampling thread that would take the GIL."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def peak_resident_bytes() -> int | None:
    """The peak resident set since `reset_peak_resident` (``VmHWM``), or None."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def memory_rest(
    rss_before: int, peak: int | None, cache_bytes: int, copied_weights: int
) -> tuple[int | None, str | None]:
    """The memory split's rest: what generating added to the process beyond the KV
    cache and the runtime's own copy of the weights (the model's were resident before),
    as (bytes, None), or (None, why it is unavailable).

    Args:
        rss_before: the resident set before the decoder was built.
        peak: the peak resident set over the warm-up and timed generations (None: no
            peak counter here).
        cache_bytes: the KV cache the runtime held at the end.
        copied_weights: the weight bytes the runtime holds as its own copy (ORT's
            initializers, torch-compile's private module; 0 for torch eager).
    """
    from workbench.units import format_bytes

    if peak is None:
        return None, "no resettable peak resident set on this OS (Linux /proc/self/clear_refs)"
    rest = peak - rss_before - cache_bytes - copied_weights
    if rest < 0:
        held = "the cache and the runtime's own weights" if copied_weights else "the cache"
        return None, (
            f"the process grew by {format_bytes(max(0, peak - rss_before))}, less than "
            f"{held} it holds: it reused memory freed earlier; measure in a fresh process"
        )
    return rest, None


def token_steps(
    decoder: Decoder, ids: np.ndarray, output_length: int, context: np.ndarray | None = None
) -> Iterator[tuple[np.ndarray, float]]:
    """Greedy generation one token at a time: yields (tokens (batch,), ms) per step.

    The first yield is the prefill (its time is the TTFT), then one per decode step, so
    a caller can show each token as it arrives (the dashboard's Generate page) while the
    times stay exactly those `greedy` records. ``context`` (batch, depth), when given, is
    prefilled first, untimed; the prompt then runs on that cache.
    """
    clock = Timer.clock
    if context is not None:
        decoder.prefill(context)
    start = clock()
    token = decoder.prefill(ids) if context is None else decoder.extend(ids)
    yield token, (clock() - start) * 1000.0
    for _ in range(output_length - 1):
        start = clock()
        token = decoder.step(token)
        yield token, (clock() - start) * 1000.0


def greedy(
    decoder: Decoder, ids: np.ndarray, output_length: int, context: np.ndarray | None = None
) -> tuple[np.ndarray, list[float]]:
    """Generate ``output_length`` tokens; (tokens (batch, N), [TTFT, step, step, …] in ms).

    ``context`` (batch, depth), when given, is prefilled first, untimed; the prompt then
    runs on that cache.
    """
    steps = list(token_steps(decoder, ids, output_length, context))
    return np.stack([token for token, _ in steps], axis=1), [ms for _, ms in steps]


def first_divergence(tokens: np.ndarray, reference: np.ndarray) -> int | None:
    """The first step (column) where any sequence's token differs, or None."""
    differ = np.nonzero((tokens != reference).any(axis=0))[0]
    return int(differ[0]) if differ.size else None


def generate_profile(
    model: Any,
    *,
    backend: str = "torch",
    prompt: str | Sequence[str] | Sequence[Sequence[int]] | np.ndarray | None = None,
    prompt_length: int = 8,
    output_length: int = 16,
    batch_size: int = 1,
    runs: int = 3,
    warmup: int = 1,
    threads: int | None = None,
    check_tokens: bool = True,
    seed: int = 0,
    roofline: bool = False,
    depth: int = 0,
    layers: bool = False,
    tokenizer: Any = None,
) -> GenerationProfile:
    """Time a causal LM's greedy generation token by token on one backend (CPU).

    Args:
        model: a ``transformers`` causal LM object (e.g. ``LlamaForCausalLM``; not
            changed), a loaded ONNX generation model (`load_genai`, `load_optimum`), or
            a name or folder `language_model` loads (untrusted; load a folder yourself
            with ``trust=True`` to lift the trust rules).
        backend: a backend that generates (its ``decoder``; `generation_backends`):
            ``"torch"`` (eager), ``"onnxruntime"`` (exported with its KV cache), a plugin's.
        prompt: a text, or a list of texts (one sequence each; encoded by the
            tokenizer, all to one length), or token ids, one row per sequence, all of
            one length; None: random ids of ``prompt_length`` for ``batch_size``
            sequences (``seed``).
        prompt_length: tokens per random prompt (ignored when ``prompt`` is given).
        output_length: tokens to generate per sequence (N ≥ 1; TPOT needs N ≥ 2).
        batch_size: sequences per random prompt (ignored when ``prompt`` is given).
        runs: timed generations.
        warmup: untimed generations first.
        threads: intra-op threads of the backend's decoder (None: the backend's own
            default, e.g. torch's and ORT's count capped by the free CPUs).
        check_tokens: on a backend other than torch, generate once in torch and record
            the first step where the greedy tokens differ (``diverges_at``).
        seed: of the random prompt.
        roofline: also read this machine's measured memory bandwidth (`machine_ceilings`,
            cached; measured the first time, after the timed runs) for the decode
            roofline (``bandwidth_fraction``).
        depth: tokens (random, ``seed + 1``) prefilled untimed before the prompt, so TTFT
            and TPOT are measured at that context depth.
        layers: also time every layer, in ``runs`` further generations after the plain
            ones (so the instruments never touch the headline numbers), into per-layer
            tables of the prefill and of one decode step (on a decoder with
            ``phase_layer_timings``: torch's hooks, torch-compile's eager-equivalent
            ones, the Numba executor's step timing; on ORT, between plain generations,
            the decoder's blocks timed in plain sessions on the kept inputs of the
            prefill and of the middle decode step, each block's time split among its
            modules by the node profiler (``layers_method``); otherwise a note says so),
            and the TPOT of those generations (``layers_tpot``).
        tokenizer: encodes a text prompt and decodes the generated tokens into
            ``text``: a folder with tokenizer files, ``"bytes"`` (token id = byte value)
            or a `workbench.loaders.tokenizers.Tokenizer`; None: the tokenizer of the
            folder the model was loaded from, if it has one (token ids need none).

    Raises:
        UnsupportedModelError: ``model`` is not a causal LM, or the backend cannot
            generate (the message names those that can).
        InputError: prompt + output longer than the model's context, prompts of
            different lengths, token ids outside the vocabulary, a text prompt without
            a tokenizer, a tokenizer with a larger vocabulary than the model's.
        ModelLoadError: the ``tokenizer`` folder holds no tokenizer.
        ParameterError: output_length, prompt_length, batch_size, runs ≤ 0 (or not whole).
        UnknownBackendError: no backend of that name.
    """
    from workbench.loaders.causal_lm import causal_lm
    from workbench.profiling.measure import warm_up

    output_length = whole("output_length", output_length, minimum=1)
    runs = whole("runs", runs, minimum=1)
    warmup = whole("warmup", warmup, minimum=0)
    depth = whole("depth", depth, minimum=0)
    runtime = generative(get_backend(backend))
    if isinstance(model, (str, Path)):
        from workbench.loaders.language import language_model

        model = language_model(model, seed=seed)
    runs_on = getattr(model, "runtimes", None)  # a variant (`lm_quantize`) runs on these
    if runs_on is not None and backend not in runs_on:
        raise UnsupportedModelError(
            f"{model.variant_name} runs on {', '.join(runs_on)}, not {backend}; "
            f"give backend={runs_on[0]!r}"
        )
    lm = causal_lm(model)
    if prompt is None:
        prompt_length = whole("prompt_length", prompt_length, minimum=1)
        batch_size = check_batch_size(batch_size)
    texts = prompt_texts(prompt)
    tokens_of = prompt_tokenizer(lm, model, tokenizer, texts)
    given = cast("Sequence[Sequence[int]] | np.ndarray | None", prompt)
    if texts is not None and tokens_of is not None:  # prompt_tokenizer refuses text without
        given = encode_texts(tokens_of, texts)
    ids = prompt_ids(lm, given, prompt_length, batch_size, seed)
    batch_size, prompt_length = ids.shape
    # the last token is generated, never fed back: the positions used are D + P + N − 1
    if depth + prompt_length + output_length - 1 > lm.context:
        at = f"depth ({depth}) + " if depth else ""
        raise InputError(
            f"{at}prompt ({prompt_length}) + output ({output_length}) tokens exceed {lm.name}'s "
            f"context of {lm.context}; shorten the prompt or the output"
        )
    context = prompt_ids(lm, None, depth, batch_size, seed + 1) if depth else None
    rss_before = resident_bytes()
    decoder = runtime.decoder(model, "cpu", threads=threads)
    try:
        with settings_of(decoder):
            prepare = getattr(decoder, "prepare", None)
            if callable(prepare):  # e.g. torch-compile compiles every graph now, untimed
                prepare(ids, output_length, context)
            # the peak counts from here: the export's or compiler's transient is left out
            peak_reset = reset_peak_resident()
            warm_up(lambda: greedy(decoder, ids, output_length, context), warmup)
            timed: list[list[float]] = []
            # the measuring lifecycle's pieces: GC paused, the machine watched meanwhile
            with gc_paused(), Watch(threads) as watch:
                for _ in range(runs):
                    tokens, times = greedy(decoder, ids, output_length, context)
                    timed.append(times)
            cache_measured = decoder.cache_bytes()
            peak = peak_resident_bytes() if peak_reset else None
            compile_s = getattr(decoder, "compile_s", None)
            phase_timings = None
            per_layer = getattr(decoder, "phase_layer_timings", None)
            if layers and callable(per_layer):
                phase_timings = per_layer(ids, output_length, context, runs)
            layer_times = getattr(decoder, "layer_times", None) if phase_timings else None
            method = getattr(decoder, "layers_method", None) if phase_timings else None
    finally:
        decoder.close()
    contention = watch.contention
    label = f"{lm.name} {backend} cpu bs={batch_size}" + (f" depth={depth}" if depth else "")
    ttft = Measurement(tuple(t[0] for t in timed), (), f"{label} TTFT", contention)
    e2e = Measurement(tuple(sum(t) for t in timed), (), f"{label} E2E", contention)
    inter_token = tpot = None
    if output_length > 1:
        steps = tuple(step for t in timed for step in t[1:])
        inter_token = Measurement(steps, (), f"{label} inter-token", contention)
        per_run = tuple((sum(t) - t[0]) / (output_length - 1) for t in timed)
        tpot = Measurement(per_run, (), f"{label} TPOT", contention)
    reference = diverges = None
    # a variant's tokens are checked against its fp32 reference's, on torch too
    fp32 = getattr(model, "reference", model)
    unchecked = check_tokens and fp32 is None  # e.g. an onnxruntime-genai folder alone
    if check_tokens and fp32 is not None and (backend != REFERENCE_BACKEND or fp32 is not model):
        reference = REFERENCE_BACKEND
        checker = generative(get_backend(reference)).decoder(fp32)
        try:
            with settings_of(checker):
                expected, _ = greedy(checker, ids, output_length, context)
        finally:
            checker.close()
        diverges = first_divergence(tokens, expected)
    layers_tpot = None
    if layer_times and output_length > 1:
        layers_tpot = Measurement(
            tuple((sum(t) - t[0]) / (output_length - 1) for t in layer_times),
            (),
            f"{label} TPOT, layers timed",
            contention,
        )
    ceilings = None
    if roofline:
        from workbench.profiling.ceilings import machine_ceilings

        ceilings = machine_ceilings("cpu")
    prefill_layers = decode_layers = None
    notes: list[str] = []
    if phase_timings is not None:
        from workbench.profiling.generate_costs import costed_phases
        from workbench.profiling.table import layer_table

        prefill_layers = layer_table(phase_timings[0], ttft.median, "leaves")
        if inter_token is not None:
            decode_layers = layer_table(phase_timings[1], inter_token.median, "leaves")
        shape = (batch_size, prompt_length, depth, output_length)
        phases, cost_notes = costed_phases(model, (prefill_layers, decode_layers), shape, ceilings)
        prefill_layers, decode_layers = phases
        notes.extend(cost_notes)
    elif layers:
        notes.append(f"per-layer tables on {backend} are not done yet (its decoder has none)")
    if unchecked:
        hint = getattr(model, "reference_hint", "give its transformers model as reference=")
        notes.append(
            f"tokens not checked: {lm.name} has no torch reference to check them against ({hint})"
        )
    notes.extend(str(note) for note in getattr(decoder, "notes", ()))
    copied = lm.weights_bytes if getattr(decoder, "weights_copied", False) else 0
    rest, rest_why = memory_rest(rss_before, peak, cache_measured, copied)
    return GenerationProfile(
        model=lm.name,
        backend=backend,
        device="cpu",
        batch_size=batch_size,
        prompt_length=prompt_length,
        output_length=output_length,
        depth=depth,
        tokens=tuple(tuple(int(t) for t in row) for row in tokens),
        ttft=ttft,
        inter_token=inter_token,
        tpot=tpot,
        e2e=e2e,
        kv_bytes_per_token=lm.kv_bytes_per_token,
        kv_cache_bytes=lm.kv_bytes_per_token
        * batch_size
        * (depth + prompt_length + output_length - 1),
        kv_cache_bytes_measured=cache_measured,
        weights_bytes=lm.weights_bytes,
        step_weights_bytes=lm.step_weights_bytes,
        reference_backend=reference,
        diverges_at=diverges,
        bandwidth_bytes_per_s=None if ceilings is None else ceilings.bandwidth_bytes_per_s,
        prefill_layers=prefill_layers,
        decode_layers=decode_layers,
        notes=tuple(notes),
        tokenizer=None if tokens_of is None else tokens_of.name,
        prompt_text=None if texts is None else tuple(texts),
        text=None if tokens_of is None else tuple(tokens_of.decode(row) for row in tokens),
        compile_s=None if compile_s is None else float(compile_s),
        process_rss_added_bytes=None if peak is None else peak - rss_before,
        memory_rest_bytes=rest,
        memory_rest_unavailable=rest_why,
        layers_tpot=layers_tpot,
        layers_method=dict(method) if method else None,
        machine_ceilings=None if ceilings is None else ceilings.to_dict(),
    )


def depth_sweep(
    model: Any,
    depths: Sequence[int] | None = None,
    *,
    prompt_length: int = 8,
    output_length: int = 16,
    **options: Any,
) -> list[GenerationProfile]:
    """TTFT and TPOT at several context depths (as llama-bench ``-d``), one profile each.

    Args:
        model: a ``transformers`` causal LM.
        depths: tokens already cached before the prompt; None: 0 and every power of two
            up to the deepest the context allows (context − prompt − output + 1).
        prompt_length: tokens per prompt.
        output_length: tokens generated at each depth.
        options: passed to `generate_profile` (backend, batch_size, runs, ...).

    Example:
        >>> generation_table(depth_sweep(model, [0, 256, 1024], backend="onnxruntime"))
    """
    from workbench.loaders.causal_lm import causal_lm

    if depths is None:
        deepest = causal_lm(model).context - prompt_length - output_length + 1
        depths = [0] + [2**k for k in range(30) if 2**k <= deepest]
        if deepest > 0 and depths[-1] != deepest:
            depths.append(deepest)
    return [
        generate_profile(
            model, prompt_length=prompt_length, output_length=output_length, depth=d, **options
        )
        for d in depths
    ]


def generation_table(profiles: Sequence[GenerationProfile]) -> Any:
    """One row per generation profile (a pandas DataFrame): the numbers to compare
    across runtimes, batch sizes and depths, in milliseconds, tokens/s and bytes."""
    import pandas as pd

    def median(m: Measurement | None) -> float | None:
        return None if m is None else m.median

    return pd.DataFrame(
        [
            {
                "backend": g.backend,
                "batch_size": g.batch_size,
                "depth": g.depth,
                "prompt_length": g.prompt_length,
                "output_length": g.output_length,
                "ttft_ms": g.ttft.median,
                "tpot_ms": median(g.tpot),
                "itl_p99_ms": None if g.inter_token is None else g.inter_token.p99,
                "e2e_ms": g.e2e.median,
                "prefill_tokens_per_s": g.prefill_tokens_per_s,
                "decode_tokens_per_s": g.decode_tokens_per_s,
                "kv_cache_bytes": g.kv_cache_bytes,
                "bandwidth_fraction": g.bandwidth_fraction,
                "diverges_at": g.diverges_at,
                "noisy": g.ttft.noisy or (g.inter_token is not None and g.inter_token.noisy),
            }
            for g in profiles
        ]
    )
