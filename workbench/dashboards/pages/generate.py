"""Generate page: a language model generating token by token, then its generation profile.

*Generate* streams the greedy tokens of the prompt as the runtime produces them, each
with its latency (`token_steps`, the timing `generate_profile` records), then profiles
the same generation (`wb.generate_profile`: TTFT, TPOT, E2E, tokens/s, KV cache, the
per-layer tables of each phase) and draws it with `workbench.viz`'s generation figures.
Its trade-off section (`LmTradeoffSection`) measures quantized variants of the model on
each runtime (`wb.lm_sweep`, stored) and says why each is not faster.
Everything runs on the page's worker thread (`Jobs`), so the page stays live.
"""

from __future__ import annotations

import dataclasses
import html
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

import workbench as wb
from workbench import viz
from workbench.argtypes import whole
from workbench.dashboards.actions import measuring
from workbench.dashboards.jobs import Dispatch, Jobs
from workbench.dashboards.pages.common import TableSlot, figure_pane
from workbench.dashboards.pages.lm_tradeoff import LmTradeoffSection
from workbench.errors import InputError, WorkbenchError
from workbench.loaders.language import RANDOM_LLAMAS, TRAINED_LLAMAS
from workbench.loaders.tokenizers import Tokenizer
from workbench.profiling.generate import GenerationProfile
from workbench.progress import CancelToken, ProgressCallback
from workbench.store import Store

#: the per-layer table columns shown (the others stay in the data)
LAYER_COLUMNS = [
    "layer", "op_type", "latency_ms", "latency_p90_ms", "share", "flops", "bytes",
    "roof_fraction", "samples",
]  # fmt: skip
#: generation profiles a page keeps for its runs table and roofline
MAX_HISTORY = 20
#: the stream is redrawn at most this often (s): a fast runtime yields a token in
#: well under a millisecond, faster than a browser can take messages
STREAM_INTERVAL_S = 0.05
#: what a stream was started with: prompt, output length, tokenizer
Streaming = tuple[str, int, Tokenizer | None]
#: the first prompt of a model with a tokenizer, and of one that takes token ids
TEXT_PROMPT = "    def __init__(self"
IDS_PROMPT = "1 2 3 4 5 6 7 8"

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


@dataclass(frozen=True)
class LanguageChoice:
    """A language model the page offers.

    Attributes:
        name: what `workbench.loaders.language.language_model` loads.
        trained: trained weights (its card's accuracy is shown); False: random weights,
            for speed only, never for accuracy.
        tokenizer: the sample's own (`folder_tokenizer`: the prompt is text), or None
            (the prompt is token ids).
        card: the sample's ``card.json`` (empty for a random config).
    """

    name: str
    trained: bool
    tokenizer: Tokenizer | None
    card: dict[str, Any]

    def describe(self) -> str:
        """One line: what the model is and what its numbers are good for."""
        if not self.trained:
            return (
                f"{self.name}: random weights, for speed only (no accuracy is shown); "
                "the prompt is token ids"
            )
        text = f"{self.name}: {self.card.get('description', 'a trained sample')}"
        if "held_out_perplexity" in self.card:
            text += (
                f" Held-out perplexity {self.card['held_out_perplexity']:.3g} per token "
                f"(chance {self.card.get('uniform_perplexity', '?')}), from its card."
            )
        if self.tokenizer is not None:
            text += f" The prompt is text (tokenizer: {self.tokenizer.name})."
        return text


def language_choices() -> dict[str, LanguageChoice]:
    """The trained samples, then the random configs, by name."""
    from workbench.loaders.samples import samples_dir
    from workbench.loaders.tokenizers import folder_tokenizer

    choices = {}
    for name in TRAINED_LLAMAS:
        card_path = samples_dir() / name / "card.json"
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        choices[name] = LanguageChoice(name, True, folder_tokenizer(samples_dir() / name), card)
    for name in RANDOM_LLAMAS:
        choices[name] = LanguageChoice(name, False, None, {})
    return choices


