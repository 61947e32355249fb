"""The Serving page, driven through its parameters: a scenario run and an SLO search; its
language-model section against a local ``serve-lm``."""

from __future__ import annotations

import pytest

from tests.dashboards.test_dashboard_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    browser,
    figure_traces,
    open_page,
    server,
)
from workbench.dashboards.jobs import Jobs
from workbench.dashboards.pages.lm_serving import LmServingSection
from workbench.dashboards.pages.serving import ServingPage


def test_serving_page_runs_a_scenario_and_an_slo_search(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app()
    assert isinstance(app.serving, ServingPage) and "Serving" in app.tabs._names
    page = app.serving
    page.min_duration_s, page.min_queries = 0.05, 16
    page.__panel__()
    page.kind = "offline"
    page.price_per_hour = 2.0
    page.run_scenario()
    page.jobs.wait()
    assert page.jobs.error == ""
    assert page.result is not None and page.result.kind == "offline"
    assert page.result.backend == app.state.backend
    assert "cost per million" in page.summary.object
    # the queries in a few summary rows (not one row per query), in the one formatting layer
    summary, queries = page.slot.table.value, page.result.queries
    assert summary["queries"].iloc[0] == "all" and summary["n"].iloc[0] == len(queries)
    assert len(summary) <= 1 + queries["batch"].nunique() < len(queries)
    assert summary["p99_ms"].iloc[0] == queries["latency_ms"].quantile(0.99)
    assert set(page.slot.table.formatters) >= {"p99_ms", "n", "samples"}

    page.p99_ms = 50.0
    page.find_rate()
    page.jobs.wait()
    assert page.jobs.error == ""
    assert page.slo_result is not None and page.slo_result.p99_ms == 50.0
    assert "Highest sustained server rate" in page.summary.object
    assert page.figure.object.layout.shapes[0].y0 == 50.0


def test_the_lm_section_loads_a_local_serve_lm_and_searches_its_rate() -> None:
    pytest.importorskip("transformers")
    section = LmServingSection(jobs=Jobs())
    try:
        section.run_load()  # no endpoint yet: said in one line, nothing shown
        section.jobs.wait()
        assert "no endpoint: give a URL, or start a local serve-lm" in section.jobs.error
        assert "\n" not in section.jobs.error and section.result is None
        section.param.update(model="llama-tiny", backend="torch")
        section.start_server()
        section.jobs.wait()
        assert (
            section.url.startswith("http://127.0.0.1:")
            and "llama-tiny" in section.server_note.object
        )
        section.param.update(
            arrivals="concurrency", concurrency=2, requests=6, max_tokens=4, prompt="1 2 3 4"
        )
        section.price_per_hour = 1.0
        section.run_load()
        section.jobs.wait()
        assert section.jobs.error == ""
        r = section.result
        assert r.failed == 0 and len(r.ok) == 6 and r.settings["concurrency"] == 2
        metrics = section.slot.table.value
        assert metrics["requests"].iloc[0] == 6 and metrics["goodput_per_s"].iloc[0] > 0
        assert section.figure.object.layout.title.text.startswith("6 requests: meets mlperf-llama2")
        assert "cost" in section.summary.object  # the price gives a cost per 1M tokens
        section.objective = "interactive"  # a preset shows its limits; editing one is custom
        assert (section.ttft_ms, section.tpot_ms) == (450.0, 40.0)
        section.param.update(ttft_ms=1e5, tpot_ms=1e5, steps=2, requests=4)
        assert section.objective == "custom"
        section.find_rate()
        section.jobs.wait()
        s = section.slo_result
        assert section.jobs.error == "" and len(s.points) == 2
        assert s.objective.ttft_ms == 1e5 and s.max_rate_per_s > 0  # a lenient goal passes
        assert section.figure.object.layout.title.text.startswith("Highest rate within custom")
        assert list(section.slot.table.value["rate_per_s"]) == list(s.points["rate_per_s"])
    finally:
        section.close()
        section.jobs.close()
    assert section.url == ""  # the local server is stopped with the section


@pytest.mark.browser
def test_the_served_page_loads_a_local_serve_lm_and_draws_each_request(server, browser):  # noqa: F811
    pytest.importorskip("transformers")
    page, problems = open_page(browser, server[0])
    page.locator(".bk-tab", has_text="Serving").first.click()
    page.locator("select:has(option[value='llama-tiny'])").first.select_option("llama-tiny")
    page.get_by_role("button", name="Start local serve-lm").click()
    page.get_by_text("on torch at http://127.0.0.1:").first.wait_for()
    page.get_by_role("button", name="Run load", exact=True).click()
    page.locator(".gtitle", has_text="16 requests").first.wait_for()
    ttft, tpot = figure_traces(page, "16 requests")[:2]
    assert len(ttft["y"]) == len(tpot["y"]) == 16 and min(ttft["y"]) > 0
    page.get_by_text("goodput").first.wait_for()
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".gtitle", has_text="16 requests").first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "dashboard-serving-lm.png"))
    page.get_by_role("button", name="Stop", exact=True).click()
    page.get_by_text("No local server.").first.wait_for()
    assert problems == [], problems
    page.close()
