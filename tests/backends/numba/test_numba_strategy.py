"""Convolution kernels chosen by timing the candidates, and the cache of those choices
(`workbench.backends.numba.strategy`). A fake timer makes the choice deterministic."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numba_helpers import OPSET

import workbench as wb
from workbench.backends.numba import packed_gemm, strategy
from workbench.errors import BackendOptionError
from workbench.model import Model
from workbench.testing.tolerances import assert_close

RNG = np.random.default_rng(11)
#: a 3x3 stride-1 Conv with 16 channels in and out: the rules pick Winograd; im2col in
#: two block sizes (blocks of 2 and 1 output rows with `BLOCK_BYTES`), Winograd, the
#: direct loop (small enough) and, on AVX-512, the implicit GEMM are the candidates
CANDIDATES = ("direct", "im2col", "im2col:small", "winograd") + (
    ("packed",) if packed_gemm.AVAILABLE else ()
)
BLOCK_BYTES = 8192


def _conv_model() -> Model:
    from onnx import helper, numpy_helper

    from workbench.loaders.onnx import model_from_proto

    c = m = 16
    weight = RNG.standard_normal((m, c, 3, 3)).astype(np.float32)
    bias = RNG.standard_normal(m).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["y0"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["y0"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "strategy",
        [helper.make_tensor_value_info("x", 1, ["N", c, 6, 7])],
        [helper.make_tensor_value_info("y", 1, None)],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)
    return model_from_proto(proto, name="strategy")


class FakeTimer:
    """Runs each candidate (its output is real) and reports the milliseconds given."""

    def __init__(self, ms: dict[str, float]) -> None:
        self.ms = ms
        self.calls: list[str] = []

    def __call__(self, name: str, run: Callable[[], Any]) -> float:
        run()
        self.calls.append(name)
        return self.ms[name]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from workbench.backends.numba import cpu_ops

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu_ops, "IM2COL_BLOCK_BYTES", BLOCK_BYTES)
    return tmp_path


def _fake(monkeypatch: pytest.MonkeyPatch, fastest: str) -> FakeTimer:
    timer = FakeTimer(
        {name: 1.0 if name == fastest else 2.0 + i for i, name in enumerate(CANDIDATES)}
    )
    monkeypatch.setattr(strategy, "TIMER", timer)
    return timer


INPUTS = {"x": RNG.standard_normal((2, 16, 6, 7)).astype(np.float32)}


@pytest.mark.parametrize("fastest", CANDIDATES)
def test_measuring_runs_the_fastest_candidate_with_the_rules_results(
    monkeypatch: pytest.MonkeyPatch, cache_dir: Path, fastest: str
) -> None:
    """The fastest candidate (by the timer) runs, its outputs equal the rule-based
    kernel's (float32 `op` tolerances), and only its packed weights are kept."""
    model = _conv_model()
    timer = _fake(monkeypatch, fastest)
    session = wb.backend("numba").compile(model, "cpu", conv_strategy="measure")
    (measured,) = session.run(INPUTS)
    (rules,) = wb.backend("numba").compile(model, "cpu", conv_strategy="rules").run(INPUTS)
    assert_close(measured, rules, scope="op")
    (row,) = session.conv_strategies
    assert (row["strategy"], row["source"], row["batch"]) == (fastest, "measured", 2)
    assert row["rules"] == "winograd"  # what the rules would have run, beside the choice
    assert set(row["times_ms"]) == set(CANDIDATES) == set(timer.calls)
    assert row["times_ms"][fastest] == 1.0
    conv = next(n for n in session.graph.nodes if n.op_type == "Conv")
    assert ("winograd_u" in conv.cache) == (fastest == "winograd")
    (timing,) = [t for t in session.run_layers(INPUTS, repeats=1) if t.op_type == "Conv"]
    why = "measured" if fastest == "winograd" else "measured, the rules' winograd"
    assert timing.detail["note"].startswith(f"conv strategy {fastest} ({why}; ms: ")


def test_the_cache_is_written_then_read_without_measuring(
    monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    model = _conv_model()
    timer = _fake(monkeypatch, "im2col")
    wb.backend("numba").compile(model, "cpu").run(INPUTS)  # measure is the default
    measured = len(timer.calls)
    assert measured and measured % len(CANDIDATES) == 0  # rounds of every candidate
    (entry,) = json.loads((cache_dir / strategy.CACHE_FILE).read_text())["entries"].values()
    assert (entry["strategy"], entry["rules"]) == ("im2col", "winograd")
    again = wb.backend("numba").compile(model, "cpu")
    again.run(INPUTS)
    assert len(timer.calls) == measured  # nothing timed
    (row,) = again.conv_strategies
    assert (row["strategy"], row["source"]) == ("im2col", "cache")
    # another batch is another layer shape: measured once more
    again.run({"x": np.concatenate([INPUTS["x"]] * 2)})
    assert len(timer.calls) == 2 * measured


def test_rules_measure_nothing_and_write_no_cache(
    monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    timer = _fake(monkeypatch, "direct")
    session = wb.backend("numba").compile(_conv_model(), "cpu", conv_strategy="rules")
    session.run(INPUTS)
    assert timer.calls == []
    assert not (cache_dir / strategy.CACHE_FILE).exists()
    (row,) = session.conv_strategies
    assert (row["strategy"], row["source"], row["times_ms"]) == ("winograd", "rules", {})


def test_a_damaged_cache_is_measured_again(
    monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    (cache_dir / strategy.CACHE_FILE).write_text("{not json")
    timer = _fake(monkeypatch, "winograd")
    session = wb.backend("numba").compile(_conv_model(), "cpu")
    session.run(INPUTS)
    assert timer.calls and session.conv_strategies[0]["source"] == "measured"
    assert json.loads((cache_dir / strategy.CACHE_FILE).read_text())["entries"]


def test_an_unknown_strategy_mode_is_one_clear_error() -> None:
    with pytest.raises(BackendOptionError, match="conv_strategy"):
        wb.backend("numba").compile(_conv_model(), "cpu", conv_strategy="fastest")
