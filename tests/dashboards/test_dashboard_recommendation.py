"""The dashboard's pages on the recommendation and anomaly samples, driven through the
app state: tables as layers on Profile and Compare, the table transforms on Optimize
scored by each sample's own metric, a scenario on Serving."""

from __future__ import annotations

import pytest
from int8_cpu import saturates_without_int8_dot

import workbench as wb


def test_dlrm_on_profile_compare_optimize_and_serving(make_app):
    app = make_app("dlrm")
    ort = app.state.current
    assert ort is not None and ort.model == "dlrm" and app.state.jobs.error == ""
    layers = ort.layers.set_index("layer")
    assert layers.loc["tables.7", "table_rows"] == 20_000 and layers.loc["tables.7", "lookups"] > 0
    assert "p50" in app.profile.summary.object
    bars = {str(y) for t in app.profile.bars.object.data if t.y is not None for y in t.y}
    assert any(name.startswith("tables.") for name in bars)

    # Compare: the same table layers on torch, aligned by name with ONNX Runtime's
    app.state.backend = "torch"
    app.state.jobs.wait()
    assert app.state.jobs.error == "" and len(app.state.history) == 2
    compared = app.compare.table.value
    assert {f"tables.{i}" for i in range(8)} <= set(compared["layer"])

    # Optimize: a table transform, scored by the sample's own metric (ROC-AUC, not accuracy)
    optimize = app.optimize
    optimize.method = "table-int8"
    optimize.jobs.wait()
    assert optimize.jobs.error == ""
    base, int8 = optimize.results["baseline"], optimize.results["table-int8"]
    assert base.metric == int8.metric == "roc_auc"
    assert base.metric_value == pytest.approx(wb.samples.info("dlrm")["test_roc_auc"])
    assert int8.metric_value == pytest.approx(base.metric_value, abs=0.002)
    assert int8.size_bytes < 0.6 * base.size_bytes
    assert optimize.table.titles == {"accuracy": "roc_auc"}
    assert "<th>roc_auc</th>" in optimize.comparison.object
    assert optimize.tradeoff.object.layout.title.text.startswith("roc_auc")

    # Serving: a scenario on the same model
    serving = app.serving
    serving.min_duration_s, serving.min_queries, serving.kind = 0.05, 16, "offline"
    serving.run_scenario()
    serving.jobs.wait()
    assert serving.jobs.error == "" and serving.result.kind == "offline"


@pytest.mark.parametrize(
    "sample, method, metric",
    [
        ("two-tower", "table-int4", "recall@10"),
        pytest.param(
            "anomaly-autoencoder",
            "int8-dynamic",
            "roc_auc",
            marks=saturates_without_int8_dot,  # ROC-AUC 0.946 against 0.987 without VNNI
        ),
    ],
)
def test_optimize_scores_the_retrieval_and_anomaly_samples_by_their_metric(
    make_app, sample, method, metric
):
    app = make_app(sample)
    assert app.state.jobs.error == "" and app.state.current.model == sample
    optimize = app.optimize
    optimize.method = method
    optimize.jobs.wait()
    assert optimize.jobs.error == ""
    base, variant = optimize.results["baseline"], optimize.results[method]
    card = wb.samples.info(sample)
    assert base.metric == variant.metric == metric
    assert base.metric_value == pytest.approx(card[f"test_{metric}"], abs=1e-4)
    assert variant.metric_value == pytest.approx(base.metric_value, abs=0.02)


def test_a_metric_that_does_not_reproduce_the_sample_card_is_not_shown(make_app):
    # the IsolationForest's scores fall with anomaly: ROC-AUC on them reads 1 - AUC
    pytest.importorskip("sklearn")
    app = make_app("trees-anomaly")
    optimize = app.optimize
    optimize.request()
    optimize.jobs.wait()
    base = optimize.results["baseline"]
    assert base.metric == "roc_auc" and base.metric_value is None
    assert "does not reproduce the sample card's (0.9815" in base.notes[0]
