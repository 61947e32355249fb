"""Placement across two processors: the arithmetic by hand, the split graph's outputs, refusals."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.backends.onnxruntime.plain import run_plain
from workbench.cli import main
from workbench.model import set_layer_name
from workbench.planning.economics import Machine
from workbench.planning.placement import (
    Link,
    Placement,
    PlacementError,
    Switch,
    chained,
    measure_link,
    measure_placement,
    measure_switch,
    place,
    possible_cuts,
    split_model,
)
from workbench.profiling.measure import TimingOptions
from workbench.profiling.profile import Profile
from workbench.profiling.timer import Measurement
from workbench.testing.clock import FakeClock
from workbench.testing.tolerances import assert_close


def torch_has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def chain_model(interleaved: bool = False) -> wb.Model:
    """x[b,4] -> fc1 (4x8) -> act -> fc2 (8x16) -> fc3 (16x2); node names are the layers.

    ``interleaved``: a two-layer graph whose first layer also runs after the second.
    """
    rng = np.random.default_rng(0)
    weights = {n: rng.standard_normal(s).astype(np.float32)
               for n, s in (("w1", (4, 8)), ("w2", (8, 16)), ("w3", (16, 2)))}  # fmt: skip
    if interleaved:
        nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"], name="a"),
                 helper.make_node("Relu", ["h1"], ["h2"], name="b"),
                 helper.make_node("Relu", ["h2"], ["y"], name="a")]  # fmt: skip
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    else:
        nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"], name="fc1"),
                 helper.make_node("Relu", ["h1"], ["h2"], name="act"),
                 helper.make_node("MatMul", ["h2", "w2"], ["h3"], name="fc2"),
                 helper.make_node("MatMul", ["h3", "w3"], ["y"], name="fc3")]  # fmt: skip
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
    graph = helper.make_graph(
        nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])], [y],
        [onnx.numpy_helper.from_array(w, n) for n, w in weights.items()],
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return wb.load(proto.SerializeToString(), name="toy")


def fake_profile(backend: str, layer_ms: dict[str, float], end_to_end_ms: float,
                 model: str = "toy", batch_size: int = 2) -> Profile:  # fmt: skip
    layers = pd.DataFrame({"layer": list(layer_ms), "latency_ms": list(layer_ms.values())})
    return Profile(model, backend, "cpu", batch_size, Measurement([end_to_end_ms] * 5), layers)


# A: scale 1, per layer [1, 1, 5, 1]; B: layers sum to 4.25 of 8.5 ms: scale 2, [3.5, .5, .5, 4]
A = fake_profile("rt-a", {"fc1": 1.0, "act": 1.0, "fc2": 5.0, "fc3": 1.0}, 8.0)
B = fake_profile("rt-b", {"fc1": 1.75, "act": 0.25, "fc2": 0.25, "fc3": 2.0, "(layout)": 0.1}, 8.5)
# 64 B (a [2, 8] float32) cost 0.5 + 1 ms; 128 B (the [2, 16] before fc3) 0.5 + 2 ms
LINK = Link(64_000.0, latency_ms=0.5)


def test_a_worked_single_cut_adds_up_by_hand() -> None:
    model = chain_model()
    # a profile that records the model's fingerprint is checked against it
    p = place(replace(A, model_fingerprint=model.fingerprint()), B, model=model, link=LINK)
    assert p.scale_a == pytest.approx(1.0) and p.scale_b == pytest.approx(2.0)
    assert p.layers["crossing_bytes"].tolist()[1:] == [64.0, 64.0, 128.0]
    rows = p.table.set_index("order")
    # fc1 on A (1), 64 B over (1.5), act, fc2, fc3 on B (0.5 + 0.5 + 4)
    best = p.best
    assert (best["order"], best["cuts"]) == ("a,b", "act")
    assert best["predicted_ms"] == pytest.approx(7.5)
    assert (best["compute_a_ms"], best["compute_b_ms"]) == pytest.approx((1.0, 5.0))
    assert (best["transfer_bytes"], best["transfer_ms"]) == pytest.approx((64.0, 1.5))
    # no cut predicts each profile's own end-to-end median
    assert rows.at["a", "predicted_ms"] == pytest.approx(8.0)
    assert rows.at["b", "predicted_ms"] == pytest.approx(8.5)
    # B then A, cut before fc3: 3.5 + .5 + .5, 128 B (2.5), fc3 on A (1)
    b_then_a = p.table[(p.table["order"] == "b,a") & (p.table["cuts"] == "fc3")]
    assert b_then_a["predicted_ms"].item() == pytest.approx(8.0)
    assert len(p.table) == 2 + 2 * 3  # each alone, each of 3 cuts in both directions
    assert p.table["predicted_ms"].iloc[1:].is_monotonic_increasing
    assert p.layers["runs_on"].tolist() == ["a", "b", "b", "b"]


def test_two_cuts_send_the_middle_away_and_back() -> None:
    p = place(A, B, model=chain_model(), link=LINK, max_cuts=2)
    best = p.best
    # fc1 on A (1), 64 B (1.5), act and fc2 on B (1), 128 B (2.5), fc3 on A (1)
    assert (best["order"], best["cuts"]) == ("a,b,a", "act, fc3")
    assert best["predicted_ms"] == pytest.approx(7.0)
    assert (best["transfer_bytes"], best["transfer_ms"]) == pytest.approx((192.0, 4.0))
    assert p.layers["runs_on"].tolist() == ["a", "b", "b", "a"]


def test_a_free_link_and_json_round_trip() -> None:
    p = place(A, B, model=chain_model(), link=Link.same_memory(), max_cuts=3)
    # every layer on the processor faster for it: 1 + .5 + .5 + 1
    assert p.best["predicted_ms"] == pytest.approx(3.0)
    text = p.to_json()
    again = Placement.from_json(text)
    assert again.to_json() == text  # nothing lost or changed
    pd.testing.assert_frame_equal(again.table, p.table)
    pd.testing.assert_frame_equal(again.layers, p.layers)
    assert again.link == p.link and math.isinf(again.link.bandwidth_bytes_per_s)
    assert "best:" in p.summary()


def test_a_cut_through_a_fused_kernel_is_offered_only_when_asked() -> None:
    fused = fake_profile("rt-a", {"fc1": 2.0, "act": 0.0, "fc2": 5.0, "fc3": 1.0}, 8.0)
    fused.layers["fused_into"] = [None, "fc1", None, None]
    # by default the boundary inside rt-a's fused fc1+act is not a cut, and says why
    default = place(fused, B, model=chain_model(), link=LINK)
    assert "act" not in set(default.table["cuts"])
    layers = default.layers.set_index("layer")
    assert not layers.loc["act", "cut_before"]
    assert layers.loc["act", "why_not"].startswith("inside rt-a/cpu's fused fc1+act")
    assert set(default.table["cuts"]) == {"", "fc2", "fc3"}
    asked = place(fused, B, model=chain_model(), link=LINK, fused_cuts=True)
    notes = asked.table.set_index("cuts")["note"]
    # both directions of the cut before act separate it from fc1 on rt-a
    assert notes[["act"]].str.startswith("cuts rt-a/cpu's fused fc1+act").tolist() == [True] * 2
    assert set(notes[["fc2", "fc3", ""]]) == {""}


def test_a_model_cut_only_inside_fused_kernels_is_refused_with_the_way_out() -> None:
    fused = fake_profile("rt-a", {"fc1": 2.0, "act": 0.0, "fc2": 5.0, "fc3": 1.0}, 8.0)
    fused.layers["fused_into"] = [None, "fc1", "fc1", "fc1"]
    with pytest.raises(PlacementError, match="fused_cuts=True"):
        place(fused, B, model=chain_model(), link=LINK)


def test_the_figure_draws_the_placements_own_numbers() -> None:
    from workbench.viz.placement import placement_figure

    p = place(A, B, model=chain_model(), link=LINK, max_cuts=2)
    fig = placement_figure(p)
    bars = {t.name: list(t.y) for t in fig.data if t.type == "bar"}
    assert bars == {"rt-a/cpu": [1.0, 1.0, 5.0, 1.0], "rt-b/cpu": [3.5, 0.5, 0.5, 4.0]}
    lines = {t.name: dict(zip(t.x, t.y, strict=True)) for t in fig.data if t.type == "scatter"}
    assert lines["rt-a/cpu then rt-b/cpu"] == pytest.approx({"act": 7.5, "fc2": 8.0, "fc3": 13.5})
    # the best split (A, B, A) is three bands behind the bars
    assert [s.fillcolor for s in fig.layout.shapes if s.type == "rect"] == [
        fig.data[0].marker.color,
        fig.data[1].marker.color,
        fig.data[0].marker.color,
    ]


def test_a_pcie_link_is_its_lanes_times_the_rate() -> None:
    assert Link.pcie(4, 16).bandwidth_bytes_per_s == pytest.approx(16 * 16e9 * 128 / 130 / 8)
    assert Link.parse("pcie3x8").bandwidth_bytes_per_s == pytest.approx(8 * 8e9 * 128 / 130 / 8)
    assert Link.parse("12GB/s", latency_ms=0.01).transfer_ms(12e6) == pytest.approx(1.01)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Link(-1.0), "bandwidth must be above 0"),
        (lambda: Link(1e9, latency_ms=-1), "latency_ms"),
        (lambda: Link.pcie(7, 16), "PCIe 7 x16 is not a link"),
        (lambda: Link.parse("fast"), "not same-memory"),
        (lambda: place(A, fake_profile("rt-b", {"fc1": 1}, 1, model="other"),
                       model=chain_model()), "different models"),
        (lambda: place(A, fake_profile("rt-b", {"fc1": 1}, 1, batch_size=8),
                       model=chain_model()), "different batch sizes"),
        (lambda: place(A, fake_profile("rt-b", {"conv": 1}, 1), model=chain_model()),
         "layers are not the graph's"),
        (lambda: place(A, B, model=chain_model(), max_cuts=0), "max_cuts"),
        (lambda: Placement.from_json('{"table": []}'), "not a placement written by"),
        (lambda: place(A, B), "'toy', not a sample: give model="),
        (lambda: place(replace(A, model_fingerprint="0" * 16), B, model=chain_model()),
         "rt-a/cpu profile is of another 'toy' \\(weights or graph differ"),
    ],
    ids=["negative-bandwidth", "negative-latency", "pcie-7", "link-text", "two-models",
         "two-batches", "other-layers", "no-cuts", "not-a-placement",
         "no-model", "other-weights"],
)  # fmt: skip
def test_bad_input_is_one_line(make: object, message: str) -> None:
    with pytest.raises(PlacementError, match=message) as caught:
        make()  # type: ignore[operator]
    assert "\n" not in str(caught.value)


def test_a_graph_with_no_possible_cut_says_why() -> None:
    model = chain_model(interleaved=True)
    a = fake_profile("rt-a", {"a": 1.0, "b": 1.0}, 2.0)
    with pytest.raises(PlacementError, match=r"no layer boundary can be cut.*a uses h2 made by b"):
        place(a, a, model=model)
    with pytest.raises(PlacementError, match="possible cuts are before: none"):
        split_model(model, ["b"])


def residual_model() -> wb.Model:
    """x[b,4] -> fc1 -> act -> add(fc1's, act's) -> flatten (batch read by Shape) -> fc2.

    The (shape) layer runs first and its batch size is used by flatten: every part
    recomputes it from x rather than receiving it.
    """
    rng = np.random.default_rng(1)
    w1, w2 = (rng.standard_normal(s).astype(np.float32) for s in ((4, 8), (8, 3)))
    layers = ["(shape)", "(shape)", "(shape)", "fc1", "act", "add", "flatten", "fc2"]
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="n0"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="n1"),
        helper.make_node("Concat", ["n", "minus_one"], ["target"], axis=0, name="n2"),
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="n3"),
        helper.make_node("Relu", ["h1"], ["h2"], name="n4"),
        helper.make_node("Add", ["h1", "h2"], ["h3"], name="n5"),
        helper.make_node("Reshape", ["h3", "target"], ["h4"], name="n6"),
        helper.make_node("MatMul", ["h4", "w2"], ["y"], name="n7"),
    ]
    for node, layer in zip(nodes, layers, strict=True):
        set_layer_name(node, layer)
    weights = {"w1": w1, "w2": w2, "zero": np.array([0]), "minus_one": np.array([-1])}
    graph = helper.make_graph(
        nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [onnx.numpy_helper.from_array(w, n) for n, w in weights.items()],
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return wb.load(proto.SerializeToString(), name="residual")


def test_split_parts_give_the_whole_models_outputs() -> None:
    model = residual_model()
    # nothing crosses before fc1: the (shape) layer's batch size is recomputed after it
    assert possible_cuts(model) == ["act", "add", "flatten", "fc2"]
    p = place(*[fake_profile(b, dict.fromkeys(["fc1", "act", "add", "flatten", "fc2"], 1.0), 5.0,
                             model="residual") for b in ("rt-a", "rt-b")], model=model)  # fmt: skip
    # before add both the skip (h1) and the branch (h2) cross: 2 x [2, 8] float32
    crossing = p.layers.set_index("layer")
    assert crossing.at["add", "crossing_tensors"] == "h1, h2"
    assert crossing.at["add", "crossing_bytes"] == 128.0
    assert "nothing made before it" in crossing.at["fc1", "why_not"]
    x = model.example_inputs(2)
    whole = run_plain(model, x)
    for cuts in (["add"], ["act", "add", "flatten", "fc2"]):
        parts = split_model(model, cuts)
        assert len(parts) == len(cuts) + 1
        runs = [lambda feeds, p=p: run_plain(p, feeds) for p in parts]
        (got,) = chained(parts, runs, ["y"])(x)
        assert_close(got, whole[0], "model", what=f"split before {cuts}")
    assert [i.name for i in split_model(model, ["flatten"])[1].inputs] == ["h3", "x"]
    with pytest.raises(PlacementError, match="not a layer of its graph; possible cuts"):
        split_model(model, ["features.9"])
    with pytest.raises(PlacementError, match="not in graph order"):
        split_model(model, ["fc2", "act"])


def test_a_measured_split_runs_both_parts_and_keeps_its_samples() -> None:
    model = chain_model()
    a, b = (fake_profile(name, {"fc1": 1.0, "act": 1.0, "fc2": 1.0, "fc3": 1.0}, 4.0)
            for name in ("onnxruntime", "onnxruntime"))  # fmt: skip
    p = place(a, b, model=model)
    cut = p.table[p.table["cuts"] == "fc2"]["split"].iloc[0]
    measured = measure_placement(p, model, which=[cut], timing=TimingOptions(0.05, warmup=1))
    row = measured.table.set_index("split").loc[cut]
    assert row["measured_n"] >= 1 and row["measured_ms"] > 0
    assert row["error_fraction"] == pytest.approx(row["predicted_ms"] / row["measured_ms"] - 1)
    assert measured.table["measured_ms"].notna().sum() == 1  # only the split asked for
    assert p.table["measured_ms"].isna().all()  # the placement given is not changed
    with pytest.raises(PlacementError, match="no candidate split 'nowhere'"):
        measure_placement(p, model, which="nowhere")


def test_rounds_measure_every_split_round_robin_and_keep_the_median(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import workbench.planning.placement as placement

    model = chain_model()
    a, b = (fake_profile("onnxruntime", {"fc1": 1.0, "act": 1.0, "fc2": 1.0, "fc3": 1.0}, 4.0)
            for _ in range(2))  # fmt: skip
    p = place(a, b, model=model)
    splits = list(p.table[p.table["order"] == "a,b"]["split"][:2])
    # each split's rounds read 3, 9 and 5 ms, the other's 1 ms: a slow stretch in one round
    chain_ms = {splits[0]: iter([3.0, 9.0, 5.0]), splits[1]: iter([1.0, 1.0, 1.0])}
    cuts_of = dict(zip(p.table["cuts"], p.table["split"], strict=False))
    order: list[str] = []

    def fake_time_split(model: wb.Model, cuts: list[str], *args: object, **kw: object) -> list:
        split = cuts_of[", ".join(cuts)]
        order.append(split)
        ms = next(chain_ms[split])
        return [placement._Round(Measurement((ms, ms)), [ms / 2, ms / 2], [], [])]

    monkeypatch.setattr(placement, "_time_split", fake_time_split)
    measured = measure_placement(p, model, which=splits, parts=True, rounds=3).table
    assert order == splits * 3  # round-robin: a slow stretch meets each split once
    row = measured.set_index("split").loc[splits[0]]
    assert (row["measured_ms"], row["measured_min_ms"], row["measured_max_ms"]) == (5.0, 3.0, 9.0)
    assert row["measured_n"] == 6 and row["parts_ms"] == 5.0
    assert row["error_fraction"] == pytest.approx(row["predicted_ms"] / 5.0 - 1)
    back = Placement.from_json(replace(p, table=measured).to_json()).table
    assert back.set_index("split").loc[splits[0], "measured_max_ms"] == 9.0
    with pytest.raises(wb.WorkbenchError, match="rounds must be a whole number"):
        measure_placement(p, model, which=splits, rounds=1.5)  # type: ignore[arg-type]
    with pytest.raises(wb.WorkbenchError, match="rounds"):
        measure_placement(p, model, which=splits, rounds=0)


def test_a_split_runs_each_part_as_its_profile_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    import workbench.profiling.measure as measuring

    model = chain_model()
    layer_ms = {"fc1": 1.0, "act": 1.0, "fc2": 1.0, "fc3": 1.0}
    a = replace(fake_profile("onnxruntime", layer_ms, 4.0), environment={"threads": 1},
                options={"spinning": False})  # fmt: skip
    b = replace(fake_profile("onnxruntime", layer_ms, 4.0), environment={"threads": 1})
    p = place(a, b, model=model)
    # the thread count each profile ran at is kept, so the CPUs free at compile time
    # cannot give a part another pool than its profile had
    assert p.options_a == {"spinning": False, "threads": 1} and p.options_b == {"threads": 1}
    given = place(a, replace(b, options={"threads": 2}), model=model)
    assert given.options_b == {"threads": 2}  # a count the user gave stays
    compiled_with: list[dict[str, object]] = []
    original = measuring.compiled

    def spy(part: wb.Model, backend: str, device: str, options: dict[str, object]) -> object:
        compiled_with.append(dict(options))
        return original(part, backend, device, options)

    monkeypatch.setattr(measuring, "compiled", spy)
    cut = p.table[(p.table["cuts"] == "fc2") & (p.table["order"] == "a,b")]["split"].iloc[0]
    measured = measure_placement(p, model, which=[cut], timing=TimingOptions(0.05, warmup=1),
                                 parts=True)  # fmt: skip
    assert compiled_with == [p.options_a, p.options_b]
    row = measured.table.set_index("split").loc[cut]
    assert row["parts_ms"] > 0 and measured.table["parts_ms"].notna().sum() == 1
    assert "parts" in measured.summary().splitlines()[2]  # the table's header
    back = Placement.from_json(measured.to_json())
    assert back.table.set_index("split").loc[cut, "parts_ms"] == row["parts_ms"]


def test_a_spinning_runtime_beside_another_on_the_cpu_is_noted() -> None:
    layer_ms = {"fc1": 1.0, "act": 1.0, "fc2": 1.0, "fc3": 1.0}
    ort, other = fake_profile("onnxruntime", layer_ms, 4.0), fake_profile("rt-b", layer_ms, 4.0)
    spins = "onnxruntime/cpu was profiled with its idle threads spinning"
    assert any(spins in n for n in place(ort, other, model=chain_model()).notes)
    quiet = replace(ort, options={"spinning": False})
    assert not any(spins in n for n in place(quiet, other, model=chain_model()).notes)
    on_gpu = replace(other, device="cuda:0")  # no cores shared: nothing to say
    assert not any(spins in n for n in place(ort, on_gpu, model=chain_model()).notes)


def test_torch_threads_spinning_beside_another_runtime_is_noted(monkeypatch) -> None:
    """libgomp's threads spin unless OMP_WAIT_POLICY is PASSIVE when torch loads it."""
    layer_ms = {"fc1": 1.0, "act": 1.0, "fc2": 1.0, "fc3": 1.0}
    ort = replace(fake_profile("onnxruntime", layer_ms, 4.0), options={"spinning": False})
    torch_cpu = fake_profile("torch", layer_ms, 4.0)
    spins = "torch's OpenMP threads spin after each parallel region"
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert any(spins in n for n in place(ort, torch_cpu, model=chain_model()).notes)
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert not any(spins in n for n in place(ort, torch_cpu, model=chain_model()).notes)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    on_gpu = replace(torch_cpu, device="cuda:0")  # no cores shared: nothing to say
    assert not any(spins in n for n in place(ort, on_gpu, model=chain_model()).notes)


