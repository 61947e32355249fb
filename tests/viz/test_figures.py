"""Figures build from real results, carry the measured numbers, say when data is missing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

import workbench as wb
from workbench import viz
from workbench.profiling.memory import ProfileMemory
from workbench.profiling.profile import UNATTRIBUTED, Profile
from workbench.profiling.timer import Measurement
from workbench.viz import compare as vc


@pytest.fixture(scope="module")
def cnn():
    return wb.samples.load("digits-cnn")


@pytest.fixture(scope="module")
def real(cnn) -> Profile:
    """A real per-layer profile of the CNN sample on onnxruntime."""
    return wb.profile(cnn, "onnxruntime", "cpu", batch_size=4, budget_s=0.2, layer_repeats=5)


@pytest.fixture(scope="module")
def real_torch(cnn) -> Profile:
    return wb.profile(cnn, "torch", "cpu", batch_size=4, budget_s=0.2, layer_repeats=5)


def synthetic(latencies: dict[str, float], **fields) -> Profile:
    """A profile with a hand-written per-layer table (every documented column)."""
    names = list(latencies)
    layers = pd.DataFrame(
        {
            "layer": names,
            "op_type": ["Conv" if "conv" in n else "Gemm" for n in names],
            "latency_ms": list(latencies.values()),
            "latency_p90_ms": [v * 1.1 for v in latencies.values()],
            "share": np.array(list(latencies.values())) / sum(latencies.values()),
            "flops": [1e6 * (i + 1) for i in range(len(names))],
            "bytes": [1e4] * len(names),
            "intensity": [100.0 * (i + 1) for i in range(len(names))],
            "params_bytes": [4096] * len(names),
            "activation_bytes": [2048] * len(names),
        }
    )
    latency = Measurement(samples_ms=(1.0, 1.1, 0.9, 1.0), warmup_ms=(5.0, 3.0))
    settings = {"model": "toy", "backend": "onnxruntime", "device": "cpu", "batch_size": 1}
    return Profile(latency=latency, layers=layers, **{**settings, **fields})


def bar_values(fig: go.Figure) -> dict[str, float]:
    return {y: x for t in fig.data if t.type == "bar" for y, x in zip(t.y, t.x, strict=True)}


def test_layer_latency_from_a_real_profile_has_every_layer_and_its_median(real):
    fig = viz.layer_latency(real, top=None)
    values = bar_values(fig)
    table = real.layers.set_index("layer")
    fused = table["fused_into"].notna() & (table["latency_ms"] <= 0)
    timed = table[~fused].drop(index=UNATTRIBUTED)["latency_ms"]
    assert set(values) == set(timed.index)
    for layer, ms in values.items():
        assert ms == pytest.approx(timed[layer])
    # no bar is negative: the unattributed gap is an annotation, not a bar
    assert min(values.values()) >= 0
    gap = real.latency.median - timed.sum()
    note = next(a.text for a in fig.layout.annotations if "unattributed" in a.text)
    assert f"{abs(gap):.3g} ms unattributed" in note
    # fused layers are labelled rows under the layer that ran them, not empty bars
    assert fused.any()
    text = next(t for t in fig.data if t.type == "scatter")
    assert dict(zip(text.y, text.text, strict=True)) == {
        name: f"fused into {host}" for name, host in table.loc[fused, "fused_into"].items()
    }
    order = list(fig.layout.yaxis.categoryarray)[::-1]
    for name, host in table.loc[fused, "fused_into"].items():
        assert order.index(host) < order.index(name) <= order.index(host) + 2
    # one legend entry per op type, not per layer
    assert {t.name for t in fig.data if t.type == "bar"} == set(table.loc[timed.index, "op_type"])
    assert "ms" in fig.data[0].hovertemplate


def test_layer_latency_orders_by_time_or_graph_and_folds_the_tail():
    p = synthetic({"conv1": 1.0, "fc1": 3.0, "conv2": 2.0, "fc2": 0.5})
    by_time = viz.layer_latency(p, order="time").layout.yaxis.categoryarray
    assert list(by_time)[::-1] == ["fc1", "conv2", "conv1", "fc2"]
    by_graph = viz.layer_latency(p, order="graph").layout.yaxis.categoryarray
    assert list(by_graph)[::-1] == ["conv1", "fc1", "conv2", "fc2"]
    folded = bar_values(viz.layer_latency(p, top=2))
    assert folded["(other 2 layers)"] == pytest.approx(1.5)  # the total still adds up
    assert sum(folded.values()) == pytest.approx(6.5)


def test_selected_layer_is_outlined_and_block_colouring_groups_by_module():
    p = synthetic({"features.conv1": 1.0, "features.conv2": 2.0, "head.fc": 1.0})
    fig = viz.layer_latency(p, selected="head.fc", color_by="block")
    assert {t.name for t in fig.data} == {"features", "head"}
    head = next(t for t in fig.data if t.name == "head")
    assert list(head.marker.line.width) == [3]


def test_op_type_colours_are_stable_and_shared():
    assert viz.op_type_color("Conv") == viz.op_type_color("Conv")
    assert viz.op_type_color("SomethingNew") == viz.op_type_color("SomethingNew")
    fig = viz.layer_latency(synthetic({"conv1": 1.0, "fc": 1.0}))
    colours = {t.name: t.marker.color for t in fig.data}
    assert colours["Conv"] == viz.op_type_color("Conv")


def test_op_type_colours_never_repeat_beyond_the_fixed_palette():
    onnx_ops = ["Conv", "BatchNormalization", "Shape", "Relu", "Gemm", "MaxPool", "Reshape"]
    many = onnx_ops + [f"CustomOp{i}" for i in range(120)]
    colours = [viz.op_type_color(op) for op in many]
    assert len(set(colours)) == len(many)
    # torch module names share their ONNX op type's colour
    assert viz.op_type_color("Conv2d") == viz.op_type_color("Conv")
    assert viz.op_type_color("BatchNorm2d") != viz.op_type_color("Shape")


def test_log_axis_ticks_read_one_two_five_with_units():
    axis = viz.log_axis([0.3, 40.0], "ms")
    assert axis["type"] == "log"
    assert axis["ticktext"] == [f"{v} ms" for v in (0.2, 0.5, 1, 2, 5, 10, 20, 50)]
    assert axis["tickvals"] == sorted(axis["tickvals"])
    wide = viz.log_axis([2e6, 3e11], "FLOP/s")
    assert wide["ticktext"] == ["1M FLOP/s", "10M FLOP/s", "100M FLOP/s", "1G FLOP/s",
                                "10G FLOP/s", "100G FLOP/s", "1T FLOP/s"]  # fmt: skip


def test_a_wide_latency_spread_gets_a_readable_log_axis():
    p = synthetic({"conv1": 1.0})
    slow = Measurement(samples_ms=(1.0, 1.2, 0.9, 1.1), warmup_ms=(80.0, 3.0))
    p = Profile(latency=slow, layers=p.layers, model="toy", backend="onnxruntime",
                device="cpu", batch_size=1)  # fmt: skip
    axis = viz.latency_timeline(p).layout.yaxis
    assert axis.type == "log"
    values = [float(t.split()[0]) for t in axis.ticktext]
    assert values == sorted(values) and all(t.endswith(" ms") for t in axis.ticktext)
    assert values[0] <= 0.9 and values[-1] >= 80


def test_comparison_aligns_layers_by_name_across_backends(real, real_torch):
    fig = viz.layer_comparison([real, real_torch], top=None)
    assert len(fig.data) == 2
    ort = dict(zip(fig.data[0].y, fig.data[0].x, strict=True))
    expected = real.layers.groupby("layer")["latency_ms"].sum()
    for layer in ("features.0", "classifier.1"):
        if layer in expected:
            assert ort[layer] == pytest.approx(expected[layer])
    shared = (set(real.layers["layer"]) & set(real_torch.layers["layer"])) - {UNATTRIBUTED}
    assert shared <= set(fig.data[1].y) | set(fig.data[0].y)


def test_comparison_sorts_by_largest_change_and_shows_speedup():
    a = synthetic({"conv1": 1.0, "fc1": 3.0})
    b = synthetic({"conv1": 0.9, "fc1": 1.0}, run_id="b", backend="torch")
    fig = viz.layer_comparison([a, b])
    assert list(fig.data[0].y) == ["fc1", "conv1"]
    speedup = dict(zip(fig.data[1].y, fig.data[1].customdata, strict=True))
    assert speedup["fc1"] == pytest.approx(3.0)


def test_op_type_breakdown_stacks_each_profile_and_marks_end_to_end(real, real_torch):
    fig = viz.op_type_breakdown([real, real_torch])
    bars = [t for t in fig.data if t.type == "bar"]
    total = sum(y for t in bars for x, y in zip(t.x, t.y, strict=True) if x == real.label)
    layers = real.layers[real.layers["layer"] != UNATTRIBUTED]
    assert total == pytest.approx(layers["latency_ms"].sum())
    assert min(y for t in bars for y in t.y) >= 0  # the gap is the diamond, not a slice
    marker = next(t for t in fig.data if t.name == "end-to-end median")
    assert marker.y[0] == pytest.approx(real.latency.median)


def test_memory_stacks_params_and_activations_in_mib(real):
    fig = viz.memory(real)
    params = next(t for t in fig.data if t.name == "parameters")
    rows = real.layers[real.layers["layer"] != UNATTRIBUTED]
    assert sum(params.y) == pytest.approx(rows["params_bytes"].sum() / 2**20)


def test_memory_draws_a_peak_line_when_it_fits():
    p = synthetic({"conv1": 1.0, "fc": 1.0}, memory=ProfileMemory(model_peak_bytes=16384))
    fig = viz.memory(p)
    assert any(s.type == "line" for s in fig.layout.shapes)


def test_roofline_places_layers_and_draws_the_roof_from_ceilings(real):
    ceilings = {"peak_flops_per_s": 1e11, "bandwidth_bytes_per_s": 1e10}
    fig = viz.roofline(real, ceilings)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    roof = next(t for t in fig.data if t.name == "roof")
    assert max(roof.y) == pytest.approx(1e11)
    ridge = next(t for t in fig.data if t.name == "ridge point")
    assert ridge.x[0] == pytest.approx(10.0)
    points = [t for t in fig.data if t.mode == "markers" and t.name not in ("ridge point",)]
    named = {layer for t in points for layer in t.text}
    assert "features.3" in named  # the big conv has FLOPs, so it is a point


def test_roofline_accepts_a_ceilings_object_and_says_when_they_are_missing():
    p = synthetic({"conv1": 1.0, "fc": 2.0})
    fig = viz.roofline(p)
    assert "no measured ceilings" in fig.layout.annotations[0].text

    class Ceilings:
        def to_dict(self):
            return {"peak_flops_per_s": 1e9, "bandwidth_bytes_per_s": 1e9}

    assert any(t.name == "roof" for t in viz.roofline(p, Ceilings()).data)


def test_figures_say_when_there_is_no_layer_data(cnn):
    p = wb.profile(cnn, "onnxruntime", batch_size=1, layers=False, budget_s=0.05)
    for fig in (viz.layer_latency(p), viz.memory(p), viz.roofline(p)):
        assert "layers=True" in fig.layout.annotations[0].text
    assert "Choose profiles" in viz.layer_comparison([p, p]).layout.annotations[0].text


def test_pareto_mask_keeps_ties_and_respects_direction():
    latency = [1.0, 2.0, 2.0, 3.0, 1.0]
    accuracy = [0.90, 0.95, 0.95, 0.94, 0.90]
    assert list(viz.pareto_mask(latency, accuracy)) == [True, True, True, False, True]
    error = [0.10, 0.05, 0.05, 0.06, 0.10]
    assert list(viz.pareto_mask(latency, error, higher_is_better=False)) == list(
        viz.pareto_mask(latency, accuracy)
    )


def test_tradeoff_from_a_real_sweep_draws_the_front_as_a_step_line(tmp_path):
    table = wb.sweep(
        wb.samples.load("digits-mlp"), variants=["baseline", "int8-dynamic", "fp16"],
        backends=["onnxruntime"], batch_size=8, budget_s=0.05, store=tmp_path / "runs.sqlite",
    )  # fmt: skip
    fig = viz.tradeoff(table)
    front = next(t for t in fig.data if t.name == "Pareto front")
    expected = table.pareto()
    assert list(front.x) == pytest.approx(list(expected["latency_ms"]))
    assert front.line.shape == "hv"
    points = [t for t in fig.data if "markers" in t.mode]
    variants = {str(c[0]) for t in points for c in t.customdata}
    assert variants == set(table.df[table.df["error"].isna()]["variant"])
    assert "accuracy" in fig.layout.yaxis.title.text


def test_tradeoff_sizes_markers_by_model_size_and_outlines_the_selection():
    frame = pd.DataFrame(
        {
            "variant": ["baseline", "int8-dynamic"],
            "backend": ["onnxruntime"] * 2,
            "latency_ms": [2.0, 1.0],
            "metric": [0.99, 0.98],
            "size_bytes": [4_000_000, 1_000_000],
        }
    )
    fig = viz.tradeoff(frame, metric_name="accuracy", selected="int8-dynamic")
    sizes = {str(t.customdata[0][0]): t.marker.size[0] for t in fig.data if "markers" in t.mode}
    assert sizes["baseline"] > sizes["int8-dynamic"]
    int8 = next(t for t in fig.data if "markers" in t.mode and t.customdata[0][0] == "int8-dynamic")
    assert list(int8.marker.line.width) == [3]
    assert "No variants" in viz.tradeoff(pd.DataFrame()).layout.annotations[0].text


def test_tradeoff_fits_the_accuracy_axis_to_the_variants_inside_zero_one():
    frame = pd.DataFrame(
        {
            "variant": ["baseline", "int8-dynamic", "prune(50%)"],
            "latency_ms": [2.0, 1.0, 1.5],
            "metric": [0.985, 0.975, 0.999],
        }
    )
    fig = viz.tradeoff(frame, metric_name="accuracy")
    low, high = fig.layout.yaxis.range
    assert 0.9 < low < 0.974 and 0.999 < high <= 1.0
    # the baseline's band: one point either side of its accuracy (capped at 1)
    (band,) = [s for s in fig.layout.shapes if s.type == "rect"]
    assert (band.y0, band.y1) == (pytest.approx(0.975), pytest.approx(0.995))
    far = viz.tradeoff(frame.assign(metric=[0.5, 0.1, 0.9]), band=None)
    assert far.layout.yaxis.range[0] == 0.0 and far.layout.yaxis.range[1] <= 1.0
    assert not far.layout.shapes


def _markers(fig: go.Figure) -> dict[str, go.Scatter]:
    """Each drawn variant's marker trace, by variant."""
    return {
        str(c[0]): t
        for t in fig.data
        if t.type == "scatter" and "markers" in (t.mode or "")
        for c in t.customdata
    }


