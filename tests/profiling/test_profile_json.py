"""End-to-end profiles: environment, JSON round trip, rich display."""

from __future__ import annotations

import json

import pytest

import workbench as wb
from workbench.errors import CancelledError
from workbench.progress import CancelToken
from workbench.testing import toy_cnn


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_profile_end_to_end_and_round_trip(backend: str) -> None:
    result = wb.profile(
        toy_cnn(), backend=backend, device="cpu", batch_size=4, layers=False, budget_s=0.2
    )
    assert result.batch_size == 4 and result.latency.n >= 10
    assert result.latency.median > 0
    env = result.environment
    assert env["versions"]["numpy"] and env["cores"] >= 1 and env["cpu"]
    data = json.loads(result.to_json())
    for key in ("model", "backend", "device", "batch_size", "layers", "environment"):
        assert key in data
    assert set(data["latency_ms"]) >= {"median", "mean", "p90", "p99", "std", "n"}
    again = wb.Profile.from_json(result.to_json())
    assert again.latency.samples_ms == result.latency.samples_ms
    assert again.model == result.model and again.run_id == result.run_id
    assert "p50" in result._repr_html_()


def test_profile_reports_progress_and_can_be_cancelled() -> None:
    messages = []
    wb.profile(
        toy_cnn(),
        layers=False,
        budget_s=0.05,
        progress=lambda fraction, message: messages.append((fraction, message)),
    )
    assert messages[0][0] == 0.0 and messages[-1] == (1.0, "done")
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        wb.profile(toy_cnn(), layers=False, cancel=token)


def test_profile_with_real_inputs_uses_their_batch() -> None:
    model = toy_cnn()
    result = wb.profile(model, inputs=model.example_inputs(7), layers=False, budget_s=0.05)
    assert result.batch_size == 7
