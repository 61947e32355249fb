"""The dashboard driven through its parameters, without a browser."""

from __future__ import annotations

import threading

import pytest

import workbench as wb
from workbench.dashboards.jobs import Jobs
from workbench.errors import CancelledError, ModelLoadError


def test_app_profiles_the_picked_model_on_start(make_app):
    app = make_app("digits-mlp")
    current = app.state.current
    assert current is not None and current.model == "digits-mlp"
    assert current.backend == "onnxruntime" and current.batch_size == 8
    assert not current.layers.empty  # per layer by default
    assert app.state.history == [current]
    assert "p50" in app.profile.summary.object
    assert app.state.jobs.message.endswith("done") and not app.state.jobs.running


def test_changing_a_picker_reprofiles_and_returning_shows_the_cached_result_at_once(
    make_app, monkeypatch
):
    app = make_app("digits-mlp")
    first = app.state.current
    app.state.batch_size = 16
    app.state.jobs.wait()
    assert app.state.current.batch_size == 16
    assert app.profile.bars.object.layout.title.text.endswith("bs=16")

    submitted: list[str] = []
    monkeypatch.setattr(app.state.jobs, "submit", lambda what, *a: submitted.append(what))
    app.state.batch_size = 8  # back to a measured value: page updated synchronously
    assert submitted == []  # no job: nothing measured again (its speed is a benchmark's)
    assert app.state.current is first
    assert app.profile.bars.object.layout.title.text.endswith("bs=8")
    assert len(app.state.history) == 2


def test_backend_picker_offers_only_backends_with_devices_and_updates_devices(make_app):
    app = make_app("digits-mlp")
    backends = app.state.param.backend.objects
    assert "onnxruntime" in backends and "torch" in backends
    assert "numba-cuda" not in backends or app.state._backends["numba-cuda"]
    app.state.backend = "torch"
    app.state.jobs.wait()
    assert app.state.current.backend == "torch"
    assert app.state.device in app.state.param.device.objects


def test_profile_page_controls_update_the_figure_and_selection_is_shared(make_app):
    app = make_app("digits-cnn")
    state, page = app.state, app.profile
    by_time = list(page.bars.object.layout.yaxis.categoryarray)
    state.order = "graph"
    by_graph = list(page.bars.object.layout.yaxis.categoryarray)
    assert sorted(by_time) == sorted(by_graph) and by_time != by_graph
    state.color_by = "block"
    assert {t.name for t in page.bars.object.data} >= {"features"}
    page.bars.click_data = {"points": [{"y": "features.3", "x": 0.1}]}
    assert state.selected_layer == "features.3"
    row = list(page.table.value["layer"]).index("classifier.1")
    page.table.selection = [row]
    assert state.selected_layer == "classifier.1"
    widths = [w for t in page.bars.object.data if t.type == "bar" for w in t.marker.line.width]
    assert widths.count(3) == 1
    csv = page._csv().getvalue().splitlines()
    assert csv[0].split(",")[:3] == ["layer", "op_type", "latency_ms"]
    assert len(csv) == len(state.current.layers) + 1


def test_compare_page_aligns_the_last_two_profiles_and_honours_the_pinned_baseline(make_app):
    app = make_app("digits-mlp")
    app.state.backend = "torch"
    app.state.jobs.wait()
    ort, torch_ = app.state.history
    assert app.state.shown == [ort.run_id, torch_.run_id]
    fig = app.compare.layers.object
    assert [t.name for t in fig.data] == [f"{ort.label} (baseline)", torch_.label]
    app.state.baseline = torch_.run_id
    assert app.compare.layers.object.data[0].name == f"{torch_.label} (baseline)"
    assert "layer" in app.compare.table.value.columns and len(app.compare.table.value) > 0