def test_tradeoff_draws_rows_without_a_backend_or_precision_and_labels_every_point():
    """Measured rows beside an estimate row (which alone names a precision): every point
    is drawn, named on the plot, and int8-dynamic and int8-static look different."""
    frame = pd.DataFrame(
        {
            "variant": [
                "baseline",
                "int8-dynamic",
                "int8-static(entropy)",
                "prune(15%) (estimate)",
            ],
            "backend": ["onnxruntime", "onnxruntime", "onnxruntime", None],
            "precision": [None, None, None, "estimate"],
            "latency_ms": [0.06, 0.03, 0.032, 0.05],
            "metric": [0.978, 0.978, 0.975, 0.97],
        }
    )
    fig = viz.tradeoff(frame, metric_name="accuracy")
    drawn = _markers(fig)
    assert set(drawn) == set(frame["variant"])
    assert drawn["int8-dynamic"].marker.color != drawn["int8-static(entropy)"].marker.color
    for variant, trace in drawn.items():
        index = [str(c[0]) for c in trace.customdata].index(variant)
        assert trace.text[index] == variant[:27] + ("…" if len(variant) > 28 else "")


def test_one_slow_p90_whisker_does_not_stretch_the_latency_axis():
    frame = pd.DataFrame(
        {
            "variant": ["baseline", "int8-dynamic", "fp16"],
            "latency_ms": [0.8, 0.4, 0.6],
            "latency_p90_ms": [0.9, 20.0, 0.7],
            "metric": [0.98, 0.97, 0.98],
        }
    )
    fig = viz.tradeoff(frame, metric_name="accuracy")
    low, high = fig.layout.xaxis.range
    assert 0.8 < high < 2.0 and low < 0.4
    note = next(a.text for a in fig.layout.annotations if a.name == "clipped")
    assert "int8-dynamic (p90 20 ms)" in note
    calm = viz.tradeoff(frame.assign(latency_p90_ms=[0.9, 0.5, 0.7]), metric_name="accuracy")
    assert calm.layout.xaxis.range is None  # no tail: the axis fits everything


