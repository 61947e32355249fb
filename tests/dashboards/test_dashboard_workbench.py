"""The dashboard as a workbench, driven through its parameters: report download,
sensitivity to recipe, graph view and estimate-then-measure."""

from __future__ import annotations

import pytest


def test_the_profile_page_downloads_the_current_profile_as_one_report(make_app):
    app = make_app("digits-mlp")
    text = app.profile._report().getvalue()
    assert text.startswith("<!DOCTYPE html>")
    assert f"Profile — {app.state.current.label}" in text
    assert "Per-layer latency" in text and "<script src" not in text
    assert app.profile.report.filename.endswith(".html")


def test_sensitivity_ticks_build_the_recipe_that_optimize_measures(make_app):
    app = make_app("digits-cnn")
    page = app.sensitivity
    page.transform = "int8-static"
    page.analyse()
    page.jobs.wait()
    report = page.report
    assert report is not None and set(report["layer"]) == set(page.param.kept.objects)
    assert {"metric_delta", "sqnr_db", "speedup"} <= set(report.columns)
    bars = page.figure.object.data[0]
    assert list(bars.y) == pytest.approx(
        list(-report.set_index("layer").loc[list(bars.x), "metric_delta"] * 100)
    )
    # clicking a bar selects the layer everywhere
    page._bar_clicked(type("E", (), {"new": {"points": [{"x": str(bars.x[1])}]}})())
    assert app.state.selected_layer == bars.x[1]

    # wb.suggest's plan fills the ticks, which stay editable
    page.max_drop = 0.0
    page.suggest()
    page.jobs.wait()
    assert "wb.suggest" in page.plan.object
    kept = [str(bars.x[0])]
    page.kept = kept
    assert page.recipe_text() == f"int8-static on every layer except {kept[0]}"
    hollow = [c == "white" for c in page.figure.object.data[0].marker.color]
    assert hollow == [x in kept for x in page.figure.object.data[0].x]

    # "Measure on Optimize": the Optimize page measures that recipe beside the baseline
    page.send()
    assert app.tabs.active == 2
    app.optimize.jobs.wait()
    (label,) = [k for k in app.optimize.results if k.endswith(f"except {kept[0]}")]
    assert label.startswith("int8-static(") and app.optimize.selected == label
    assert kept[0] in str(app.optimize.results[label].profile.recipe)
    assert "baseline" in app.optimize.results
    assert kept[0] in app.optimize.kept.object