def test_a_chain_hands_each_part_its_feeds() -> None:
    model = chain_model()
    parts = split_model(model, ["fc2"])
    runs = [partial(run_plain, p.to_onnx().onnx_bytes) for p in parts]
    fed: list[dict[str, np.ndarray]] = []
    x = model.example_inputs(2)
    (y,) = chained(parts, runs, ["y"])(x, fed)
    assert [sorted(f) for f in fed] == [["x"], sorted(i.name for i in parts[1].inputs)]
    assert_close(runs[1](fed[1])[0], y)


def test_the_command_line_places_two_profile_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "toy.onnx"
    model.write_bytes(chain_model().onnx_bytes)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    A.to_json(a)
    B.to_json(b)
    out = tmp_path / "placement.json"
    argv = ["plan", "--place", str(a), str(b), "--model", str(model)]
    code = main([*argv, "--link", "64000", "--link-latency-ms", "0.5", "--json", str(out)])
    assert code == 0
    assert "best: rt-a/cpu[fc1] → rt-b/cpu[act … fc3]: 7.5 ms predicted" in capsys.readouterr().out
    assert Placement.from_json(out).best["cuts"] == "act"
    # the same split by money: both example machines' economics, read from their TOML
    examples = Path(__file__).parents[2] / "docs" / "machines"
    machines = [str(examples / f) for f in ("example-owned-gpu.toml", "example-rented-cpu.toml")]
    assert main([*argv, "--objective", "cost", "--prices", *machines, "--json", str(out)]) == 0
    priced = Placement.from_json(out)
    assert priced.objective == "cost" and priced.best["cost_per_1m_calls"] > 0
    assert "cost per 1m calls" in capsys.readouterr().out
    refused = [
        (["--link=-5GB/s"], "bandwidth must be above 0"),
        (["--model", "digits-mlp"], "not of the model given ('digits-mlp')"),
        (["--objective", "cost"], "objective='cost' needs prices"),
    ]
    if not torch_has_cuda():
        refused.append((["--link", "cuda:0"], "no CUDA device here to measure a link to cuda:0"))
    for extra, message in refused:
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert main(["plan", "--rate", "9"]) == 2
    assert "needs --candidate, --rate and --p99-ms (or --place" in capsys.readouterr().err


