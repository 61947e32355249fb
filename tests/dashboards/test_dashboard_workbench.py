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
    app = make_app("digits-mlp")
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
    page.max_drop = 5.0
    page.suggest()
    page.jobs.wait()
    # a plan, or (when no layer measured faster on this busy machine) the reason in one line
    assert "wb.suggest" in page.plan.object or "no layer" in (page.jobs.error or "")
    kept = [str(bars.x[0])]
    page.kept = kept
    assert page.recipe_text() == f"int8-static on every layer except {kept[0]}"
    hollow = [c == "white" for c in page.figure.object.data[0].marker.color]
    assert hollow == [x in kept for x in page.figure.object.data[0].x]

    # "Measure on Optimize": an estimate is placed at once (baseline + the transformed
    # layers' changes), then the Optimize page measures the recipe beside the baseline
    app.optimize.request()
    app.optimize.jobs.wait()
    page.send()
    (estimated,) = [k for k in app.optimize.estimates if k.endswith(f"except {kept[0]}")]
    changed = report[report["layer"] != kept[0]]
    base = app.optimize.results["baseline"]
    assert app.optimize.estimates[estimated]["latency_ms"] == pytest.approx(
        base.profile.latency.median + changed["latency_delta_ms"].sum()
    )
    assert app.tabs.active == 2
    app.optimize.jobs.wait()
    (label,) = [k for k in app.optimize.results if k.endswith(f"except {kept[0]}")]
    assert label.startswith("int8-static(") and app.optimize.selected == label
    assert kept[0] in str(app.optimize.results[label].profile.recipe)
    assert "baseline" in app.optimize.results
    assert kept[0] in app.optimize.kept.object
    assert "estimated before measuring" in app.optimize.comparison.object
    assert f"{label} (estimate)" not in set(app.optimize.frame()["variant"])  # replaced


def test_the_graph_page_colours_the_profiled_graph_and_a_click_selects_the_layer(make_app):
    app = make_app("digits-cnn")
    page, state = app.graph, app.state
    fig = page.figure.object
    nodes = fig.data[1]
    # ORT fuses Conv+BatchNorm+Relu: one node each, named after the layer that runs them
    fused = state.current.layers.dropna(subset=["fused_into"])
    assert not fused.empty and not set(fused["layer"]) & set(nodes.text)
    latency = state.current.layers.set_index("layer")["latency_ms"]
    colours = dict(zip(nodes.text, nodes.marker.color, strict=True))
    assert colours["features.3"] == pytest.approx(latency["features.3"])
    layout = page.layout()
    page.color_by = "memory"
    assert page.layout() is layout  # recoloured, not laid out again
    assert "memory" in page.figure.object.data[1].marker.colorbar.title.text
    page.figure.click_data = {"points": [{"customdata": "features.7", "x": 0, "y": -3}]}
    assert state.selected_layer == "features.7"
    widths = dict(zip(page.figure.object.data[1].text,
                      page.figure.object.data[1].marker.line.width, strict=True))  # fmt: skip
    assert widths["features.7"] == 3
    # the Profile page's bars follow the same selection
    bars = [t for t in app.profile.bars.object.data if t.type == "bar"]
    assert [y for t in bars for y, w in zip(t.y, t.marker.line.width, strict=True) if w == 3] == [
        "features.7"
    ]
    page.color_by = "sensitivity"
    assert "press Analyse" in page.figure.object.layout.title.text


def test_runs_filter_by_model_backend_machine_and_day_and_ticked_runs_are_deleted(make_app):
    import datetime as dt

    import pandas as pd

    from workbench.profiling.profile import Profile
    from workbench.profiling.timer import Measurement

    app = make_app("digits-mlp")
    store, page = app.state.store, app.runs
    runs = (("a", "torch", "2026-01-02", "lab-1"), ("b", "onnxruntime", "2026-03-04", "lab-2"))
    for model, backend, day, host in runs:
        store.save_profile(
            Profile(
                latency=Measurement(samples_ms=(1.0, 1.0)),
                layers=pd.DataFrame(),
                model=model,
                backend=backend,
                device="cpu",
                batch_size=1,
                created_at=f"{day}T10:00:00+00:00",
                environment={"hostname": host},
            )
        )
    page.refresh()
    everything = len(page.runs)
    assert {"a", "b", "digits-mlp"} <= set(page.param.model.objects)
    page.model = "a"
    assert list(page.runs["model"]) == ["a"] and f"1 of {everything}" in page.message.object
    page.model, page.backend = "all", "onnxruntime"
    assert "a" not in set(page.runs["model"]) and "b" in set(page.runs["model"])
    # across machines: the stored runs' hosts are offered, and one shows that machine's runs
    assert {"lab-1", "lab-2"} <= set(page.param.host.objects)
    page.backend, page.host = "all", "lab-2"
    assert list(page.runs["model"]) == ["b"] and list(page.runs["host"]) == ["lab-2"]
    page.host = "all"
    page.since = dt.date(2026, 3, 1)
    assert "a" not in set(page.runs["model"]) and len(page.runs) == everything - 1
    page.since = None
    page.table.selection = [list(page.runs["model"]).index("b")]
    page.delete_selected()
    assert "b" not in set(store.runs()["model"]) and len(page.runs) == everything - 1


