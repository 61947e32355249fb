"""The Generate page: tokens streamed as they arrive, then the generation profile.

Driven through its parameters (no browser) on the trained byte-level sample and the
random llama-tiny config; one Chromium run (marked ``browser``) opens the page in the
served dashboard, generates and saves a screenshot under ``test-artifacts/``.
"""

from __future__ import annotations

import html
import math

import pytest

from tests.dashboards.test_dashboard_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    browser,
    open_page,
    server,
)
from workbench.dashboards.pages.generate import (
    IDS_PROMPT,
    GeneratePage,
    language_choices,
    prompt_tokens,
    token_text,
)
from workbench.errors import InputError

pytest.importorskip("transformers")


@pytest.fixture
def page():
    built = GeneratePage(output_length=6, runs=1, roofline=False)
    yield built
    built.jobs.close()


def test_tokens_stream_in_order_then_the_profile_shows_the_same_tokens(page):
    updates: list[int] = []
    page.param.watch(lambda e: updates.append(len(e.new)), "streamed")
    page.param.update(prompt="import os\n", depth=4)  # the stream shares the profile's context
    page.generate()
    page.jobs.wait()
    assert page.jobs.error == ""
    g = page.profile
    streamed = [token for token, _ in page.streamed]
    assert updates == sorted(updates) and updates[-1] == 6  # shown as they came, in order
    assert all(ms > 0 for _, ms in page.streamed)
    assert (g.backend, g.prompt_length, g.output_length, g.depth) == ("torch", 10, 6, 4)
    assert tuple(streamed) == g.tokens[0]  # greedy: the stream is the profiled generation
    assert g.prompt_text == ("import os\n",) and g.text == (
        bytes(streamed).decode("utf-8", "replace"),
    )
    assert html.escape(bytes(streamed).decode("utf-8", errors="replace")) in page.stream.object
    assert "Phase split" in page.summary.object and "TPOT" in page.summary.object
    prefill, decode = page.prefill_slot.table.value, page.decode_slot.table.value
    assert prefill["layer"].str.startswith("model.layers.0").any() and len(decode) > 3
    assert page.tokens_figure.object.layout.title.text.startswith("Latency per token")
    assert page.layers_figure.object.layout.title.text.startswith("Per-layer latency by phase")
    assert prefill["flops"].notna().any() and "roof_fraction" in prefill
    roof = page.prefill_roofline.object
    assert roof.layout.title.text.startswith("Roofline of the prefill") and len(roof.data) > 2
    assert list(page.runs_slot.table.value["run"]) == [
        "llama-stdlib on torch, batch 1, depth 4, 10 + 6 tokens"
    ]


def test_onnxruntime_streams_the_tokens_torch_generates(page):
    page.backend = "onnxruntime"
    page.generate()
    page.jobs.wait()
    g = page.profile
    assert page.jobs.error == "" and g.reference_backend == "torch"
    assert g.diverges_at is None and tuple(t for t, _ in page.streamed) == g.tokens[0]
    # ORT's kernels sit on the module paths torch's tables use
    shown = page.prefill_slot.table.value
    assert "lm_head" in set(shown["layer"]) and len(page.decode_slot.table.value) > 3


def test_cancel_stops_the_stream_at_the_next_token_and_shows_no_profile(page):
    page.output_length = 20
    page.param.watch(lambda e: page.jobs.cancel(), "streamed")  # at the first token shown
    page.generate()
    page.jobs.wait()
    assert 1 <= len(page.streamed) < 20 and page.profile is None
    assert page.jobs.message.endswith("cancelled") and page.jobs.error == ""


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"prompt": "x" * 130}, "exceed LlamaForCausalLM's context of 128"),
        ({"output_length": 0}, "output_length must be at least 1, got 0"),
        ({"prompt": "", "output_length": 4}, "the prompt is empty"),
        ({"model_name": "llama-tiny", "prompt": "hello"}, "give the prompt as token ids"),
    ],
    ids=["prompt-past-context", "no-output", "empty-prompt", "text-without-tokenizer"],
)
def test_bad_input_is_one_line_and_shows_nothing_half_done(page, settings, expected):
    for name, value in settings.items():  # in order: a model change offers its own prompt
        setattr(page, name, value)
    page.generate()
    page.jobs.wait()
    assert expected in page.jobs.error and "\n" not in page.jobs.error
    assert page.profile is None and page.streamed == []  # nothing half-shown


def test_random_weights_never_show_accuracy_and_take_token_ids():
    choices = language_choices()
    trained, tiny = choices["llama-stdlib"], choices["llama-tiny"]
    assert trained.tokenizer is not None and "perplexity" in trained.describe()
    assert not tiny.trained and tiny.tokenizer is None and "perplexity" not in tiny.describe()
    assert prompt_tokens("é!", trained.tokenizer) == [0xC3, 0xA9, 0x21]  # its UTF-8 bytes
    assert prompt_tokens("5, 7 9", None) == [5, 7, 9]
    with pytest.raises(InputError, match="token ids"):
        prompt_tokens("5 x", None)
    assert [token_text(t, trained.tokenizer) for t in (10, 32, 97, 0xC3)] == [
        "\\n",
        "␣",
        "a",
        "\\xc3",
    ]
    assert token_text(10, None) == "10"
    page = GeneratePage()
    page.model_name = "llama-tiny"  # the text prompt makes no ids: ids are offered
    assert page.prompt == IDS_PROMPT and "random weights" in page.card.object
    page.model_name = "llama-stdlib"
    assert not page.prompt[0].isdigit()
    page.jobs.close()