def load_language_model(name: str) -> Any:
    """A language model by name, loaded once per process (generation never changes it)."""
    from workbench.loaders.language import language_model

    with _models_lock:
        if name not in _models:
            _models[name] = language_model(name)
        return _models[name]


def prompt_tokens(prompt: str, tokenizer: Tokenizer | None) -> list[int]:
    """The prompt's token ids: the tokenizer's encoding of the text, or, for a model
    without one, the integers written in it (separated by spaces or commas).

    Raises:
        InputError: a model without a tokenizer given something other than integers.
    """
    if tokenizer is not None:
        return tokenizer.encode(prompt)
    return integers(prompt, "this model has no tokenizer: give the prompt as token ids", IDS_PROMPT)


def integers(text: str, what: str, example: str) -> list[int]:
    """The integers written in ``text``, separated by spaces or commas.

    Raises:
        InputError: something else is written; ``what`` and ``example`` say what to give.
    """
    try:
        return [int(word) for word in text.replace(",", " ").split()]
    except ValueError:
        raise InputError(f"{what}, separated by spaces or commas (e.g. {example!r})") from None


def token_text(token: int, tokenizer: Tokenizer | None) -> str:
    """How one token reads on its own: its id without a tokenizer; else its text, with
    spaces as ``␣`` (a blank chip would not show) and what does not print escaped (a
    newline as ``\\n``, a byte that is part of a UTF-8 character as ``\\xc3``)."""
    from workbench.loaders.tokenizers import ByteTokenizer

    if tokenizer is None:
        return str(token)
    if isinstance(tokenizer, ByteTokenizer):
        piece = repr(bytes([token]))[2:-1]  # one byte may be part of a character
    else:
        piece = repr(tokenizer.decode([token]))[1:-1]
    return piece.replace(" ", "␣")


def stream_tokens(
    model: Any,
    backend: str,
    ids: list[int],
    output_length: int,
    depth: int,
    on_token: Callable[[int, float], None],
    cancel: CancelToken | None = None,
) -> list[int]:
    """Generate greedily, calling ``on_token(token, ms)`` as each token arrives.

    The timing and the context are those of `wb.generate_profile` (`token_steps`; the
    ``depth`` tokens are the same random ones, prefilled untimed), so its tokens equal
    the profile's. A fresh decoder with no warm-up: its first calls are cold.

    Raises:
        InputError: an empty prompt, token ids outside the vocabulary, or prompt plus
            output longer than the model's context.
        ParameterError: output_length ≤ 0 or depth < 0.
    """
    from workbench.backends.base import generative, get_backend, settings_of
    from workbench.loaders.causal_lm import causal_lm
    from workbench.profiling.generate import prompt_ids, token_steps

    output_length = whole("output_length", output_length, minimum=1)
    depth = whole("depth", depth, minimum=0)
    runtime = generative(get_backend(backend))
    lm = causal_lm(model)
    prompt = prompt_ids(lm, [ids], len(ids), 1, 0)
    # as generate_profile checks it: the last token is generated, never fed back
    if depth + len(ids) + output_length - 1 > lm.context:
        at = f"depth ({depth}) + " if depth else ""
        raise InputError(
            f"{at}prompt ({len(ids)}) + output ({output_length}) tokens exceed {lm.name}'s "
            f"context of {lm.context}; shorten the prompt or the output"
        )
    context = prompt_ids(lm, None, depth, 1, 1) if depth else None  # generate_profile's seed + 1
    decoder = runtime.decoder(model, "cpu")
    tokens: list[int] = []
    try:
        with settings_of(decoder):
            prepare = getattr(decoder, "prepare", None)
            if callable(prepare):  # as generate_profile: e.g. torch-compile compiles now
                prepare(prompt, output_length, context)
            for token, ms in token_steps(decoder, prompt, output_length, context):
                tokens.append(int(token[0]))
                on_token(tokens[-1], ms)
                if cancel is not None:
                    cancel.check()
    finally:
        decoder.close()
    return tokens


