"""Which output a metric scores: converted classifiers (label + probabilities), anomaly
detectors (label + scores), a named output, and metrics that do not fit an output."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.errors import InputError
from workbench.evaluation.metrics import evaluate
from workbench.loaders.onnx import model_from_proto


def _converted_classifier() -> wb.Model:
    """Like an ONNX-converted tree classifier: ``label`` (int64, (N,)) comes first, then
    ``probabilities`` (float, (N, 3)); the label is the argmax of the probabilities."""
    from onnx import TensorProto, helper, numpy_helper

    weights = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3], [1, 1, 1]], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
        ],
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3]),
        ],
        [numpy_helper.from_array(weights, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return model_from_proto(proto, name="classifier")


def _anomaly_detector() -> wb.Model:
    """Like a converted IsolationForest: ``label`` (int64, (N, 1)) and ``scores`` (float,
    (N, 1)); the score is the input's first column, the label its sign."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Slice", ["x", "zero", "one", "one"], ["scores"]),
            helper.make_node("Sign", ["scores"], ["sign"]),
            helper.make_node("Cast", ["sign"], ["label"], to=TensorProto.INT64),
        ],
        "detector",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N", 1]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 1]),
        ],
        [
            helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return model_from_proto(proto, name="detector")


def _classifier_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, labels, and the model's own predictions (argmax of its first 3 columns)."""
    rng = np.random.default_rng(0)
    x = rng.random((60, 4), dtype=np.float32)
    predicted = x[:, :3].argmax(1)
    labels = predicted.copy()
    labels[:15] = (labels[:15] + 1) % 3  # a quarter wrong: accuracy 0.75
    return x, labels, predicted


@pytest.mark.parametrize("backend", ["onnxruntime", "numba"])
def test_accuracy_scores_the_probabilities_not_the_label_vector(backend: str) -> None:
    x, labels, _ = _classifier_data()
    data = wb.Dataset.from_arrays(x, labels, batch_size=20)
    result = evaluate(_converted_classifier(), data, backend=backend, bar=False)
    assert result.output == "probabilities"
    assert result.value == pytest.approx(0.75)


def test_a_named_output_is_scored_and_labels_are_compared_as_labels() -> None:
    x, labels, _ = _classifier_data()
    data = wb.Dataset.from_arrays(x, labels, batch_size=20)
    by_label = evaluate(_converted_classifier(), data, output="label", bar=False)
    assert by_label.output == "label" and by_label.value == pytest.approx(0.75)
    by_index = evaluate(_converted_classifier(), data, output=1, bar=False)
    assert by_index.output == "probabilities" and by_index.value == pytest.approx(0.75)


def test_a_metric_that_does_not_fit_the_named_output_is_refused_in_one_line() -> None:
    x, labels, _ = _classifier_data()
    data = wb.Dataset.from_arrays(x, labels, batch_size=20)
    with pytest.raises(InputError, match=r"top2 does not fit output 'label' \[20\] int64") as info:
        evaluate(_converted_classifier(), data, metric="top2", output="label", bar=False)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match=r"no output 'proba'.*'probabilities' \[20, 3\]"):
        evaluate(_converted_classifier(), data, output="proba", bar=False)
    with pytest.raises(InputError, match=r"mse does not fit output 'label'.*float"):
        evaluate(_converted_classifier(), data, metric="mse", output="label", bar=False)


def test_anomaly_scores_go_to_a_metric_of_your_own_and_never_to_accuracy() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 2)).astype(np.float32)
    outlier = (x[:, 0] < 0).astype(np.int64)
    data = wb.Dataset.from_arrays(x, outlier, batch_size=10)

    def mean_score_gap(scores: np.ndarray, labels: np.ndarray) -> float:
        assert scores.dtype == np.float32 and scores.shape == (40, 1)
        return float(scores[labels == 0].mean() - scores[labels == 1].mean())

    result = evaluate(_anomaly_detector(), data, metric=mean_score_gap, bar=False)
    assert result.output == "scores"
    assert result.value == pytest.approx(x[x[:, 0] >= 0, 0].mean() - x[x[:, 0] < 0, 0].mean())
    with pytest.raises(InputError, match=r"accuracy does not fit output 'scores'.*class scores"):
        evaluate(_anomaly_detector(), data, output="scores", bar=False)
    # accuracy fits only the predicted labels (-1 / 1 here), compared as labels
    signs = np.where(outlier == 1, -1, 1)
    labelled = wb.Dataset.from_arrays(x, signs, batch_size=10)
    assert evaluate(_anomaly_detector(), labelled, bar=False).output == "label"