def test_latency_distribution_keeps_warmup_apart(real):
    fig = viz.latency_distribution(real)
    box = fig.data[0]
    assert box.type == "box" and len(box.y) == real.latency.n
    assert sorted(box.y) == sorted(real.latency.samples_ms)
    warm = [t for t in fig.data if t.name == "warm-up"]
    assert len(warm) == 1 and len(warm[0].y) == len(real.latency.warmup_ms)
    violin = viz.latency_distribution([real, real], kind="violin")
    assert [t.type for t in violin.data].count("violin") == 2


def test_latency_timeline_greys_warmup_and_marks_the_median():
    p = synthetic({"conv1": 1.0})
    fig = viz.latency_timeline(p)
    assert list(fig.data[0].y) == [5.0, 3.0] and list(fig.data[0].x) == [1, 2]
    assert list(fig.data[1].x) == [3, 4, 5, 6]
    assert fig.layout.shapes[0].y0 == pytest.approx(1.0)


def test_viz_never_mutates_its_input(real):
    before = real.layers.copy()
    for build in (viz.layer_latency, viz.memory, viz.roofline, viz.latency_distribution):
        build(real)
    pd.testing.assert_frame_equal(real.layers, before)


def test_profiles_with_the_same_label_stay_apart_in_every_figure():
    a = synthetic({"conv1": 1.0, "fc": 2.0}, run_id="aaaaaaaa")
    b = synthetic({"conv1": 2.0, "fc": 2.0}, run_id="bbbbbbbb")
    assert a.label == b.label
    names = viz.labels([a, b])
    assert len(set(names)) == 2 and names[0].endswith("aaaaaa")
    assert len(viz.layer_comparison([a, b]).data) == 2
    assert len({t.name for t in viz.latency_distribution([a, b]).data if t.type == "box"}) == 2
    bars = [t for t in viz.op_type_breakdown([a, b]).data if t.type == "bar"]
    assert {x for t in bars for x in t.x} == set(names)