def stream_html(
    tokens: list[tuple[int, float]],
    prompt: str,
    output_length: int,
    tokenizer: Tokenizer | None,
) -> str:
    """The prompt, then each generated token as a chip with its latency under it."""
    if not tokens:
        return "<p><i>Press Generate: the tokens appear here as they are generated.</i></p>"
    chips = "".join(
        f"<span class='wb-tok{' wb-first' if i == 0 else ''}' "
        f"title='token {i + 1}: {ms:.4g} ms{' (prefill: TTFT)' if i == 0 else ''}'>"
        f"<b>{html.escape(token_text(t, tokenizer))}</b><small>{ms:.3g}</small></span>"
        for i, (t, ms) in enumerate(tokens)
    )
    times = [ms for _, ms in tokens]
    status = f"{len(tokens)}/{output_length} tokens · TTFT {times[0]:.4g} ms"
    if len(times) > 1:
        status += f" · median step {float(np.median(times[1:])):.4g} ms"
    text = ""
    if tokenizer is not None:
        generated = tokenizer.decode([t for t, _ in tokens])
        text = (
            f"<pre class='wb-gen'><span class='wb-prompt'>{html.escape(prompt)}</span>"
            f"{html.escape(generated)}</pre>"
        )
    return (
        f"{_CSS}<div class='wb-title'>Streamed (ms under each token; the first is the "
        f"prefill, cold)</div><div class='wb-stream'>{chips}</div>"
        f"<div class='wb-note'>{status}</div>{text}"
    )


def phase_split(profile: GenerationProfile) -> str:
    """One line: how the median generation splits into prefill and decode."""
    e2e, ttft = profile.e2e.median, profile.ttft.median
    decode = max(e2e - ttft, 0.0)
    share = (lambda ms: f"{ms / e2e:.0%}") if e2e > 0 else (lambda ms: "—")
    return (
        f"<p class='wb-note'><b>Phase split</b> of the median generation ({e2e:.4g} ms): "
        f"prefill {ttft:.4g} ms ({share(ttft)}), decode {decode:.4g} ms ({share(decode)}) "
        f"over {profile.output_length - 1} steps.</p>"
    )


def named(profile: GenerationProfile, name: str) -> GenerationProfile:
    """The profile under the name it was picked by (its class, ``LlamaForCausalLM``, is
    the same for every model offered), so titles and labels tell the models apart."""
    return dataclasses.replace(profile, model=name)


#: the runs table's measured columns (`generation_table`'s), after a text label
RUN_COLUMNS = [
    "ttft_ms",
    "tpot_ms",
    "itl_p99_ms",
    "e2e_ms",
    "decode_tokens_per_s",
    "kv_cache_bytes",
    "bandwidth_fraction",
    "diverges_at",
    "noisy",
]


def runs_rows(profiles: list[GenerationProfile]) -> pd.DataFrame:
    """One row per generation: what ran, as text (so a noisy row's ``~`` marks only the
    measured numbers), then `generation_table`'s measurements."""
    from workbench.profiling.generate import generation_table

    if not profiles:
        return pd.DataFrame(columns=["run", *RUN_COLUMNS])
    table = generation_table(profiles)[RUN_COLUMNS]
    runs = [
        f"{g.model} on {g.backend}, batch {g.batch_size}, depth {g.depth}, "
        f"{g.prompt_length} + {g.output_length} tokens"
        for g in profiles
    ]
    return table.assign(run=runs)[["run", *RUN_COLUMNS]]


def layer_rows(table: Any) -> pd.DataFrame:
    """A phase's per-layer table, slowest first, in the shown columns."""
    if table is None:
        return pd.DataFrame(columns=LAYER_COLUMNS)
    columns = [c for c in LAYER_COLUMNS if c in table.columns]
    return table.sort_values("latency_ms", ascending=False)[columns].reset_index(drop=True)