def test_depth_sweep_draws_ttft_and_tpot_per_depth(page):
    page.param.update(model_name="llama-tiny", output_length=3, sweep_depths="0, 100 50")
    page.sweep_depth()
    page.jobs.wait()
    assert page.jobs.error == ""
    depths = [g.depth for g in page.sweep]
    assert depths == [0, 100, 50]
    traces = {t.name: list(t.x) for t in page.depth_figure.object.data}
    assert traces["torch TTFT"] == traces["torch TPOT"] == [0, 50, 100]  # along the depth
    page.param.update(sweep_depths="0 300")  # past llama-tiny's context of 256
    page.sweep_depth()
    page.jobs.wait()
    assert "exceed" in page.jobs.error and [g.depth for g in page.sweep] == depths


def test_the_tradeoff_section_measures_variants_into_the_store_and_says_why(tmp_path):
    from workbench.optimize.lm_quantize import LM_METHODS
    from workbench.store import Store

    store = Store(tmp_path / "runs.sqlite")
    page = GeneratePage(store=store, output_length=3, runs=1, layers=False, roofline=False)
    try:
        page.model_name = "llama-tiny"  # random weights: speed only
        section = page.tradeoff_section
        assert "baseline" in section.param.variants.objects
        section.param.update(variants=["baseline", "bf16"], backends=["torch"])
        section.measure()
        page.jobs.wait()
        assert page.jobs.error == ""
        shown = section.rows_slot.table.value.set_index("variant")
        why_not = LM_METHODS["bf16"].unavailable()
        if why_not is not None:  # this CPU would emulate bf16: the row says so, no number
            assert why_not in shown.loc["bf16", "error"]
            assert math.isnan(shown.loc["bf16", "decode_tokens_per_s"])
            return
        assert shown.loc["bf16", "kl"] == "unavailable: random weights"
        assert shown.loc["baseline", "kl"] == "0 (the reference)"
        assert shown.loc["bf16", "decode_tokens_per_s"] > 0 and not shown.loc["bf16", "pareto"]
        figure = section.figure.object
        assert figure.layout.title.text.startswith("Generative trade-off")
        assert [t.name for t in figure.data if t.yaxis == "y2"] == [
            "no KL vs fp32 (nats): random weights"
        ]
        assert section.why_for == "bf16 on torch"
        assert "Why is bf16 on torch not faster?" in section.why.object
        assert "random weights" in section.notes.object
        first = section.table
        section.measure()  # the same sweep again: the stored points, nothing measured
        page.jobs.wait()
        assert section.table is not first and section.table.sweep_id == first.sweep_id
        assert any("2 of 2 points" in n for n in section.table.notes)
    finally:
        page.jobs.close()


def test_the_app_opens_the_page_as_a_tab_and_closes_its_worker(make_app):
    app = make_app()
    assert "generate" in app.tab_pages and isinstance(app.generate, GeneratePage)
    opened = app.tabs[app.tab_pages.index("generate")].objects[0]  # the page's layout
    assert opened.objects[0] is app.generate.card
    app.close()
    with pytest.raises(RuntimeError):  # its worker was shut down with the session
        app.generate.jobs.submit("after close", lambda progress, cancel: None, print)


@pytest.mark.browser
def test_the_served_page_streams_and_draws(server, browser):  # noqa: F811
    page, problems = open_page(browser, server[0])
    page.locator(".bk-tab", has_text="Generate").first.click()
    page.get_by_role("button", name="Generate", exact=True).click()
    page.locator(".gtitle", has_text="Latency per token").first.wait_for()
    page.locator(".gtitle", has_text="Per-layer latency by phase").first.wait_for()
    chips = page.locator(".wb-tok")
    assert chips.count() == 32  # every token streamed, each with its latency
    assert float(chips.last.locator("small").inner_text()) > 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-generate.png"))
    page.locator(
        ".gtitle", has_text="Per-layer latency by phase"
    ).first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "dashboard-generate-layers.png"))
    page.locator(".gtitle", has_text="Decode roofline").first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "dashboard-generate-roofline.png"))
    assert problems == [], problems
    page.close()


def test_generations_are_saved_to_the_store_and_reopen_from_the_runs_page(make_app, tmp_path):
    from workbench.store import Store

    store = Store(tmp_path / "runs.sqlite")
    saving = GeneratePage(output_length=3, runs=1, roofline=False, layers=False, store=store)
    try:
        saving.generate()
        saving.jobs.wait()
        assert saving.jobs.error == ""
        g = saving.profile
    finally:
        saving.jobs.close()
    stored = store.runs()
    (row,) = stored[stored["kind"] == "generation"].itertuples()
    assert (row.model, row.backend, row.batch_size) == (g.model, "torch", 1)
    assert row.latency_ms == g.e2e.median
    app = make_app("digits-mlp", store=store.path)
    app.runs.refresh()
    app.runs.open_runs([row.run_id])
    assert app.tabs.active == app.tab_pages.index("generate")
    shown = app.generate.profile
    assert shown.tokens == g.tokens and app.generate.history[-1] is shown
    assert app.generate.runs_slot.table.value.shape[0] == 1