def test_optimize_measures_a_variant_beside_the_baseline_and_clicks_select_it(
    make_app, monkeypatch
):
    from workbench.dashboards import actions

    app = make_app("digits-mlp")
    page = app.optimize
    page.method = "int8-dynamic"
    page.jobs.wait()
    assert set(page.results) == {"baseline", "int8-dynamic"}
    base, int8 = page.results["baseline"], page.results["int8-dynamic"]
    assert 0.8 < base.metric_value <= 1.0 and abs(int8.metric_value - base.metric_value) < 0.05
    assert int8.size_bytes < base.size_bytes
    variants = {str(c[0]) for t in page.tradeoff.object.data if "markers" in (t.mode or "")
                for c in t.customdata}  # fmt: skip
    assert variants == {"baseline", "int8-dynamic"}
    assert len(page.diff.object.data) == 2  # per-layer diff against the baseline
    assert "int8-dynamic" in page.comparison.object

    page.sparsity = 0.5
    page.jobs.wait()
    assert "prune-magnitude(50%) → int8-dynamic" in page.results
    page.tradeoff.click_data = {"points": [{"customdata": ["int8-dynamic", 0.1, True]}]}
    assert page.selected == "int8-dynamic"

    measured: list[object] = []
    monkeypatch.setattr(actions, "measure_profile", lambda *a, **k: measured.append(a))
    page.sparsity = 0.0  # measured before: from the cache
    page.jobs.wait()
    assert measured == [] and page.jobs.error == ""
    assert page.selected == "int8-dynamic"


def test_optimize_reports_an_impossible_recipe_as_a_message(make_app):
    from workbench.dashboards import actions

    app = make_app("digits-mlp")
    app.state.models["onnx-only"] = actions.load_sample("digits-mlp")
    onnx = app.state.model().to_onnx()
    app.state.add_model(onnx, key="onnx-only")
    app.state.jobs.wait()
    page = app.optimize
    page.param.update(sparsity=0.5, structured=True)
    page.jobs.wait()
    assert "structured pruning needs a PyTorch model" in page.jobs.error
    assert "Traceback" not in page.jobs.error


def test_devices_page_measures_ceilings_and_draws_the_roofline(make_app):
    app = make_app("digits-cnn")
    page = app.devices
    assert "cpu" in set(page.devices.value["device"])
    page.measure()
    page.jobs.wait()
    assert page.ceilings["peak_flops_per_s"] > 0
    assert any(t.name == "roof" for t in page.roofline.object.data)


def test_runs_page_lists_stored_profiles_and_reopens_them_in_compare(make_app):
    first = make_app("digits-mlp")
    first.state.batch_size = 4
    first.state.jobs.wait()
    stored = {p.run_id for p in first.state.history}
    opened = []
    second = make_app("digits-cnn")
    second.runs.on_open = lambda: opened.append(True)
    second.runs.refresh()
    assert stored <= set(second.runs.runs["run_id"])
    second.runs.open_runs(sorted(stored))
    assert set(second.state.shown) == stored and opened == [True]
    assert stored <= {p.run_id for p in second.state.history}
    assert len(second.compare.layers.object.data) == 2


def test_jobs_cancel_errors_and_latest_wins():
    messages = []
    jobs = Jobs(notify=lambda level, message: messages.append((level, message)))
    started, release = threading.Event(), threading.Event()

    def slow(progress, cancel):
        started.set()
        release.wait(5)
        cancel.check()
        return "slow"

    results = []
    jobs.submit("slow job", slow, results.append)
    started.wait(5)
    assert jobs.running
    jobs.cancel()
    release.set()
    jobs.wait()
    assert not jobs.running and jobs.message == "slow job: cancelled" and results == []

    def broken(progress, cancel):
        raise ModelLoadError("model.onnx is corrupt\nlong details")

    jobs.submit("loading", broken, results.append)
    jobs.wait()
    assert jobs.error == "loading failed: model.onnx is corrupt"
    assert messages[-1] == ("error", "loading failed: model.onnx is corrupt")

    def quick(progress, cancel):
        progress(0.5, "half way")
        return 42

    jobs.submit("quick", quick, results.append)
    jobs.wait()
    assert results == [42] and jobs.error == "" and jobs.progress == 100
    jobs.close()


def test_a_newer_job_supersedes_a_running_one():
    jobs = Jobs()
    gate = threading.Event()
    results = []

    def first(progress, cancel):
        gate.wait(5)
        if cancel.cancelled:
            raise CancelledError("stale")
        return "first"

    jobs.submit("first", first, results.append)
    jobs.submit("second", lambda p, c: "second", results.append)
    gate.set()
    jobs.wait()
    assert results == ["second"]
    jobs.close()


def test_two_sessions_are_independent_and_a_long_job_does_not_block_the_other(make_app):
    a, b = make_app("digits-mlp"), make_app("digits-cnn")
    gate = threading.Event()
    a.state.jobs.submit("a long job", lambda p, c: gate.wait(10), lambda _: None)
    assert a.state.jobs.running
    b.state.batch_size = 2  # b measures on its own thread while a's job runs
    b.state.jobs.wait(timeout=60)  # raises TimeoutError if a's job blocked it
    assert b.state.current.batch_size == 2 and a.state.jobs.running
    assert a.state.current.model == "digits-mlp" and a.state.batch_size == 8
    gate.set()
    a.state.jobs.wait()