def test_a_measured_link_is_the_line_through_its_transfer_times() -> None:
    clock = FakeClock([0.0])

    def copy(size: int) -> Callable[[], None]:
        def run() -> None:  # 20 µs + size at 10 GB/s, on the fake clock
            clock.now += 20e-6 + size / 10e9

        return run

    with clock.installed():
        link = measure_link(copy, timing=TimingOptions(budget_s=1.0, warmup=0))
        assert link.basis == "measured"
        assert link.bandwidth_bytes_per_s == pytest.approx(10e9)
        assert link.latency_ms == pytest.approx(0.02)
        with pytest.raises(PlacementError, match="did not take longer as they grew"):
            measure_link(lambda size: lambda: setattr(clock, "now", clock.now + 1e-3))
    with pytest.raises(PlacementError, match="two or more sizes"):
        measure_link(copy, [4096])


def fake_switch(ms: float, processors: tuple[str, str] = ("rt-a/cpu", "rt-b/cpu")) -> Switch:
    return Switch(ms, 2 * ms, (1.0, 1.0), (1.0, 1.0), "toy cut before fc2, both ways", processors)


def test_each_change_of_runtime_pays_the_measured_switch() -> None:
    p = place(A, B, model=chain_model(), link=LINK, max_cuts=2, switch=fake_switch(0.25))
    rows = p.table.set_index(["order", "cuts"])
    # back to back, a single cut changes runtime twice per call: at the cut and back
    assert rows.loc[("a,b", "act"), ["switches", "switch_ms"]].tolist() == [2, 0.5]
    assert rows.loc[("a,b", "act"), "predicted_ms"] == pytest.approx(7.5 + 0.5)
    assert rows.loc[("a", ""), ["switches", "switch_ms", "predicted_ms"]].tolist() == [0, 0, 8.0]
    # away and back within one call: two changes, none to the next call's first part
    assert rows.loc[("a,b,a", "act, fc3"), "switches"] == 2
    assert p.best["predicted_ms"] == pytest.approx(7.0 + 0.5)
    assert any("each change of runtime costs 250 µs" in n for n in p.notes)
    # a costly enough hand-over leaves the whole model on one processor
    assert place(A, B, model=chain_model(), link=LINK, switch=fake_switch(1.0)).best["order"] == "a"
    back = Placement.from_json(p.to_json())
    assert back.switch == p.switch
    with pytest.raises(PlacementError, match="measured between rt-a/cpu and rt-c/cpu"):
        place(A, B, model=chain_model(), switch=fake_switch(0.1, ("rt-a/cpu", "rt-c/cpu")))