def test_time_share_treemap_nests_layers_under_their_op_type(real):
    fig = viz.time_share(real)
    tree = fig.data[0]
    rows = real.layers[(real.layers["layer"] != UNATTRIBUTED) & (real.layers["latency_ms"] > 0)]
    conv = dict(zip(tree.ids, tree.values, strict=True))["type/Conv"]
    assert conv == pytest.approx(rows.loc[rows["op_type"] == "Conv", "latency_ms"].sum())
    assert set(tree.parents) - {""} <= {f"type/{t}" for t in rows["op_type"]}


def test_comparison_leaves_out_layers_fused_everywhere_and_names_them(real):
    other = dataclasses.replace(Profile.from_json(real.to_json()), run_id="other")
    fig = viz.layer_comparison([real, other], top=None)
    fused = real.layers[real.layers["fused_into"].notna() & (real.layers["latency_ms"] <= 0)]
    assert not fused.empty and not set(fused["layer"]) & set(fig.data[0].y)
    note = fig.layout.annotations[-1].text
    assert note.startswith("fused into other layers") and all(x in note for x in fused["layer"])
    assert UNATTRIBUTED not in set(fig.data[0].y) and min(fig.data[0].x) >= 0


def _with_fused(count: int, **fields) -> Profile:
    """A profile whose ``count`` long-named layers all ran inside ``conv1``."""
    names = [f"encoder.block.{i}.attention.output.layer_norm" for i in range(count)]
    p = synthetic({"conv1": 1.0, "fc1": 2.0, **dict.fromkeys(names, 0.0)}, **fields)
    p.layers["fused_into"] = [None, None, *["conv1"] * count]
    return p