def test_sensitivity_ticks_build_per_layer_prune_ratios_that_optimize_measures(make_app):
    app = make_app("digits-mlp")
    page, optimize = app.sensitivity, app.optimize
    page.param.update(transform="prune-magnitude", sparsity=0.5)
    page.analyse()
    page.jobs.wait()
    report = page.report
    assert report is not None and len(report) >= 2
    first, second = list(report["layer"])[:2]
    page.layer_ratio = 0.2
    page.kept = [first]
    page.layer_ratio = 0.0
    page.kept = [first, second]  # each ticked layer keeps the ratio it was ticked with
    assert page.settings() == {
        "sparsity": 0.5,
        "structured": False,
        "layer_sparsity": {first: 0.2, second: 0.0},
    }
    assert "hollow = own prune ratio" in page.figure.object.layout.xaxis.title.text
    own = sorted([f"{first} 20%", f"{second} 0%"])
    assert page.recipe_text() == f"prune-magnitude 50% on every layer; {', '.join(own)}"

    optimize.request()
    optimize.jobs.wait()
    base = optimize.results["baseline"]
    page.send()
    (label,) = [k for k in optimize.estimates if k.startswith("prune-magnitude(")]
    assert f"{first} 20%" in label and f"{second} 0%" in label
    estimate = optimize.estimates[label]
    # the cost model: zeros in dense kernels do the same work, so no faster than baseline
    assert estimate["latency_ms"] == pytest.approx(base.profile.latency.median)
    # accuracy: each layer's measured drop, scaled by its ratio over the analysed 50%
    ratio = report["layer"].map({first: 0.2, second: 0.0}).fillna(0.5) / 0.5
    assert estimate["metric_value"] == pytest.approx(
        base.metric_value + (report["metric_delta"] * ratio).sum()
    )
    optimize.jobs.wait()
    measured = optimize.results[label]
    recipe = measured.profile.recipe
    steps = [recipe] if "layer_sparsity" in recipe.get("config", {}) else recipe["chain"]
    assert dict(map(tuple, steps[0]["config"]["layer_sparsity"])) == {first: 0.2, second: 0.0}
    assert "estimated before measuring" in optimize.comparison.object
    assert optimize.kept.object == f"Own prune ratios: {', '.join(own)}"


def test_the_estimate_of_channel_pruning_comes_from_the_cost_model(make_app):
    from workbench.dashboards import actions
    from workbench.profiling.cost import estimate_latency_ms

    app = make_app("digits-cnn")
    optimize = app.optimize
    optimize.request()
    optimize.jobs.wait()
    base = optimize.results["baseline"]
    recipe = ("none", "entropy", 0.5, True, (), (("features.3", 0.25),))
    estimate = optimize.estimate(recipe)
    flops, nbytes = actions.cost_scales(base.profile, "none", 0.5, True, (), recipe[-1])
    assert flops["features.3"] == 0.75 and flops["features.0"] == 0.5
    assert "classifier.1" not in flops  # the output layer keeps its outputs
    assert estimate["latency_ms"] == pytest.approx(estimate_latency_ms(base.profile, flops, nbytes))
    assert estimate["latency_ms"] < base.profile.latency.median
    assert estimate["metric_value"] is None  # no pruning sensitivity: accuracy unknown
    # INT8 without a sensitivity of it: the cost model shrinks the weights' bytes (to a
    # quarter), so only memory-bound layers with weights get faster
    flops, nbytes = actions.cost_scales(base.profile, "int8-dynamic", 0.0, False, ("classifier.1",))
    layers = base.profile.layers.set_index("layer")
    conv = layers.loc["features.0"]
    assert flops == {} and "classifier.1" not in nbytes
    assert nbytes["features.0"] == pytest.approx(1 - 0.75 * conv["params_bytes"] / conv["bytes"])
    quantized = optimize.estimate(("int8-dynamic", "entropy", 0.0, False, ("classifier.1",), ()))
    assert quantized["latency_ms"] == pytest.approx(estimate_latency_ms(base.profile, {}, nbytes))