@pytest.mark.parametrize("bad", [1, 2])
def test_uploaded_model_joins_the_picker(make_app, bad):
    from workbench.dashboards import actions

    app = make_app("digits-mlp")
    data = actions.load_sample("digits-mlp").onnx_bytes if bad == 1 else b"not a model"
    app.upload.receive("mine.onnx", 1, 1, data)
    app.state.jobs.wait()
    if bad == 1:
        assert app.state.model_name == "mine.onnx (uploaded)"
        app.state.jobs.wait()
        assert app.state.current.model != "" and app.state.jobs.error == ""
    else:
        assert "mine.onnx" in app.state.jobs.error and "corrupt" in app.state.jobs.error
        assert app.state.model_name == "digits-mlp"


def test_one_selection_everywhere_bars_roofline_and_comparison(make_app):
    app = make_app("digits-cnn")
    app.state.batch_size = 4
    app.state.jobs.wait()
    app.devices.roofline.click_data = {"points": [{"text": "features.7", "x": 40, "y": 1e9}]}
    assert app.state.selected_layer == "features.7"

    def outlined(fig):
        return {
            layer
            for t in fig.data
            if t.type in ("bar", "scatter") and t.y is not None and t.marker.line.width is not None
            for layer, w in zip(
                t.text if t.type == "scatter" else t.y, t.marker.line.width, strict=False
            )
            if w == 3
        }

    assert outlined(app.profile.bars.object) == {"features.7"}
    assert outlined(app.compare.layers.object) == {"features.7"}
    assert outlined(app.devices.roofline.object) == {"features.7"}
    app.compare.layers.click_data = {"points": [{"y": "features.3"}]}
    assert outlined(app.profile.bars.object) == {"features.3"}


def test_runs_page_shows_a_stored_sweep_as_a_tradeoff(make_app, tmp_path):
    import workbench as wb

    app = make_app("digits-mlp")
    wb.sweep(
        wb.samples.load("digits-mlp"), variants=["baseline", "int8-dynamic"],
        backends=["onnxruntime"], batch_size=8, budget_s=0.05, store=app.state.store,
    )  # fmt: skip
    app.runs.refresh()
    kinds = list(app.runs.runs["kind"])
    assert "sweep" in kinds and "profile" in kinds
    app.runs.table.selection = [kinds.index("sweep")]
    points = [t for t in app.runs.sweep.object.data if "markers" in (t.mode or "")]
    assert {str(c[0]) for t in points for c in t.customdata} == {"baseline", "int8-dynamic"}
    app.runs.open_runs([str(app.runs.runs.iloc[kinds.index("sweep")]["run_id"])])
    assert "Select one or more" in app.runs.message.object  # a sweep is not a profile


def test_optimize_in_view_remeasures_when_the_pickers_change(make_app):
    app = make_app("digits-mlp")
    app.tabs.active = 2  # opening the page measures the baseline
    app.optimize.jobs.wait()
    assert set(app.optimize.results) == {"baseline"}
    assert app.optimize.results["baseline"].profile.batch_size == 8
    app.state.batch_size = 16
    app.optimize.jobs.wait()
    assert app.optimize.results["baseline"].profile.batch_size == 16
    app.tabs.active = 0
    app.state.batch_size = 4
    assert app.optimize.results == {} and not app.optimize.jobs.running


def test_measurements_take_turns_process_wide_and_a_queued_one_can_be_cancelled():
    from workbench.dashboards import actions

    started, release = threading.Event(), threading.Event()

    def other_session_measuring():
        with actions.measuring():
            started.set()
            release.wait(10)

    holder = threading.Thread(target=other_session_measuring)
    holder.start()
    started.wait(5)

    waiting = threading.Event()

    def measure(progress, cancel):
        def report(fraction, message):
            progress(fraction, message)
            waiting.set()

        with actions.measuring(cancel, report):
            return "measured"

    jobs, results = Jobs(), []
    jobs.submit("queued", measure, results.append)
    assert waiting.wait(10)  # the job said it waits (an event, not a guessed delay)
    assert jobs.running and "waiting for another measurement" in jobs.message
    jobs.cancel()
    jobs.wait()
    assert results == [] and jobs.message == "queued: cancelled"
    release.set()
    holder.join(5)
    jobs.submit("after", measure, results.append)
    jobs.wait()
    assert results == ["measured"]
    jobs.close()


