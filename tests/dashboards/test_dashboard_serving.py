"""The Serving page, driven through its parameters: a scenario run and an SLO search."""

from __future__ import annotations

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