def test_the_switch_is_the_chain_beyond_its_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    import workbench.planning.placement as placement
    import workbench.profiling.measure as measuring

    model = chain_model()
    layer_ms = {"fc1": 1.0, "act": 1.0, "fc2": 1.0, "fc3": 1.0}
    a = replace(fake_profile("onnxruntime", layer_ms, 4.0), options={"spinning": False})
    b = fake_profile("torch", layer_ms, 4.0)
    # the measuring core's medians, per round: each part alone (session.run), each part
    # on staged inputs (its runner, as the profile times), the chain. A then B: the chain
    # is 0.6 ms slower than its parts (1 + 2); B then A: 1.0 ms, one round disturbed
    ab, ba = (1.0, 2.0, 0.9, 1.8, 3.6), (1.0, 2.0, 0.7, 1.9, 4.0)
    rounds = [ab] * 3 + [ba, (1.0, 2.0, 0.7, 1.9, 9.0), ba]
    medians = iter([ms for one in rounds for ms in one])
    timed: list[str] = []

    def fake_measure(runner: Callable[[], object], timing: object, **kw: str) -> Measurement:
        runner()  # the real call still runs
        timed.append(kw["label"])
        return Measurement([next(medians)] * 3)

    monkeypatch.setattr(measuring, "measure", fake_measure)
    # each part's layout conversions, per round: A's prefix converts 0.3 ms out, B's
    # suffix 0.1 in; B's prefix 0.2 out, A's suffix 0.5 in, of which 0.4 ms are the whole
    # model's own (its profile's (layout) row)
    layouts = iter([0.3, 0.1] * 3 + [0.2, 0.5] * 3)
    monkeypatch.setattr(placement, "_layout_ms", lambda timings: next(layouts))
    a = replace(a, layers=pd.DataFrame({"layer": [*layer_ms, "(layout)"],
                                        "latency_ms": [*layer_ms.values(), 0.4]}))  # fmt: skip
    switch = measure_switch(a, b, model, cut="fc2", timing=TimingOptions(0.05, warmup=1))
    labels = ["part 1", "part 2", "part 1 staged", "part 2 staged"]
    assert timed[:5] == [*labels, "toy onnxruntime/cpu → torch/cpu"]
    assert timed[-1] == "toy torch/cpu → onnxruntime/cpu" and len(timed) == 30
    assert switch.chain_ms == (3.6, 4.0) and switch.parts_ms == (3.0, 3.0)
    # the median of the six rounds' differences: the disturbed one does not make it;
    # a round trip is two changes of runtime
    assert switch.round_trip_ms == pytest.approx(0.8) and switch.ms == pytest.approx(0.4)
    # a call beyond the staged one: ORT 0.1 in both orders, torch 0.2 then 0.3
    assert switch.call_ms == pytest.approx((0.1, 0.25))
    assert switch.layout_ms == pytest.approx((0.3 + 0.5 - 0.4, 0.1 + 0.2))
    assert switch.probe == "toy cut before fc2, both ways" and switch.probe_bytes == 64  # [2, 8]
    p = place(a, b, model=model, switch=switch)
    rows = p.table.set_index(["order", "cuts"])
    assert rows.loc[("a", ""), ["call_ms", "predicted_ms"]].tolist() == pytest.approx([0.1, 4.1])
    split = rows.loc[("b,a", "fc2")]  # one call on each, two changes of runtime
    assert split[["call_ms", "switch_ms"]].tolist() == pytest.approx([0.35, 0.8])
    # half of each side's conversions at a cut of the probe's bytes (64)
    assert split["layout_ms"] == pytest.approx(0.2 + 0.15)
    assert rows.loc[("b,a", "fc3"), "layout_ms"] == pytest.approx(2 * 0.35)  # 128 bytes
    assert split["predicted_ms"] == pytest.approx(4.0 + 0.35 + 0.8 + 0.35)
    # the switch's figures belong to its processors, whichever profile is A
    swapped = place(b, a, model=model, switch=switch).table.set_index(["order", "cuts"])
    assert swapped.loc[("a", ""), "call_ms"] == pytest.approx(0.25)