@pytest.mark.parametrize(
    ("recipe", "label"),
    [
        (("none", "entropy", 0.0, False), "baseline"),
        (("int8-dynamic", "entropy", 0.0, False), "int8-dynamic"),
        (("none", "entropy", 0.25, True), "prune-channels(25%)"),
        (("fp16", "entropy", 0.5, False), "prune-magnitude(50%) → fp16"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v)),
)
def test_variant_labels_are_the_built_variants_recipe_labels(recipe, label):
    from workbench.dashboards import actions
    from workbench.testing import toy_mlp

    assert actions.variant_label(*recipe) == label
    assert actions.build_variant(wb.load(toy_mlp()), *recipe).recipe_name == label


def test_optimize_rows_stay_named_and_drawn_while_the_slider_moves_key_by_key(make_app):
    """Keyboard steps on the sparsity slider: each asks for a new recipe; the table keeps
    every row named (no NaN variant/backend), shows one estimate (the latest), and the
    measured points stay on the plot."""
    app = make_app("digits-mlp")
    page = app.optimize
    page.method = "int8-dynamic"
    page.jobs.wait()
    for step in (0.05, 0.1, 0.15):  # one key press each, without waiting
        page.sparsity = step
        shown = page.table.value
        assert shown["variant"].notna().all() and shown["backend"].notna().all(), shown
        assert shown["variant"].str.endswith("(estimate)").sum() <= 1, shown
        drawn = {str(c[0]) for t in page.tradeoff.object.data if "markers" in (t.mode or "")
                 for c in t.customdata}  # fmt: skip
        assert {"baseline", "int8-dynamic"} <= drawn, drawn
    page.jobs.wait()
    shown = page.table.value
    assert not shown["variant"].str.endswith("(estimate)").any(), shown
    assert set(shown["host"].dropna()) and shown["accuracy"].between(0, 1).all()


def test_structured_pruning_fine_tunes_by_default_and_says_so_in_the_recipe(make_app):
    from workbench.dashboards import actions
    from workbench.evaluation.metrics import evaluate

    app = make_app("digits-mlp")
    page = app.optimize
    page.param.update(sparsity=0.5, structured=True)
    page.jobs.wait()
    label = actions.variant_label(*page.recipe())
    assert label == f"prune-channels(50%, ft{page.finetune_epochs})" and page.finetune_epochs > 0
    assert page.results[label].metric_value > 0.9  # without fine-tuning: far lower
    model = actions.load_sample("digits-mlp")
    untuned = actions.build_variant(model, "none", "entropy", 0.5, True)
    data = actions.evaluation_data(model)
    assert page.results[label].metric_value > evaluate(untuned, data, bar=False).value + 0.02
    # the epochs belong to structured pruning only: other recipes keep their labels
    page.param.update(structured=False)
    assert actions.variant_label(*page.recipe()) == "prune-magnitude(50%)"


def test_the_baseline_picker_names_the_baseline_in_use_without_pinning_it(make_app):
    app = make_app("digits-mlp")
    app.state.backend = "torch"
    app.state.jobs.wait()
    ort, torch_ = app.state.history
    page = app.compare
    legend = next(t.name for t in page.layers.object.data if t.name.endswith("(baseline)"))
    picked = {v: k for k, v in page.baseline_picker.options.items()}[page.baseline_picker.value]
    assert page.baseline_picker.value == ort.run_id and legend.startswith(ort.label)
    assert picked.startswith(ort.label) and app.state.baseline is None  # shown, not pinned
    page.baseline_picker.value = torch_.run_id  # a person's pick pins it
    assert app.state.baseline == torch_.run_id
    assert page.layers.object.data[0].name == f"{torch_.label} (baseline)"


def test_the_sensitivity_recipe_text_follows_the_transform(make_app):
    page = make_app("digits-mlp").sensitivity
    page.transform = "int8-static"
    assert "int8-static on every layer" in page.recipe_pane.object
    page.transform = "prune-channels"
    assert "prune-channels 50% on every layer" in page.recipe_pane.object
    assert "int8-static" not in page.recipe_pane.object


def test_the_devices_page_never_sends_you_to_itself(make_app):
    app = make_app("digits-cnn")
    texts = [a.text for a in app.devices.roofline.object.layout.annotations]
    assert not any("Devices page" in t for t in texts), texts