def test_no_output_fits_the_metric() -> None:
    rng = np.random.default_rng(1)
    data = [(rng.random((4, 2), dtype=np.float32), np.zeros(4, np.int64))]
    with pytest.raises(InputError, match="top3 fits none of the model's outputs"):
        evaluate(_anomaly_detector(), data, metric="top3", bar=False)


def test_sweep_scores_the_named_output_and_records_it(tmp_path) -> None:
    from workbench.evaluation.sweep import sweep

    x, labels, _ = _classifier_data()
    data = wb.Dataset.from_arrays(x, labels, batch_size=20)
    common = {"variants": ["baseline"], "backends": ["onnxruntime"], "data": data}
    chosen = sweep(_converted_classifier(), **common, budget_s=0.01, store=tmp_path / "a.sqlite")
    assert chosen.df["metric_value"].iloc[0] == pytest.approx(0.75)
    assert "output" not in chosen.meta
    named = sweep(
        _converted_classifier(),
        **common,
        output="label",
        budget_s=0.01,
        store=tmp_path / "a.sqlite",
    )
    assert named.meta["output"] == "label" and named.sweep_id != chosen.sweep_id
    refused = sweep(
        _converted_classifier(),
        **common,
        metric="top2",
        output="label",
        budget_s=0.01,
        store=tmp_path / "a.sqlite",
    )
    assert "top2 does not fit output 'label'" in refused.df["error"].iloc[0]


def test_workbench_sweep_output_flag(tmp_path, capsys) -> None:
    from workbench.cli import main

    x, labels, _ = _classifier_data()
    _converted_classifier().to_onnx(tmp_path / "classifier.onnx")
    np.savez(tmp_path / "data.npz", x=x, y=labels)
    argv = ["sweep", str(tmp_path / "classifier.onnx"), "--variants", "baseline"]
    argv += ["--backends", "onnxruntime", "--data", str(tmp_path / "data.npz")]
    argv += ["--budget-s", "0.01", "--store", str(tmp_path / "s.sqlite")]
    main([*argv, "--metric", "top2", "--output", "0"])  # a failed point, said so
    assert "top2 does not fit output 'label'" in capsys.readouterr().out
    assert main([*argv, "--output", "probabilities"]) == 0
    assert "75" in capsys.readouterr().out  # the accuracy, 0.75


def test_sensitivity_scores_its_baseline_on_the_output_the_metric_fits() -> None:
    x, labels, _ = _classifier_data()
    data = wb.Dataset.from_arrays(x, labels, batch_size=20)
    model = _converted_classifier()
    report = wb.sensitivity(model, data, "int8-dynamic", backend="onnxruntime", budget_s=0.01)
    assert report.attrs["baseline"] == pytest.approx(0.75)


@pytest.mark.parametrize("zipmap", [False, True], ids=["probabilities", "zipmap"])
def test_a_converted_random_forest_scores_its_real_accuracy(zipmap: bool) -> None:
    """skl2onnx puts the label first; with ZipMap the probabilities are a sequence of
    maps, which no built-in metric fits, so the labels are compared as labels."""
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    # an odd number of fully grown (pure-leaf) trees: no probability can tie at 0.5, where
    # ORT's label and an argmax may break the tie differently with the summation order
    forest = RandomForestClassifier(21, random_state=0).fit(x[:400], y[:400])
    options = {id(forest): {"zipmap": zipmap}}
    model = wb.load(skl2onnx.to_onnx(forest, x[:1], options=options).SerializeToString())
    assert model.outputs[0].dtype == "int64"  # the label comes first
    data = wb.Dataset.from_arrays(x[400:], y[400:], batch_size=32)
    result = evaluate(model, data, bar=False)
    labels = wb.backend("onnxruntime").compile(model, "cpu").run(x[400:])[0]
    assert result.value == pytest.approx((labels == y[400:]).mean())
    assert result.value == pytest.approx(forest.score(x[400:], y[400:]), abs=0.02)
