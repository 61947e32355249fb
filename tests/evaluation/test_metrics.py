"""evaluate and metrics: hand-computed values, any backend, own data and metrics, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.errors import CancelledError, UnsupportedModelError, WorkbenchError
from workbench.evaluation.metrics import Metric, evaluate, get_metric
from workbench.progress import CancelToken
from workbench.testing import toy_mlp

OUTPUTS = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])
LABELS = np.array([1, 1, 0, 2])


def test_metrics_by_hand() -> None:
    assert get_metric("accuracy")(OUTPUTS, LABELS) == 0.25
    assert get_metric("top2")(OUTPUTS, LABELS) == 0.5  # rows 0 and 1
    assert get_metric("top-3")(OUTPUTS, LABELS) == 1.0
    assert get_metric("accuracy")(OUTPUTS, np.eye(3)[LABELS]) == 0.25  # one-hot labels
    target = np.zeros_like(OUTPUTS)
    assert get_metric("mse")(OUTPUTS, target) == pytest.approx((OUTPUTS**2).mean())
    assert get_metric("mae")(OUTPUTS, target) == pytest.approx(OUTPUTS.mean())
    assert not get_metric("mse").higher_is_better and get_metric("top5").higher_is_better
    with pytest.raises(WorkbenchError, match="unknown metric"):
        get_metric("f1-ish")


def test_sample_accuracy_matches_its_card_on_both_backends() -> None:
    model = wb.samples.load("digits-mlp")
    data = wb.samples.dataset("digits")
    card = wb.samples.info("digits-mlp")["test_accuracy"]
    for backend in ("torch", "onnxruntime"):
        result = evaluate(model, data, backend=backend, bar=False)
        assert result.value == pytest.approx(card, abs=1e-6)
        assert result.num_samples == 450 and result.backend == backend
        assert result.metric == "accuracy" and result.dataset == "digits/test"


def test_own_data_and_own_metric_from_torch_batches() -> None:
    model = toy_mlp()
    x = torch.rand(20, 8)
    expected = model.module(x).detach().numpy()
    batches = [(x[:12], torch.zeros(12, 4)), (x[12:], torch.zeros(8, 4))]

    def mean_output(outputs: np.ndarray, labels: np.ndarray) -> float:
        return float(outputs.mean())

    mean_output.higher_is_better = False  # type: ignore[attr-defined]
    result = evaluate(model, batches, backend="onnxruntime", metric=mean_output, bar=False)
    assert result.value == pytest.approx(expected.mean(), rel=1e-5)
    assert not result.higher_is_better and result.metric == "mean_output"
    result = evaluate(model, batches, metric=Metric("peak", lambda y, t: y.max()), bar=False)
    assert result.value == pytest.approx(expected.max(), rel=1e-6)
    assert evaluate(model, batches, metric="mse", bar=False).value == pytest.approx(
        (expected.astype(np.float64) ** 2).mean(), rel=1e-5
    )


def test_wrong_backend_is_a_clear_error() -> None:
    # torch runs plain ONNX graphs; one with integer kernels (MatMulInteger) it cannot
    onnx_model = wb.quantize(toy_mlp(), "int8-dynamic")
    data = [(np.zeros((2, 8), np.float32), np.zeros(2))]
    with pytest.raises(UnsupportedModelError, match="ONNX model"):
        evaluate(onnx_model, data, backend="torch")


def test_progress_and_cancel() -> None:
    model = toy_mlp()
    data = wb.Dataset.from_arrays(np.zeros((40, 8), np.float32), np.zeros(40), batch_size=10)
    seen: list[float] = []
    evaluate(model, data, progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and len(seen) == 5
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        evaluate(model, data, cancel=token, bar=False)