class GeneratePage(Viewer):
    """Generate text with a language model on one runtime, streamed, then profiled.

    Example:
        >>> page = GeneratePage(); page.prompt = "import os\\n"; page.generate()
        >>> page.jobs.wait(); page.profile.tpot.median, page.streamed
    """

    model_name = param.Selector(default=None, objects=[], doc="the language model")
    backend = param.Selector(default="torch", objects=["torch"], doc="the runtime generating")
    prompt = param.String(default=TEXT_PROMPT, doc="text (byte-level model) or token ids")
    output_length = param.Integer(default=32, doc="tokens to generate (N ≥ 1)")
    depth = param.Integer(default=0, doc="tokens already in the cache before the prompt")
    runs = param.Integer(default=3, bounds=(1, 20), doc="timed generations of the profile")
    layers = param.Boolean(default=True, doc="per-layer tables of each phase")
    roofline = param.Boolean(default=True, doc="decode against the measured bandwidth")
    streamed = param.List(default=[], doc="(token, ms) of the streamed generation")
    profile = param.ClassSelector(class_=GenerationProfile, default=None, doc="last profile")
    history = param.List(default=[], doc="this page's generation profiles")
    sweep = param.List(default=[], doc="the last depth sweep's profiles")
    sweep_depths = param.String(
        default="", doc="depths to sweep, e.g. '0 32 64' ('': 0 and powers of two to the context)"
    )

    def __init__(
        self,
        jobs: Jobs | None = None,
        dispatch: Dispatch | None = None,
        store: Any = None,
        **params: Any,
    ) -> None:
        """Args: ``jobs`` the page's worker, ``dispatch`` runs a callback on the session's
        thread, ``store`` keeps the trade-off sweeps (None: the default results store)
        and, when it is a `Store`, every generation profile the page measures (the Runs
        page lists them)."""
        from workbench.backends.base import generation_backends

        super().__init__(**params)
        self.jobs = jobs or Jobs()
        self._dispatch: Dispatch = dispatch or (lambda callback: callback())
        self._run = 0  # a stream's tokens are shown only while it is the latest
        self._store = store if isinstance(store, Store) else None
        # what the stream shows: (prompt, output length, byte-level) of its run
        self._streaming: Streaming = (self.prompt, self.output_length, None)
        self.choices = language_choices()
        self.param.model_name.objects = list(self.choices)
        self.model_name = self.model_name or next(iter(self.choices))
        self.param.backend.objects = generation_backends() or ["torch"]
        self.card = pn.pane.Markdown(sizing_mode="stretch_width")
        self.stream = pn.pane.HTML(sizing_mode="stretch_width", css_classes=["wb-volatile"])
        self.summary = pn.pane.HTML(sizing_mode="stretch_width", css_classes=["wb-volatile"])
        self.tokens_figure = figure_pane(viz.empty_figure("Generate to see each token's time."))
        self.layers_figure = figure_pane(viz.empty_figure("Generate to see each phase's layers."))
        self.depth_figure = figure_pane(viz.empty_figure("Sweep the depth to draw TTFT and TPOT."))
        self.roofline_figure = figure_pane(viz.empty_figure("Generate to see decode's roofline."))
        self.prefill_roofline = figure_pane(
            viz.empty_figure("Generate with layers and roofline to place the prefill's layers.")
        )
        self.prefill_slot = TableSlot(layer_rows(None), height=300)
        self.decode_slot = TableSlot(layer_rows(None), height=300)
        self.runs_slot = TableSlot(runs_rows([]), height=200)
        self.tradeoff_section = LmTradeoffSection(
            self, self.jobs, store, load_language_model, prompt_tokens
        )
        self.param.watch(self._model_changed, "model_name")
        self.param.watch(self._show_stream, "streamed")
        self.param.watch(self._show_profile, "profile")
        self.param.watch(self._show_history, "history")
        self.param.watch(self._show_sweep, "sweep")
        self.jobs.param.watch(self._waiting, "running")
        self._model_changed()
        self._show_stream()

    @property
    def choice(self) -> LanguageChoice:
        """The picked model's description."""
        return self.choices[self.model_name]  # type: ignore[index]

    def generate(self, *_: Any) -> None:
        """Stream the prompt's greedy tokens, then profile the generation (worker thread)."""
        name, backend, prompt, choice = self.model_name, self.backend, self.prompt, self.choice
        output_length, depth, runs = self.output_length, self.depth, self.runs
        layers, roofline = self.layers, self.roofline
        self._run += 1
        run = self._run
        started = (prompt, output_length, choice.tokenizer)

        def work(progress: ProgressCallback, cancel: CancelToken) -> GenerationProfile:
            ids = prompt_tokens(prompt, choice.tokenizer)
            progress(0.0, f"loading {name}")
            model = load_language_model(name)
            shown: list[tuple[int, float]] = []
            last = [0.0]

            def arrived(token: int, ms: float) -> None:
                shown.append((token, ms))
                now = time.monotonic()
                if now - last[0] >= STREAM_INTERVAL_S or len(shown) == output_length:
                    last[0] = now
                    rows = list(shown)
                    self._dispatch(lambda: self._streamed(run, started, rows))
                    progress(0.5 * len(rows) / output_length, f"token {len(rows)}")

            with measuring(cancel, progress):
                stream_tokens(model, backend, ids, output_length, depth, arrived, cancel)
                progress(0.5, f"profiling ({runs} timed generations)")
                profile = wb.generate_profile(
                    model,
                    backend=backend,
                    # text when there is a tokenizer, so the profile keeps it and the output's
                    prompt=[ids] if choice.tokenizer is None else prompt,
                    tokenizer=choice.tokenizer,
                    output_length=output_length,
                    depth=depth,
                    runs=runs,
                    layers=layers,
                    roofline=roofline,
                )
            return named(profile, name)

        self.jobs.submit(f"generating with {name} on {backend}", work, self._profiled)

    def sweep_depth(self, *_: Any) -> None:
        """TTFT and TPOT at depths from 0 up to the context (`depth_sweep`, worker thread)."""
        from workbench.profiling.generate import depth_sweep

        name, backend, prompt, choice = self.model_name, self.backend, self.prompt, self.choice
        output_length, runs, roofline = self.output_length, self.runs, self.roofline
        written = self.sweep_depths

        def work(progress: ProgressCallback, cancel: CancelToken) -> list[GenerationProfile]:
            length = len(prompt_tokens(prompt, choice.tokenizer))
            depths = integers(written, "sweep depths are token counts", "0 32 64") or None
            model = load_language_model(name)
            with measuring(cancel, progress):
                found = depth_sweep(
                    model,
                    depths,
                    prompt_length=length,
                    output_length=output_length,
                    backend=backend,
                    runs=runs,
                    roofline=roofline,
                    check_tokens=False,  # random prompts: the Generate run checks tokens
                )
            return [named(g, name) for g in found]

        self.jobs.submit(
            f"depth sweep of {name} on {backend}", work, lambda found: setattr(self, "sweep", found)
        )

    # ---- showing ------------------------------------------------------------------------
    def _streamed(self, run: int, started: Streaming, rows: list[Any]) -> None:
        if run == self._run:
            self._streaming = started
            self.streamed = rows

    def _profiled(self, profile: GenerationProfile) -> None:
        self.profile = profile
        self.history = [*self.history, profile][-MAX_HISTORY:]
        if self._store is not None:
            try:
                self._store.save_generation(profile)
            except WorkbenchError as exc:  # the profile stays shown; only saving failed
                self.jobs.message = f"not saved to the results store: {exc}"

    def show_generations(self, profiles: list[GenerationProfile]) -> None:
        """Show generation profiles measured before (the Runs page's, from the store):
        the last as this page's profile, all of them in its runs table and roofline."""
        if not profiles:
            return
        self.history = [*self.history, *profiles][-MAX_HISTORY:]
        self.profile = profiles[-1]

    def _model_changed(self, *_: Any) -> None:
        choice = self.choice
        self.card.object = html.escape(choice.describe())
        try:
            prompt_tokens(self.prompt, choice.tokenizer)
        except InputError:  # text left from a byte-level model: offer ids instead
            self.prompt = IDS_PROMPT
        if choice.tokenizer is not None and self.prompt == IDS_PROMPT:
            self.prompt = TEXT_PROMPT

    def _show_stream(self, *_: Any) -> None:
        self.stream.object = stream_html(self.streamed, *self._streaming)

    def _show_profile(self, *_: Any) -> None:
        g = self.profile
        if g is None:
            return
        self.summary.object = g._repr_html_() + phase_split(g)
        self.tokens_figure.object = viz.token_latency(g)
        self.layers_figure.object = viz.phase_layer_latency(g)
        self.prefill_roofline.object = viz.phase_roofline(g, "prefill")
        self.prefill_slot.update(layer_rows(g.prefill_layers))
        self.decode_slot.update(layer_rows(g.decode_layers))

    def _show_history(self, *_: Any) -> None:
        self.runs_slot.update(runs_rows(self.history))
        self.roofline_figure.object = viz.decode_roofline(self.history)

    def _show_sweep(self, *_: Any) -> None:
        self.depth_figure.object = viz.context_depth(self.sweep)

    def _waiting(self, *_: Any) -> None:
        for pane in (self.tokens_figure, self.layers_figure, self.tradeoff_section.figure):
            pane.loading = self.jobs.running

    def __panel__(self) -> pn.viewable.Viewable:
        run = pn.widgets.Button(label="Generate", color="primary", width=110)
        run.on_click(self.generate)
        sweep = pn.widgets.Button(label="Sweep depth", width=110)
        sweep.on_click(self.sweep_depth)
        cancel = pn.widgets.Button(label="Cancel", color="warning", width=90)
        cancel.on_click(lambda _: self.jobs.cancel())
        controls = pn.FlexBox(
            pn.widgets.Select.from_param(self.param.model_name, label="Model", width=150),
            pn.widgets.Select.from_param(self.param.backend, label="Backend", width=130),
            pn.widgets.IntInput.from_param(self.param.output_length, label="Output", width=90),
            pn.widgets.IntInput.from_param(self.param.depth, label="Depth", width=90),
            pn.widgets.IntInput.from_param(self.param.runs, label="Timed runs", width=90),
            pn.widgets.TextInput.from_param(
                self.param.sweep_depths, label="Sweep depths", placeholder="auto", width=130
            ),
            pn.widgets.Checkbox.from_param(self.param.layers, label="per layer"),
            pn.widgets.Checkbox.from_param(self.param.roofline, label="roofline"),
        )
        error = pn.pane.Alert(
            self.jobs.param.error,
            alert_type="danger",
            visible=self.jobs.param.error.rx.bool(),
        )

        def heading(text: str) -> pn.pane.Markdown:
            return pn.pane.Markdown(f"#### {text}", margin=(10, 10, 0, 10))

        return pn.Column(
            self.card,
            controls,
            pn.widgets.TextAreaInput.from_param(
                self.param.prompt, label="Prompt", height=70, sizing_mode="stretch_width"
            ),
            pn.Row(
                run,
                sweep,
                cancel,
                pn.pane.Markdown(self.jobs.param.message, css_classes=["wb-volatile"]),
            ),
            error,
            self.stream,
            self.summary,
            self.tokens_figure,
            self.layers_figure,
            heading("Prefill: per layer (slowest first)"),
            self.prefill_slot.layout,
            self.prefill_roofline,
            heading("One decode step: per layer (slowest first)"),
            self.decode_slot.layout,
            heading("This page's generations"),
            self.runs_slot.layout,
            self.roofline_figure,
            self.depth_figure,
            self.tradeoff_section,
            sizing_mode="stretch_width",
        )


_CSS = """<style>
.wb-stream{display:flex;flex-wrap:wrap;gap:3px;margin:4px 0}
.wb-tok{display:inline-flex;flex-direction:column;align-items:center;border:1px solid #ccd;
border-radius:4px;padding:1px 4px;font-family:monospace;min-width:18px}
.wb-tok small{font-size:9px;color:#666}.wb-first{border-color:#F58518;background:#FEF3E8}
.wb-gen{white-space:pre-wrap;background:#f7f7f7;padding:6px;border-radius:4px}
.wb-prompt{color:#888}.wb-title{font-weight:600}.wb-note{font-size:12px;color:#555}
</style>"""
