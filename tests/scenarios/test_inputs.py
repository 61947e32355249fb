"""Every timing API runs the inputs it is given (arrays or a dataset), not generated ones."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import workbench as wb
from workbench.errors import InputError
from workbench.scenarios import VirtualClock, batch_sweep, scenario, slo
from workbench.testing import toy_mlp
from workbench.testing.serving import LatencyModelSession


@pytest.fixture
def staged(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, np.ndarray]]:
    """Every input dict a latency-model session stages a runner with."""
    seen: list[dict[str, np.ndarray]] = []
    real = LatencyModelSession.runner

    def recording(self: LatencyModelSession, inputs: Any) -> Any:
        seen.append({k: np.array(v) for k, v in self.model.check_inputs(inputs).items()})
        return real(self, inputs)

    monkeypatch.setattr(LatencyModelSession, "runner", recording)
    return seen


def _pool() -> np.ndarray:
    # distinct rows, none of them in [0, 1) as generated inputs are
    return (np.arange(5 * 8, dtype=np.float32).reshape(5, 8) + 10.0) * -1.0


def _assert_rows_of_pool(seen: list[dict[str, np.ndarray]], pool: np.ndarray) -> None:
    assert seen
    for arrays in seen:
        (x,) = arrays.values()
        expected = pool[np.arange(len(x)) % len(pool)]  # repeated from the start past 5
        np.testing.assert_array_equal(x, expected)


def test_scenario_runs_the_given_arrays(clock: VirtualClock, staged: list) -> None:
    pool = _pool()
    result = scenario(
        toy_mlp(),
        "multi-stream",
        "latency-model",
        clock=clock,
        warmup=1,
        inputs=pool,
        samples_per_query=7,
        min_queries=5,
        min_duration_s=0.01,
    )
    assert len(result.queries) >= 5
    _assert_rows_of_pool(staged, pool)
    assert {len(next(iter(a.values()))) for a in staged} == {7}


def test_scenario_takes_a_dataset(clock: VirtualClock, staged: list) -> None:
    pool = _pool()
    data = wb.Dataset.from_arrays(pool, np.zeros(5), batch_size=2)
    scenario(
        toy_mlp(),
        "single-stream",
        "latency-model",
        clock=clock,
        warmup=1,
        inputs=data,
        min_queries=3,
        min_duration_s=0.0,
    )
    _assert_rows_of_pool(staged, pool)


def test_slo_and_batch_sweep_run_the_given_arrays(clock: VirtualClock, staged: list) -> None:
    pool = _pool()
    slo(
        toy_mlp(),
        p99_ms=20.0,
        backends=["latency-model"],
        clock=clock,
        steps=1,
        warmup=1,
        min_queries=20,
        min_duration_s=0.01,
        inputs={"input": pool},
    )
    _assert_rows_of_pool(staged, pool)
    staged.clear()
    batch_sweep(toy_mlp(), "latency-model", batch_sizes=[1, 3, 8], budget_s=0.01, inputs=pool)
    _assert_rows_of_pool(staged, pool)
    assert sorted(len(a["input"]) for a in staged) == [1, 3, 8]


def test_inputs_that_do_not_fit_are_refused_before_any_run(clock: VirtualClock) -> None:
    wrong = np.zeros((4, 3), np.float32)
    with pytest.raises(InputError, match="size 3 on axis 1"):
        scenario(toy_mlp(), "single-stream", "latency-model", clock=clock, inputs=wrong)
    with pytest.raises(InputError, match="size 3 on axis 1"):
        slo(toy_mlp(), p99_ms=5.0, backends=["latency-model"], clock=clock, inputs=wrong)


def test_compare_backends_and_runtimes_send_the_inputs_to_every_child() -> None:
    pool = _pool()
    specs: list[dict[str, Any]] = []

    def launcher(spec: dict[str, Any]) -> dict[str, Any]:
        with np.load(spec["inputs"]) as arrays:
            specs.append({**spec, "arrays": {k: arrays[k] for k in arrays.files}})
        return {"error": "not measured in this test"}

    images = pool.reshape(5, 1, 8, 1).repeat(8, axis=3)
    wb.compare_backends(
        "digits-mlp", [2, 7], backends=["onnxruntime"], rounds=1, launcher=launcher, inputs=images
    )
    assert sorted(s["batch_size"] for s in specs) == [2, 7]
    for spec in specs:
        (x,) = spec["arrays"].values()
        assert x.shape == (spec["batch_size"], 1, 8, 8)
        expected = pool[np.arange(spec["batch_size"]) % 5]
        np.testing.assert_array_equal(x[:, 0, :, 0], expected)


def test_a_fair_child_times_the_inputs_it_was_sent(tmp_path) -> None:
    from workbench.profiling.compare_runtimes import _child_inputs

    model = wb.samples.load("digits-mlp")
    x = np.full((3, 1, 8, 8), 7.0, np.float32)
    np.savez(tmp_path / "inputs.npz", **{model.inputs[0].name: x})
    spec = {"batch_size": 3, "inputs": str(tmp_path / "inputs.npz")}
    np.testing.assert_array_equal(next(iter(_child_inputs(model, spec).values())), x)
    generated = _child_inputs(model, {"batch_size": 3})
    assert next(iter(generated.values())).max() < 1.0


def test_profile_takes_a_dataset_and_times_its_first_batch(monkeypatch) -> None:
    from workbench.backends import base
    from workbench.testing.fake_backend import FakeBackend, FakeSession

    seen: list[np.ndarray] = []
    real = FakeSession.runner

    def recording(self: FakeSession, inputs: Any) -> Any:
        seen.append(np.array(next(iter(self.model.check_inputs(inputs).values()))))
        return real(self, inputs)

    monkeypatch.setattr(FakeSession, "runner", recording)
    base.register("fake-inputs")(FakeBackend)
    try:
        pool = _pool()
        data = wb.Dataset.from_arrays(pool, np.zeros(5), batch_size=2)
        p = wb.profile(toy_mlp(), "fake-inputs", batch_size=3, inputs=data, layers=False)
        assert p.batch_size == 3
        np.testing.assert_array_equal(seen[0], pool[:3])
        arrays = wb.profile(toy_mlp(), "fake-inputs", batch_size=3, inputs=pool, layers=False)
        assert arrays.batch_size == 5  # arrays set their own batch, as before
    finally:
        base._FACTORIES.pop("fake-inputs", None)
        base._INSTANCES.pop("fake-inputs", None)
