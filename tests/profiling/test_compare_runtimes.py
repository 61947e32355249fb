"""The fair comparison protocol: alternation, spread, ratios, load, failures, and one real child.

A fake launcher answers for the child processes, so the statistics are checked exactly.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import workbench as wb
from workbench.errors import InputError
from workbench.profiling.compare_runtimes import (
    Runtime,
    RuntimeComparison,
    compare_runtimes,
    model_reference,
)

#: median latency (ms) each fake runtime reports, per round
LATENCY = {"onnxruntime": [1.0, 1.2, 0.9], "numba": [1.5, 1.5, 1.8]}


class FakeChildren:
    """Answers child specs with fixed samples, and remembers the order they were asked in."""

    def __init__(self, fail: tuple[str, int] | None = None) -> None:
        self.asked: list[str] = []
        self.specs: list[dict[str, Any]] = []
        self.fail = fail

    def __call__(self, spec: dict[str, Any]) -> dict[str, Any]:
        backend = spec["runtime"]["backend"]
        round_ = sum(a == backend for a in self.asked)
        self.asked.append(backend)
        self.specs.append(spec)
        if self.fail == (backend, round_):
            return {"error": "RuntimeError: out of memory"}
        ms = LATENCY[backend][round_]
        measurement = wb.Measurement((ms, ms, ms * 1.01))
        return {
            "measurement": measurement.to_dict(),
            "load_before": [0.5 + round_, 0.4, 0.3],
            "load_after": [0.6, 0.4, 0.3],
            "pid": 1000 + len(self.asked),
        }


def test_runtimes_alternate_in_rotated_order_and_keep_their_own_options() -> None:
    children = FakeChildren()
    numba = Runtime("numba", options={"layout": "nchw"}, label="numba")
    compare_runtimes(
        "digits-cnn", ["onnxruntime", numba], 32, rounds=3, retries=0, launcher=children
    )
    # round r starts with runtime r mod 2, so neither always runs first
    order = ["onnxruntime", "numba", "numba", "onnxruntime", "onnxruntime", "numba"]
    assert children.asked == order
    ort_specs = [s for s in children.specs if s["runtime"]["backend"] == "onnxruntime"]
    assert all(s["runtime"]["options"] == {} for s in ort_specs)  # never changed for numba
    assert children.specs[1]["runtime"]["options"] == {"layout": "nchw"}
    assert all(s["model"] == "digits-cnn" and s["batch_size"] == 32 for s in children.specs)


def test_the_table_reports_the_spread_over_rounds_and_the_ratio_with_its_range() -> None:
    c = compare_runtimes(
        "digits-cnn", ["onnxruntime", "numba"], 32, rounds=3, retries=0, launcher=FakeChildren()
    )
    row = c.table.loc["numba"]
    assert (row["median_ms"], row["min_ms"], row["max_ms"]) == (1.5, 1.5, 1.8)
    ratios = [1.5 / 1.0, 1.5 / 1.2, 1.8 / 0.9]  # round by round
    assert row["ratio"] == pytest.approx(1.5)
    assert (row["ratio_min"], row["ratio_max"]) == (pytest.approx(min(ratios)), pytest.approx(2.0))
    assert row["load_max"] == 2.5 and row["rounds"] == 3 and row["samples"] == 9
    assert c.table.loc["onnxruntime", "ratio"] == 1.0
    assert "ratio vs onnxruntime" in repr(c) and "numba" in c._repr_html_()


def test_a_failed_child_is_recorded_and_the_other_rounds_still_count() -> None:
    children = FakeChildren(fail=("numba", 1))
    c = compare_runtimes(
        "digits-cnn", ["onnxruntime", "numba"], rounds=3, retries=0, launcher=children
    )
    row = c.table.loc["numba"]
    assert row["rounds"] == 2 and "out of memory" in row["errors"]
    assert (row["ratio_min"], row["ratio_max"]) == (pytest.approx(1.5), pytest.approx(2.0))


def test_a_comparison_round_trips_through_json() -> None:
    c = compare_runtimes(
        "digits-cnn", ["numba", ("onnxruntime", "cpu")], rounds=2, launcher=FakeChildren()
    )
    back = RuntimeComparison.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c
    assert back.baseline == "numba" and back.table.loc["onnxruntime", "ratio"] < 1


@pytest.mark.parametrize(
    ("runtimes", "kwargs", "message"),
    [
        ([], {}, "at least one runtime"),
        (["numba", "numba"], {}, "must differ"),
        (["numba"], {"baseline": "torch"}, "not one of the runtimes"),
        (["numba"], {"rounds": 0}, "at least 1"),
    ],
    ids=["none", "duplicate", "unknown-baseline", "no-rounds"],
)
def test_bad_requests_say_what_to_do(runtimes, kwargs, message) -> None:
    with pytest.raises(InputError, match=message):
        compare_runtimes("digits-cnn", runtimes, launcher=FakeChildren(), **kwargs)


def test_only_models_a_child_can_load_again_travel(tmp_path) -> None:
    assert model_reference("digits-mlp") == "digits-mlp"
    assert model_reference(wb.samples.load("digits-mlp")) == "digits-mlp"
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not checked here")
    assert model_reference(path) == str(path.resolve())
    with pytest.raises(InputError, match="neither a sample"):
        model_reference("no-such-model")
    derived = wb.samples.load("digits-mlp").derive(recipe={"name": "int8-dynamic"})
    with pytest.raises(InputError, match="fresh process"):
        model_reference(derived)


def test_a_real_child_process_measures_at_the_runtime_defaults() -> None:
    c = compare_runtimes(
        "digits-mlp", ["onnxruntime"], rounds=1, retries=0, budget_s=0.05, warmup_s=0.01
    )
    (result,) = c.results
    assert result.error == "" and result.measurement is not None
    assert result.measurement.n >= 10 and result.measurement.median > 0
    assert len(result.load_before) == 3 and result.pid > 0
    assert "onnxruntime" in json.dumps(result.environment)
    # the child says how many threads it ran with and what the machine did meanwhile
    assert result.environment["threads"] >= 1 and result.environment["cpus"]["available"] >= 1
    assert result.measurement.contention is not None


def test_variants_of_a_model_each_travel_with_their_own_file(tmp_path) -> None:
    int8 = tmp_path / "int8.onnx"
    int8.write_bytes(b"a variant's file")
    children = FakeChildren()
    variant = Runtime("onnxruntime", label="int8", model=str(int8))
    with pytest.raises(InputError, match="neither a sample"):
        compare_runtimes("digits-mlp", [variant, Runtime("numba", model="missing.onnx")])
    c = compare_runtimes("digits-mlp", ["numba", variant], rounds=1, launcher=children)
    assert [s["model"] for s in children.specs] == ["digits-mlp", str(int8.resolve())]
    assert RuntimeComparison.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def steady_children(latency: dict[str, list[float]], **measured: Any) -> Any:
    """A launcher whose runtimes report ``latency[backend][round]`` (cycled), steady samples."""
    asked: list[str] = []

    def launch(spec: dict[str, Any]) -> dict[str, Any]:
        backend = spec["runtime"]["backend"]
        values = latency[backend]
        ms = values[sum(a == backend for a in asked) % len(values)]
        asked.append(backend)
        m = wb.Measurement((ms, ms, ms * 1.01), **measured)
        return {"measurement": m.to_dict(), "environment": {"threads": 2}}

    launch.asked = asked  # type: ignore[attr-defined]
    return launch


def test_agreeing_quiet_rounds_need_no_retry_and_carry_no_verdict() -> None:
    launch = steady_children({"onnxruntime": [1.0, 1.02, 0.98], "numba": [1.2, 1.22, 1.19]})
    c = compare_runtimes("digits-cnn", ["onnxruntime", "numba"], rounds=3, launcher=launch)
    assert c.rounds_run == 3 and len(launch.asked) == 6
    assert list(c.table["verdict"]) == ["", ""] and not c.table["noisy"].any()
    assert c.table.loc["numba", "threads"] == "2"
    assert "uncertain" not in repr(c)


def test_disagreeing_rounds_are_retried_bounded_then_called_uncertain() -> None:
    """Rounds that keep disagreeing (numba 1.2, 3.6, 1.2, 3.6 ms...): two more, then a verdict."""
    launch = steady_children({"onnxruntime": [1.0], "numba": [1.2, 3.6]})
    c = compare_runtimes(
        "digits-cnn", ["onnxruntime", "numba"], rounds=3, retries=2, launcher=launch
    )
    assert c.rounds_run == 5 and len(launch.asked) == 10 and c.planned_rounds == 3
    verdict = c.table.loc["numba", "verdict"]
    assert verdict.startswith("noisy: rounds disagree (medians 1.2 ms–3.6 ms)")
    assert verdict.endswith("after 2 extra round(s)")
    assert c.table.loc["numba", "noisy"] and not c.table.loc["onnxruntime", "noisy"]
    assert "2 more than planned" in repr(c) and "uncertain (read with the range): numba" in repr(c)
    back = RuntimeComparison.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back.table.loc["numba", "verdict"] == verdict


def test_retries_stop_once_more_rounds_outvote_an_outlier() -> None:
    launch = steady_children({"onnxruntime": [1.0], "numba": [1.2, 3.6, 1.2, 1.2, 1.2, 1.2]})
    c = compare_runtimes(
        "digits-cnn", ["onnxruntime", "numba"], rounds=3, retries=5, launcher=launch
    )
    # ratios 1.2, 3.6, 1.2 disagree; with 1.2 again still (IQR 50%); a fifth round outvotes 3.6
    assert c.rounds_run == 5 and c.verdict("numba") == ""
    assert c.table.loc["numba", "ratio"] == pytest.approx(1.2)


def test_a_contended_baseline_makes_every_ratio_uncertain() -> None:
    from workbench.backends.cpus import Contention

    busy = Contention(cpus=2, logical=2, others_cpus=1.8, load=3.8)
    launch = steady_children({"onnxruntime": [1.0], "numba": [1.2]}, contention=busy)
    c = compare_runtimes(
        "digits-cnn", ["onnxruntime", "numba"], rounds=3, retries=1, launcher=launch
    )
    assert c.rounds_run == 4
    assert c.table.loc["onnxruntime", "verdict"] == (
        "noisy: 4 of 4 rounds noisy (other work took 1.8 of 2 CPUs); after 1 extra round(s)"
    )
    assert c.table["noisy"].all()


def test_two_rounds_are_not_called_a_median() -> None:
    launch = steady_children({"onnxruntime": [1.0], "numba": [1.2]})
    c = compare_runtimes("digits-cnn", ["onnxruntime", "numba"], rounds=2, launcher=launch)
    assert c.rounds_run == 2  # asking for few rounds is not noise: no retry
    assert c.verdict("numba") == "noisy: 2 round(s): fewer than 3, no median of rounds"
