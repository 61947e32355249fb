"""Every public entry point checks its numbers first and refuses in one line.

The shared validators live in `workbench.argtypes`; the CLI's argument types are the
same checks (tests/test_cli.py covers the command line).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import pytest

import workbench as wb
from workbench.argtypes import MAX_INPUT_BYTES, check_input_bytes, input_limit, printable
from workbench.backends import base
from workbench.errors import BackendError, ParameterError, TransformError, WorkbenchError
from workbench.model import Model, TensorSpec
from workbench.scenarios import VirtualClock
from workbench.testing import toy_mlp
from workbench.testing.serving import LatencyModelBackend

MLP = "digits-mlp"

BAD_NUMBERS: list[tuple[str, Callable[[], Any], str]] = [
    # (case, the call, the one line it gets)
    ("budget as text", lambda: wb.profile(MLP, budget_s="1"), "budget_s must be a number, got '1'"),
    ("negative budget", lambda: wb.profile(MLP, budget_s=-1), "budget_s must be greater than 0"),
    ("zero budget", lambda: wb.profile(MLP, budget_s=0), "budget_s must be greater than 0"),
    ("nan budget", lambda: wb.profile(MLP, budget_s=math.nan), "budget_s must be a finite number"),
    ("batch 2**63", lambda: wb.profile(MLP, batch_size=2**63), "batch_size must be at most"),
    ("fractional batch", lambda: wb.profile(MLP, batch_size=2.5), "batch_size must be a whole"),
    ("bool batch", lambda: wb.profile(MLP, batch_size=True), "batch_size must be a whole"),
    ("sweep budget", lambda: wb.sweep(MLP, budget_s=math.inf), "budget_s must be a finite"),
    ("sweep batch", lambda: wb.sweep(MLP, batch_size=0), "batch_size must be at least 1"),
    (
        "scenario minimum of years",
        lambda: wb.scenario(MLP, min_duration_s=1e9),
        "min_duration_s must be at most 86,400",
    ),
    (
        "scenario negative rate",
        lambda: wb.scenario(MLP, "server", rate_per_s=-1),
        "rate_per_s must be greater than 0",
    ),
    (
        "scenario nan target",
        lambda: wb.scenario(MLP, "server", rate_per_s=10, target_latency_ms=math.nan),
        "target_latency_ms must be a finite number",
    ),
    ("slo steps as float", lambda: wb.slo(MLP, 5.0, steps=2.5), "steps must be a whole number"),
    (
        "batch sweep fractional size",
        lambda: wb.batch_sweep(MLP, batch_sizes=[1, 2.5]),
        "each of batch_sizes must be a whole number, got 2.5",
    ),
    (
        "compare backends rounds",
        lambda: wb.compare_backends(MLP, rounds=10**6),
        "rounds must be at most 100",
    ),
    (
        "fine-tune epochs as float",
        lambda: wb.prune(MLP, sparsity=0.5, structured=True, finetune_epochs=2.5),
        "finetune_epochs must be a whole number, got 2.5 (float)",
    ),
    (
        "negative fine-tune epochs",
        lambda: wb.prune(MLP, sparsity=0.5, structured=True, finetune_epochs=-5),
        "finetune_epochs must be at least 0, got -5",
    ),
    (
        "a hundred million epochs",
        lambda: wb.prune(MLP, sparsity=0.5, structured=True, finetune_epochs=100_000_000),
        "finetune_epochs must be at most 1,000",
    ),
]


@pytest.mark.parametrize(
    ("call", "message"), [c[1:] for c in BAD_NUMBERS], ids=[c[0] for c in BAD_NUMBERS]
)
def test_bad_numbers_are_refused_in_one_line(call, message) -> None:
    with pytest.raises(ParameterError) as error:
        call()
    assert message in str(error.value) and "\n" not in str(error.value)


BAD_RECIPES: list[tuple[str, Any, str]] = [
    ("name not text", {"name": ["x"]}, "a recipe's 'name' is a transform name, got ['x']"),
    ("version not a number", {"name": "fp16", "version": "x"}, "'version' is a whole number"),
    ("format missing its number", {"name": "fp16", "format": None}, "'format' is a whole number"),
    ("config not a dict", {"name": "fp16", "config": [1, 2]}, "'config' holds field values"),
    ("chain not a list", {"name": "fp16", "chain": "abc"}, "'chain' is a list of recipes"),
    ("chain of numbers", {"name": "fp16", "chain": [5]}, "'chain' is a list of recipes"),
    (
        "list field given a number",
        {"name": "prune-magnitude", "config": {"exclude": 5}},
        "prune-magnitude field exclude is a list, got 5",
    ),
]


@pytest.mark.parametrize(
    ("recipe", "message"), [c[1:] for c in BAD_RECIPES], ids=[c[0] for c in BAD_RECIPES]
)
def test_malformed_recipe_dicts_are_one_line(recipe, message) -> None:
    with pytest.raises(TransformError, match=message.replace("[", r"\[").replace("(", r"\(")):
        wb.transform(toy_mlp(), recipe)


def _model(name: str, shape: tuple[int | str, ...]) -> Model:
    spec = TensorSpec("x", shape)
    return Model(framework="onnx", name=name, inputs=[spec], outputs=[spec], layers=[])


def test_inputs_over_the_limit_are_refused_before_allocating(monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_MAX_INPUT_MB", str(MAX_INPUT_BYTES // 2**20))
    wide = _model("wide", ("batch", 1000, 1000))
    # 1,250 x 1000 x 1000 float32 = 4.66 GiB, past the 4 GiB default: nothing is allocated
    with pytest.raises(ParameterError) as error:
        check_input_bytes(wide, 1250)
    assert str(error.value) == (
        "inputs of wide at batch size 1,250 need 4.7 GiB, over the 4.0 GiB limit for "
        "generated inputs; use a smaller batch size, or set WORKBENCH_MAX_INPUT_MB (MiB) "
        "to allow more"
    )
    assert check_input_bytes(wide, 1000) == 4 * 10**9 < MAX_INPUT_BYTES
    monkeypatch.delenv("WORKBENCH_MAX_INPUT_MB")  # by default, never past a quarter of memory
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert input_limit() == min(MAX_INPUT_BYTES, memory // 4)
    monkeypatch.setenv("WORKBENCH_MAX_INPUT_MB", "8192")
    assert check_input_bytes(wide, 1250) == 5 * 10**9
    negative = _model("neg", (-1, 4))
    with pytest.raises(ParameterError, match="'x' of neg has a negative dimension"):
        check_input_bytes(negative, 1)


def test_printable_escapes_what_could_drive_a_terminal() -> None:
    assert printable("conv\x1b]0;title\x07\r\x9b2J\u202egnp.\tok\n") == (
        "conv\\x1b]0;title\\x07\\x0d\\x9b2J\\u202egnp.\tok\n"
    )


class _BrokenRuns:
    """A backend that compiles, then fails on the first run (a runtime crash)."""

    name = "broken-runs"

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> Any:
        return self

    def runner(self, inputs: Any) -> Any:
        raise BackendError("broken-runs crashed running batch 1")

    def close(self) -> None:
        pass


def test_slo_keeps_going_when_one_configuration_fails() -> None:
    clock = VirtualClock()
    base.register("latency-model")(lambda: LatencyModelBackend(clock, 1.0, 0.25))
    base.register("broken-runs")(_BrokenRuns)
    try:
        result = wb.slo(
            toy_mlp(), 5.0, ["broken-runs", "latency-model"], clock=clock, steps=2,
            min_queries=50, min_duration_s=0.1, warmup=1,
        )  # fmt: skip
    finally:
        for name in ("latency-model", "broken-runs"):
            base._FACTORIES.pop(name, None)
            base._INSTANCES.pop(name, None)
    rows = result.table.set_index("backend")
    assert rows.loc["latency-model", "max_rate_per_s"] > 0
    assert math.isnan(rows.loc["broken-runs", "max_rate_per_s"])
    assert rows.loc["broken-runs", "limited_by"] == "failed: broken-runs crashed running batch 1"


def test_validators_are_workbench_errors() -> None:
    assert issubclass(ParameterError, WorkbenchError)
