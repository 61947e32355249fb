"""compare_backends: every runnable backend x device x option set, fairly, with the best flagged.

A fake launcher answers for the child processes, so the table and its flags are checked
exactly; one real comparison runs a child per runtime.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

import workbench as wb
from workbench.errors import InputError
from workbench.evaluation.compare_backends import (
    BackendComparison,
    candidate_runtimes,
    compare_backends,
)
from workbench.viz.runtimes import backend_comparison_figure

#: per backend: median latency (ms) per batch size, compile s, first inference ms, MiB added
FAKE = {
    "onnxruntime": ({1: 0.5, 4: 1.0}, 0.3, 2.0, 40),
    "torch": ({1: 0.8, 4: 1.2}, 0.1, 20.0, 8),
    "onnxruntime (threads=1)": ({1: 0.4, 4: 1.6}, 0.3, 2.0, 30),
    "torch-compile": ({1: 0.6, 4: 0.9}, 9.0, 3.0, 60),
}


class FakeChildren:
    def __init__(self) -> None:
        self.specs: list[dict[str, Any]] = []

    def __call__(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.specs.append(spec)
        runtime = wb.Runtime(**spec["runtime"])
        latency, compile_s, first_ms, mib = FAKE[runtime.name]
        ms = latency[spec["batch_size"]]
        return {
            "measurement": wb.Measurement((ms, ms, ms)).to_dict(),
            "startup": {
                "load_s": 1.0,
                "compile_s": compile_s,
                "first_inference_ms": first_ms,
                "runtime_bytes": mib * 2**20,
            },
        }


@pytest.fixture
def comparison() -> BackendComparison:
    return compare_backends(
        "digits-mlp",
        batch_sizes=[1, 4],
        backends=["onnxruntime", "torch", "numba-cuda"],
        options={"onnxruntime": [{}, {"threads": 1}]},
        rounds=2,
        launcher=FakeChildren(),
    )


def test_every_runnable_pairing_is_measured_and_the_rest_say_why(comparison) -> None:
    table = comparison.table
    assert len(table) == 6 and sorted(set(table["batch_size"])) == [1, 4]
    assert set(table["runtime"]) == set(FAKE) - {"torch-compile"}
    assert (table["rounds"] == 2).all()
    ((backend, _, reason),) = comparison.skipped
    assert backend == "numba-cuda" and "CUDA" in reason


def test_the_best_of_each_column_is_flagged_per_batch_size(comparison) -> None:
    table = comparison.table.set_index(["runtime", "batch_size"])
    assert table.loc[("onnxruntime (threads=1)", 1), "best_latency"]
    assert table.loc[("onnxruntime", 4), "best_latency"]
    assert table.loc[("onnxruntime", 4), "throughput_per_s"] == pytest.approx(4000.0)
    assert table.loc[("torch", 1), "cold_start_s"] == pytest.approx(0.12)
    assert table.loc[("torch", 4), "best_cold_start"] and table.loc[("torch", 1), "best_memory"]
    assert comparison.table.groupby("batch_size")["best_throughput"].sum().tolist() == [1, 1]
    assert comparison.best("throughput_per_s", batch_size=4) == "onnxruntime"
    assert comparison.best() == "onnxruntime (threads=1)"
    with pytest.raises(InputError, match="column must be one of"):
        comparison.best("speed")


def test_round_trips_through_json_and_shows_the_best(comparison) -> None:
    again = BackendComparison.from_dict(json.loads(json.dumps(comparison.to_dict())))
    assert again.table.equals(comparison.table) and again.skipped == comparison.skipped
    text = repr(comparison)
    assert "400 µs *" in text and "skipped numba-cuda" in text
    assert "Not measured" in comparison._repr_html_()


def test_the_figure_draws_throughput_per_batch_and_cold_start(comparison) -> None:
    fig = backend_comparison_figure(comparison)
    names = [trace.name for trace in fig.data]
    assert names == ["batch 1", "batch 4", "compile", "first inference"]
    assert list(fig.data[1].y) == pytest.approx([4000.0, 2500.0, 4 / 1.2 * 1e3])
    assert "*" in fig.data[0].text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_sizes": []}, "batch_sizes must name at least one"),
        ({"batch_sizes": [0]}, "batch_sizes must be"),
        ({"backends": ["numba-cuda"]}, "no backend here can run digits-mlp: numba-cuda"),
    ],
    ids=["no-batch", "zero-batch", "nothing-runs"],
)
def test_bad_requests_say_what_to_do(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        compare_backends("digits-mlp", launcher=FakeChildren(), **kwargs)


@pytest.mark.skipif(importlib.util.find_spec("wb_openvino") is None, reason="no openvino plugin")
def test_a_backend_offers_its_own_option_sets() -> None:
    runtimes, _ = candidate_runtimes(wb.samples.load("digits-mlp"), ["openvino"])
    names = [r.name for r in runtimes]
    assert names[:2] == ["openvino", "openvino (hint=throughput)"]


def test_torch_compile_is_compiled_for_each_batch_size_it_is_timed_at() -> None:
    """Compiled for batch 1 and timed at 4, torch-compile would recompile outside its
    compile_s: each batch's children get batch_size=that batch, under one name."""
    children = FakeChildren()
    result = compare_backends(
        "digits-mlp", batch_sizes=[1, 4], backends=["torch-compile"], rounds=1, launcher=children
    )
    sent = {(s["batch_size"], s["runtime"]["options"].get("batch_size")) for s in children.specs}
    assert sent == {(1, 1), (4, 4)}
    assert set(result.table["runtime"]) == {"torch-compile"}


def test_a_real_comparison_measures_cold_start_and_memory_in_each_child() -> None:
    c = compare_backends(
        "digits-mlp", [2], backends=["onnxruntime"], rounds=1, budget_s=0.05, warmup_s=0.01
    )
    (row,) = c.table.to_dict(orient="records")
    assert row["errors"] == "" and row["latency_ms"] > 0
    assert row["compile_s"] > 0 and row["first_inference_ms"] > 0 and row["load_s"] > 0
    assert row["memory_mib"] >= 0