@pytest.mark.parametrize("count", [1, 12])
def test_comparison_puts_the_fused_note_between_the_axis_and_the_legend(count):
    plain = viz.layer_comparison([synthetic({"conv1": 1.0, "fc1": 2.0}), synthetic(
        {"conv1": 0.5, "fc1": 2.0}, run_id="b")])  # fmt: skip
    fig = viz.layer_comparison([_with_fused(count), _with_fused(count, run_id="b")])
    note = next(a for a in fig.layout.annotations if a.name == "fused")
    lines = note.text.split("<br>")
    assert sum(line.count("encoder.block.") for line in lines) == count  # names kept whole
    assert (len(lines) > 1) == (count > 1)  # wrapped, not run off to the right
    assert all(len(line) <= vc._NOTE_CHARS for line in lines)
    # hung from the plot's bottom edge, under the tick labels and the axis title ...
    assert (note.yref, note.y, note.yanchor, note.yshift) == (
        "paper",
        0,
        "top",
        -vc._AXIS_PX,
    )
    # ... and the legend, anchored to the figure's bottom edge, under the note's last line
    legend = fig.layout.legend
    assert (legend.yref, legend.y, legend.yanchor) == ("container", 0, "bottom")
    below_note = fig.layout.margin.b - vc._AXIS_PX - vc._NOTE_LINE_PX * len(lines)
    assert below_note >= vc._LEGEND_ROW_PX * vc._legend_rows([t.name for t in fig.data])
    # the plot itself keeps its size: the figure grows by what the note takes
    assert fig.layout.height - fig.layout.margin.b == plain.layout.height - plain.layout.margin.b
    assert not [a for a in plain.layout.annotations if a.name == "fused"]


