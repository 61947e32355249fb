"""Every result class keeps one JSON contract: ``to_json(path=None, *, indent=1) -> str``
and the classmethod ``from_json(text_or_path)``, and round-trips through it unchanged.

Two results are not in the list on purpose: a sensitivity report is a pandas DataFrame
(pandas' own ``to_json`` is its JSON), and a `Comparison` (``wb.compare``) is a view of
the profiles it holds, each of which round-trips.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from workbench.errors import InputError
from workbench.evaluation.compare_backends import BackendComparison
from workbench.evaluation.metrics import Evaluation
from workbench.evaluation.sweep import TradeoffTable
from workbench.planning import Machine, Plan, plan
from workbench.profiling.ceilings import Ceilings
from workbench.profiling.compare_runtimes import RoundResult, Runtime, RuntimeComparison
from workbench.profiling.generate import GenerationProfile
from workbench.profiling.profile import Profile
from workbench.profiling.timer import Measurement
from workbench.scenarios.batch import BatchSweep
from workbench.scenarios.result import MINIMUMS, ScenarioResult, query_frame
from workbench.scenarios.slo import POINT_COLUMNS, TABLE_COLUMNS, SloResult

FAST = Measurement((0.486653, 0.4912, 0.4833, 0.4871, 0.4899), (1.5,), "fast")
SLOW = Measurement((75.5123, 75.4981, 75.5309, 75.5012), (), "slow")


def _profile() -> Profile:
    layers = pd.DataFrame(
        {"layer": ["fc1", "fc2"], "op_type": ["Gemm", "Gemm"], "latency_ms": [0.3, 0.1],
         "share": [0.75, 0.25], "flops": [2.0e6, 5.0e5]}
    )  # fmt: skip
    return Profile("digits-mlp", "onnxruntime", "cpu", 8, FAST, layers=layers)


def _generation() -> GenerationProfile:
    return GenerationProfile(
        model="llama-tiny", backend="torch", device="cpu", batch_size=1, prompt_length=4,
        output_length=3, depth=0, tokens=((1, 2, 3),), ttft=FAST, inter_token=FAST, tpot=FAST,
        e2e=SLOW, kv_bytes_per_token=256, kv_cache_bytes=1792, kv_cache_bytes_measured=1792,
        weights_bytes=1 << 20, step_weights_bytes=1 << 20,
    )  # fmt: skip


def _runtimes() -> RuntimeComparison:
    rounds = tuple(
        RoundResult(name, i, i, m, (0.12,), (7.9,), startup={"compile_s": 1.25})
        for i, (name, m) in enumerate([("onnxruntime", FAST), ("torch", SLOW)])
    )
    return RuntimeComparison(
        "digits-mlp", 64, (Runtime("onnxruntime"), Runtime("torch")), "onnxruntime", rounds
    )


def _tradeoffs() -> TradeoffTable:
    rows = [
        {"variant": "baseline", "backend": "onnxruntime", "device": "cpu", "latency_ms": 0.49,
         "metric": "accuracy", "metric_value": 0.97, "speedup": 1.0, "pareto": True,
         "error": None},
        {"variant": "int8", "backend": "onnxruntime", "device": "cpu", "latency_ms": math.nan,
         "metric": "accuracy", "metric_value": math.nan, "speedup": math.nan, "pareto": False,
         "error": "RuntimeError: no kernel"},
    ]  # fmt: skip
    return TradeoffTable(pd.DataFrame(rows), sweep_id="s1", meta={"batch_size": 32}, notes=["n"])


def _scenario() -> ScenarioResult:
    schedule = np.arange(50) * 0.001
    frame = query_frame(0.0, schedule, schedule, schedule, schedule + 0.0005, samples=1, batch=1)
    return ScenarioResult("server", "m", "onnxruntime", "cpu", {}, MINIMUMS["server"], frame, 0.05)


def _slo() -> SloResult:
    row = ["int8", "onnxruntime", "cpu", 31_166.4, 8.0, 2.0, 0.8123, 3.1e11, 40_000.0,
           math.nan, "p99", 7]  # fmt: skip
    return SloResult(
        p99_ms=5.0,
        table=pd.DataFrame([row], columns=TABLE_COLUMNS),
        points=pd.DataFrame(columns=POINT_COLUMNS),
        minimums=MINIMUMS["offline"],
    )


def _batches() -> BatchSweep:
    table = pd.DataFrame({"batch_size": [1, 8], "p50_ms": [0.49, 3.1], "noisy": [False, True]})
    return BatchSweep("m", "onnxruntime", "cpu", table, 8)


def _plan() -> Plan:
    table = pd.DataFrame(
        [{c: math.nan for c in TABLE_COLUMNS}
         | {"variant": "baseline", "backend": "onnxruntime", "device": "cpu",
            "max_rate_per_s": 500.0, "limited_by": "p99", "points": 5}],
        columns=TABLE_COLUMNS,
    )  # fmt: skip
    measured = SloResult(5.0, table, pd.DataFrame(), MINIMUMS["server"])
    rented = Machine(
        "rented", "USD", rental_per_hour=3.6, power_watts=200.0, power_basis="declared"
    )
    return plan([(rented, measured)], target_rate_per_s=700.0, p99_ms=5.0)


def _placement() -> Any:
    from tests.plan.test_placement import LINK, A, B, chain_model
    from workbench.planning.placement import place

    return place(A, B, model=chain_model(), link=LINK, max_cuts=2)


RESULTS: dict[str, Callable[[], Any]] = {
    "Profile": _profile,
    "GenerationProfile": _generation,
    "Measurement": lambda: FAST,
    "RuntimeComparison": _runtimes,
    "BackendComparison": lambda: BackendComparison("digits-mlp", (64,), {64: _runtimes()}),
    "TradeoffTable": _tradeoffs,
    "Evaluation": lambda: Evaluation("accuracy", 0.97, True, "m", "baseline", "ort", "cpu", 9),
    "BatchSweep": _batches,
    "ScenarioResult": _scenario,
    "SloResult": _slo,
    "Plan": _plan,
    "Placement": _placement,
    "Ceilings": lambda: Ceilings("cpu", 1e12, 20e9, bandwidth_by_bytes=((16 << 20, 150e9),)),
}


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_every_result_round_trips_through_its_json(name: str, tmp_path: Path) -> None:
    result = RESULTS[name]()
    cls = type(result)
    text = result.to_json()
    assert isinstance(json.loads(text), dict)
    again = cls.from_json(text)
    assert type(again) is cls and again.to_json() == text  # nothing lost or changed
    path = tmp_path / "result.json"
    assert result.to_json(path) == text == path.read_text(encoding="utf-8")
    assert cls.from_json(path).to_json() == cls.from_json(str(path)).to_json() == text
    assert "\n" not in result.to_json(indent=None)


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_every_result_has_the_same_json_signatures(name: str) -> None:
    cls = type(RESULTS[name]())
    to_json = inspect.signature(cls.to_json).parameters
    assert [(p.name, p.kind, p.default) for p in to_json.values()] == [
        ("self", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("path", inspect.Parameter.POSITIONAL_OR_KEYWORD, None),
        ("indent", inspect.Parameter.KEYWORD_ONLY, 1),
    ]
    assert list(inspect.signature(cls.from_json).parameters) == ["text_or_path"]


def test_a_missing_file_or_garbled_text_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot read a profile from .*nothing\.json"):
        Profile.from_json(tmp_path / "nothing.json")
    with pytest.raises(InputError, match="a scenario result must be JSON"):
        ScenarioResult.from_json("{not json")