def test_probes_measured_apart_pool_to_their_medians() -> None:
    one = replace(fake_switch(0.2), round_trip_ms=0.4, call_ms=(0.1, 0.3), layout_ms=(0.2, 0.0))
    slow = replace(one, ms=1.5, round_trip_ms=3.0, chain_ms=(9.0, 9.0), call_ms=(0.9, 0.9))
    other = replace(one, ms=0.3, round_trip_ms=0.6, call_ms=(0.2, 0.1), layout_ms=(0.4, 0.2))
    pooled = Switch.pooled([one, slow, other])
    # the probe a slow stretch covered sets nothing: each figure is the median of three
    assert pooled.round_trip_ms == pytest.approx(0.6) and pooled.ms == pytest.approx(0.3)
    assert pooled.call_ms == pytest.approx((0.2, 0.3)) and pooled.layout_ms == (0.2, 0.0)
    assert pooled.chain_ms == (1.0, 1.0) and pooled.probe == one.probe
    assert Switch.pooled([one]) == one
    with pytest.raises(PlacementError, match="same cut of the same pair"):
        Switch.pooled([one, replace(one, probe="toy cut before fc3, both ways")])
    with pytest.raises(PlacementError, match="at least one"):
        Switch.pooled([])


def test_a_placement_predicted_again_keeps_the_runs_made(monkeypatch: pytest.MonkeyPatch) -> None:
    import workbench.planning.placement as placement

    model = chain_model()
    monkeypatch.setattr(placement, "_time_split", lambda *a, **kw: [
        placement._Round(Measurement((8.0, 8.0)), [7.0], [], [])])  # fmt: skip
    first = place(A, B, model=model, link=LINK, switch=fake_switch(0.25))
    measured = measure_placement(first, model, which="all", parts=True, rounds=2)
    again = place(A, B, model=model, link=LINK, switch=fake_switch(0.5))
    kept = again.with_measurements_of(measured).table.set_index("split")
    assert (kept["measured_ms"] == 8.0).all() and (kept["measured_n"] == 4).all()
    # the error is against the new prediction, which pays 0.25 ms more per change
    row = kept.loc[again.best["split"]]
    assert row["error_fraction"] == pytest.approx(row["predicted_ms"] / 8.0 - 1)
    assert (kept["predicted_ms"] - first.table.set_index("split")["predicted_ms"]).max() == (
        pytest.approx(0.5)
    )
    # two placements measured apart pool to the median, the least, the most, the sum
    slower = replace(measured, table=measured.table.assign(
        measured_ms=10.0, measured_min_ms=9.0, measured_max_ms=12.0))  # fmt: skip
    third = replace(measured, table=measured.table.assign(measured_ms=6.0, measured_min_ms=5.0))
    pooled = again.with_measurements_of(measured, slower, third).table.set_index("split")
    assert (pooled["measured_ms"] == 8.0).all() and (pooled["measured_n"] == 12).all()
    assert (pooled["measured_min_ms"] == 5.0).all() and (pooled["measured_max_ms"] == 12.0).all()
    other = place(A, B, model=model, link=LINK)
    with pytest.raises(PlacementError, match="not toy at batch 3"):
        replace(other, batch_size=3).with_measurements_of(measured)