def test_long_legend_names_take_more_legend_rows():
    assert vc._legend_rows(["a", "b"]) == 1
    assert vc._legend_rows(["digits-cnn[prune-magnitude(50%)] onnxruntime/cpu bs=4"] * 2) == 2


def test_one_run_has_one_colour_in_every_figure():
    a, b = synthetic({"conv1": 1.0, "fc": 2.0}), synthetic({"conv1": 0.5, "fc": 2.5})
    comparison = viz.layer_comparison([a, b])
    distribution = viz.latency_distribution([b, a])  # another order, another figure
    in_comparison = {t.name.removesuffix(" (baseline)"): t.marker.color for t in comparison.data}
    in_distribution = {t.name: t.marker.color for t in distribution.data if t.type == "box"}
    names = viz.labels([a, b])
    assert in_comparison[names[0]] == in_distribution[names[0]] == viz.run_color(a)
    assert in_comparison[names[1]] == in_distribution[names[1]] == viz.run_color(b)
    assert viz.run_color(a) != viz.run_color(b)


def test_torch_and_onnx_op_types_colour_and_group_as_one():
    torch_like = synthetic({"conv1": 1.0, "fc": 2.0})
    torch_like.layers["op_type"] = ["Conv2d", "Linear"]
    onnx_like = synthetic({"conv1": 1.0, "fc": 2.0})
    for fig in (viz.layer_latency(torch_like), viz.op_type_breakdown([torch_like, onnx_like])):
        groups = {t.name: t.marker.color for t in fig.data if t.type == "bar"}
        assert set(groups) == {"Conv", "Gemm"}, groups
        assert groups["Conv"] == viz.op_type_color("Conv")
    bars = viz.layer_latency(torch_like)
    conv = next(t for t in bars.data if t.name == "Conv")
    assert conv.customdata[0][0] == "Conv2d"  # the runtime's own name stays in the hover


