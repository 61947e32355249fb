"""The two-tower and anomaly-autoencoder samples: listed, load, score the held-out split
as their cards say through `wb.evaluate` (recall@k, ROC-AUC, F1), beat their baselines,
and their committed ONNX exports agree with torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench.errors import InputError, WorkbenchError
from workbench.evaluation.metrics import evaluate, get_metric


def test_recall_at_k_counts_relevant_items_in_the_top_k() -> None:
    scores = np.array([[0.9, 0.1, 0.5, 0.3], [0.0, 0.2, 0.1, 0.8]])
    relevant = np.array([[2, 1], [3, -1]])  # -1 pads the second user's list
    assert get_metric("recall@2")(scores, relevant) == pytest.approx((1 / 2 + 1) / 2)
    assert get_metric("recall@1")(scores, relevant) == pytest.approx((0 + 1) / 2)
    assert get_metric("recall@4")(scores, relevant) == 1.0
    assert get_metric("RECALL@1").name == "recall@1"
    assert "at least 5 items" in get_metric("recall@5").why_not(scores)


def test_f1_scores_zero_one_labels_and_refuses_outlier_signs() -> None:
    f1 = get_metric("f1")
    assert f1(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == pytest.approx(0.5)
    assert f1(np.array([1, 0, 0]), np.array([1, 0, 0])) == 1.0
    assert "not all 0 or 1" in f1.why_not(np.array([-1, 1, 1]))  # scikit-learn's outliers
    assert "predicted 0/1 labels" in f1.why_not(np.array([0.2, 0.9]))


def test_two_tower_sample_beats_popularity_and_exports() -> None:
    assert wb.samples.names("recommendation") == ["dlrm", "two-tower"]
    model = wb.samples.load("two-tower")
    card = model.metadata["card"]
    data = wb.samples.dataset("two-tower", split="test", batch_size=1000)
    assert data.num_samples == card["n_test"]
    result = evaluate(model, data, metric="recall@10", bar=False)
    assert result.value == pytest.approx(card["test_recall@10"], abs=1e-4)
    assert result.value > 1.5 * card["popularity_recall@10"]  # taste was learned
    assert card["test_recall@50"] > card["popularity_recall@50"]
    ort = evaluate(model.to_onnx(), data, metric="recall@50", backend="onnxruntime", bar=False)
    assert ort.value == pytest.approx(card["test_recall@50"], abs=1e-3)


def test_anomaly_autoencoder_reports_roc_auc_and_f1_through_evaluate() -> None:
    assert wb.samples.names("anomaly") == ["anomaly-autoencoder"]
    model = wb.samples.load("anomaly-autoencoder")
    card = model.metadata["card"]
    data = wb.samples.dataset("anomaly-autoencoder", split="test", batch_size=500)
    auc = evaluate(model, data, metric="roc_auc", bar=False)
    f1 = evaluate(model, data, metric="f1", bar=False)
    assert (auc.output, f1.output) == ("scores", "label")
    assert auc.value == pytest.approx(card["test_roc_auc"], abs=1e-4) and auc.value > 0.9
    assert f1.value == pytest.approx(card["test_f1"], abs=1e-4) and f1.value > 0.7
    ort = evaluate(model.to_onnx(), data, metric="f1", backend="onnxruntime", bar=False)
    assert ort.value == pytest.approx(f1.value, abs=1e-3)
    with pytest.raises(InputError, match="accuracy"):
        evaluate(model, data, metric="accuracy", output="scores", bar=False)


def test_readings_splits_and_unknown_split_are_one_line() -> None:
    validation = wb.samples.dataset("readings", split="validation")
    assert validation.num_samples == 2000 and 0 < validation.labels.mean() < 0.1
    with pytest.raises(WorkbenchError, match="unknown split 'validation' of interactions"):
        wb.samples.dataset("two-tower", split="validation")


def test_a_sweep_reports_f1_on_the_autoencoder(tmp_path: Path) -> None:
    from workbench.evaluation.sweep import sweep

    model = wb.samples.load("anomaly-autoencoder")
    data = wb.samples.dataset("anomaly-autoencoder", split="test", batch_size=1000)
    table = sweep(
        model, ["baseline"], ["onnxruntime"], data, metric="f1", budget_s=0.05,
        store=tmp_path / "runs.sqlite",
    )  # fmt: skip
    assert table.metric == "f1" and len(table.df) == 1
    value = table.df["metric_value"].iloc[0]
    assert value == pytest.approx(model.metadata["card"]["test_f1"], abs=1e-4)


def test_the_autoencoders_threshold_is_the_best_f1_cut_halfway_between_scores() -> None:
    import importlib.util

    script = Path(__file__).parents[2] / "sample_models" / "autoencoder_train.py"
    spec = importlib.util.spec_from_file_location("autoencoder_train", script)
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    scores = np.array([0.1, 0.9, 0.8, 0.2, 0.7])
    assert train.best_threshold(scores, np.array([0, 1, 1, 0, 0])) == pytest.approx(0.75)
    assert train.best_threshold(scores, np.array([0, 1, 1, 0, 1])) == pytest.approx(0.45)


def test_generators_are_seeded_and_keep_their_invariants() -> None:
    from workbench.loaders.rec_data import ITEMS, interactions, sensor_readings

    users = interactions("test", users=200)
    again = interactions("test", users=200)
    np.testing.assert_array_equal(users.history, again.history)
    chosen = np.concatenate([users.history, users.held_out], axis=1)
    assert all(len(set(row)) == chosen.shape[1] for row in chosen)  # no item twice
    assert chosen.min() >= 0 and chosen.max() < ITEMS
    assert not np.array_equal(interactions("train", users=200).history, users.history)
    readings = sensor_readings("validation", samples=3000)
    np.testing.assert_array_equal(readings.x, sensor_readings("validation", samples=3000).x)
    assert 0.01 < readings.labels.mean() < 0.05