def test_a_real_switch_is_measured_between_the_profiles_runtimes() -> None:
    model = chain_model()
    layer_ms = {"fc1": 1.0, "act": 1.0, "fc2": 1.0, "fc3": 1.0}
    a = fake_profile("onnxruntime", layer_ms, 4.0)
    b = replace(a, options={"spinning": False})
    switch = measure_switch(a, b, model, timing=TimingOptions(0.02, warmup=1))
    assert switch.processors == ("onnxruntime/cpu", "onnxruntime/cpu")
    assert "cut before fc2" in switch.probe  # the middle possible cut of act, fc2, fc3
    assert min(*switch.chain_ms, *switch.parts_ms) > 0
    assert switch.ms == max(switch.round_trip_ms, 0.0) / 2
    assert place(a, b, model=model, switch=switch).switch == switch


def test_the_cheapest_split_is_not_the_fastest() -> None:
    fast = Machine("fast", "USD", rental_per_hour=10.0)
    # bought for 4 years of hours at 1 USD/h: 1 USD per hour used
    cheap = Machine("cheap", "USD", purchase=4 * 8760.0, lifetime_years=4.0)
    model = chain_model()
    quick = place(A, B, model=model)
    # fastest: fc1, act, fc2 on B (3.5 + .5 + .5), fc3 on A (1)
    assert (quick.best["order"], quick.best["predicted_ms"]) == ("b,a", pytest.approx(5.5))
    p = place(A, B, model=model, objective="cost", prices=(fast, cheap))
    assert p.prices_per_hour == pytest.approx((10.0, 1.0))
    rows = p.table.set_index(["order", "cuts"])
    # USD per 1M calls = price per hour x ms per call / 3.6e6 ms per hour x 1e6
    assert rows.loc[("b,a", "fc3"), "cost_per_1m_calls"] == pytest.approx((4.5 + 10 * 1) / 3.6)
    assert rows.loc[("a", ""), "cost_per_1m_calls"] == pytest.approx(10 * 8.0 / 3.6)
    # cheapest: all on B, slower (8.5 ms) and 8.5 / 3.6 USD per 1M calls
    assert p.best["order"] == "b" and p.best["cost_per_1m_calls"] == pytest.approx(8.5 / 3.6)
    assert p.table["cost_per_1m_calls"].iloc[1:].is_monotonic_increasing
    # a hand-over holds both ends: (1 x 4.5 + 10 x 1 + 11 x (2.5 transfer + 2 x .25)) / 3.6
    priced = place(A, B, model=model, link=LINK, switch=fake_switch(0.25), objective="cost",
                   prices=(fast, cheap))  # fmt: skip
    row = priced.table.set_index(["order", "cuts"]).loc[("b,a", "fc3")]
    assert row["cost_per_1m_calls"] == pytest.approx((4.5 + 10 + 11 * 3.0) / 3.6)
    assert "cost per 1m calls" in priced.summary()
    assert Placement.from_json(p.to_json()).prices_per_hour == p.prices_per_hour


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objective": "speed"}, "objective must be one of latency, cost"),
        ({"objective": "cost"}, "objective='cost' needs prices"),
        ({"prices": (Machine("x", "USD", rental_per_hour=1.0),
                     Machine("y", "EUR", rental_per_hour=1.0))}, "in USD and EUR"),
    ],
    ids=["unknown", "no-prices", "two-currencies"],
)  # fmt: skip
def test_a_bad_objective_is_one_line(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PlacementError, match=message):
        place(A, B, model=chain_model(), **kwargs)  # type: ignore[arg-type]