def test_the_cold_start_colours_mean_one_thing_each():
    from workbench.viz import runtimes as viz_backends
    from workbench.viz.style import QUALITATIVE

    assert not set(viz_backends.COLD_START_COLORS) & set(QUALITATIVE)


def test_sensitivity_axes_put_zero_at_one_height():
    report = pd.DataFrame(
        {"layer": ["a", "b", "c"], "op_type": ["Conv", "Gemm", "Gemm"],
         "metric_delta": [-0.05, 0.002, -0.01], "speedup": [1.3, 0.9, 1.05],
         "sqnr_db": [30.0, 40.0, 35.0], "error": [None, None, None]}
    )  # fmt: skip
    report.attrs["metric"] = "accuracy"
    fig = viz.sensitivity(report)
    (y0, y1), (z0, z1) = fig.layout.yaxis.range, fig.layout.yaxis2.range
    assert -y0 / (y1 - y0) == pytest.approx(-z0 / (z1 - z0))
    assert y0 <= min(fig.data[0].y) and y1 >= max(fig.data[0].y)
    assert z0 <= min(fig.data[1].y) and z1 >= max(fig.data[1].y)


def test_the_roofline_draws_the_profiles_own_ceilings_unless_given_others():
    measured = {"peak_flops_per_s": 1e11, "bandwidth_bytes_per_s": 1e10}
    profile = synthetic({"conv1": 1.0, "fc": 2.0}, environment={"machine_ceilings": measured})
    roof = next(t for t in viz.roofline(profile).data if t.name == "roof")
    assert max(roof.y) == pytest.approx(1e11)  # the same roofs on every page and report
    given = next(t for t in viz.roofline(profile, {**measured, "peak_flops_per_s": 5e11}).data
                 if t.name == "roof")  # fmt: skip
    assert max(given.y) == pytest.approx(5e11)
    bare = viz.roofline(synthetic({"conv1": 1.0}), missing="press 'Measure ceilings' above")
    assert [a.text for a in bare.layout.annotations] == ["press 'Measure ceilings' above"]


def test_every_name_of_viz_reaches_its_figure_and_no_module_hides_one():
    import importlib
    import pkgutil

    modules = {info.name for info in pkgutil.iter_modules(viz.__path__)}
    assert modules.isdisjoint(viz.__all__)  # an imported submodule would shadow the name
    for name in modules:
        importlib.import_module(f"workbench.viz.{name}")
    assert all(callable(getattr(viz, name)) or name.isupper() for name in viz.__all__)
    assert viz.tradeoff.__module__ == "workbench.viz.tradeoffs"
