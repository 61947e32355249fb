"""The graph view's layout and figure: fusions, collapsing large graphs, colours, selection."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

import workbench as wb
from workbench import viz
from workbench.profiling.profile import Profile
from workbench.profiling.timer import Measurement
from workbench.testing.foreign import foreign_resnet50
from workbench.viz import graph as viz_graph


@pytest.fixture(scope="module")
def resnet50(tmp_path_factory):
    return wb.load(str(foreign_resnet50(tmp_path_factory.mktemp("r50") / "resnet50.onnx")))


def fused_profile(layers: dict[str, tuple[float, str | None]]) -> Profile:
    table = pd.DataFrame(
        {
            "layer": list(layers),
            "op_type": ["Conv"] * len(layers),
            "latency_ms": [v for v, _ in layers.values()],
            "params_bytes": [100.0] * len(layers),
            "activation_bytes": [28.0] * len(layers),
            "fused_into": [host for _, host in layers.values()],
        }
    )
    return Profile(latency=Measurement(samples_ms=(1.0, 1.0, 1.0)), layers=table, model="m",
                   backend="onnxruntime", device="cpu", batch_size=1)  # fmt: skip


def test_a_resnet50_graph_keeps_every_node_or_collapses_its_chains(resnet50):
    full = viz_graph.graph_layout(resnet50, max_nodes=1000)
    assert len(full.nodes) == len(resnet50.proto.graph.node) == 176 and full.collapsed == ""
    # every edge goes down the layered layout: a node sits below all its inputs
    y = dict(zip(full.nodes["node"], full.nodes["y"], strict=True))
    assert len(full.edges) > len(full.nodes) - 1
    assert all(y[b] < y[a] for a, b in full.edges)
    small = viz_graph.graph_layout(resnet50, max_nodes=150)
    assert small.collapsed == "chains" and 16 < len(small.nodes) < 60
    # no layer is lost: every layer is in exactly one collapsed node
    held = [layer for layers in small.nodes["layers"] for layer in layers]
    assert sorted(held) == sorted(full.nodes["node"])
    assert small.node_of("n0") is not None
    rows = small.nodes.set_index("node")["y"]
    assert all(rows[b] < rows[a] for a, b in small.edges)


def test_a_module_path_graph_collapses_by_prefix_and_fused_layers_join_their_host():
    resnet = wb.samples.load("digits-resnet")
    grouped = viz_graph.graph_layout(resnet, max_nodes=12)
    assert grouped.collapsed == "prefix 1"
    assert {"stem", "layer1", "layer2", "fc"} <= set(grouped.nodes["node"])
    assert grouped.node_of("layer2.0.conv1") == "layer2"
    cnn = wb.samples.load("digits-cnn")
    profile = fused_profile({"features.0": (0.5, None), "features.1": (0.0, "features.0"),
                             "features.2": (0.0, "features.0")})  # fmt: skip
    layout = viz_graph.graph_layout(cnn, profile=profile)
    row = layout.nodes.set_index("node").loc["features.0"]
    assert row["layers"] == ("features.0", "features.1", "features.2")
    assert "features.1" not in set(layout.nodes["node"])


def test_the_figure_colours_nodes_by_the_summed_value_and_outlines_the_selection():
    cnn = wb.samples.load("digits-cnn")
    profile = fused_profile({"features.0": (0.5, None), "features.1": (0.0, "features.0"),
                             "features.3": (2.0, None)})  # fmt: skip
    layout = viz_graph.graph_layout(cnn, profile=profile)
    fig = viz_graph.graph_figure(layout, viz_graph.layer_values(profile, "memory"),
                                 what="memory", selected="features.1")  # fmt: skip
    nodes, missing = fig.data[1], fig.data[2]
    colours = dict(zip(nodes.text, nodes.marker.color, strict=True))
    assert colours == {"features.0": pytest.approx(256.0), "features.3": pytest.approx(128.0)}
    assert "features.6" in missing.text and missing.marker.color == "white"  # not as zero
    widths = dict(zip(nodes.text, nodes.marker.line.width, strict=True))
    assert widths["features.0"] == 3 and sum(w == 3 for w in widths.values()) == 1
    assert dict(zip(nodes.text, nodes.customdata, strict=True))["features.0"] == "features.0"
    by_type = [t for t in viz_graph.graph_figure(layout, {}, what="op type").data[1:]]
    assert sum(len(t.text) for t in by_type) == len(layout.nodes)
    assert len({t.marker.color for t in by_type}) == len(by_type) > 3
    edges = fig.data[0]
    assert sum(v is None for v in edges.x) == len(layout.edges)


def test_layer_values_for_change_and_sensitivity():
    a = fused_profile({"conv1": (1.0, None), "conv2": (2.0, None)})
    b = fused_profile({"conv1": (0.5, None), "conv2": (2.5, None)})
    assert viz_graph.layer_values(b, "change vs baseline", baseline=a) == pytest.approx(
        {"conv1": -0.5, "conv2": 0.5}
    )
    report = pd.DataFrame({"layer": ["conv1"], "metric_delta": [-0.02]})
    report.attrs["metric"] = "accuracy"
    assert viz_graph.layer_values(report, "sensitivity") == {"conv1": pytest.approx(2.0)}


def test_op_type_colouring_has_a_legend_in_one_vocabulary_and_light_nodes_stay_visible():
    """Each op type is a legend entry (ONNX names: torch's Conv2d is Conv) and the
    fastest node is a visible colour with an outline, never white on white."""
    cnn = wb.samples.load("digits-cnn")
    layout = viz_graph.graph_layout(cnn)
    torch_names = layout.nodes.assign(
        op_type=layout.nodes["op_type"].replace({"Conv": "Conv2d", "Gemm": "Linear"})
    )
    layout = dataclasses.replace(layout, nodes=torch_names)
    fig = viz_graph.graph_figure(layout, {}, what="op type")
    entries = {t.name: t.marker.color for t in fig.data if t.showlegend}
    assert "Conv" in entries and "Conv2d" not in entries and "Gemm" in entries
    assert entries["Conv"] == viz.op_type_color("Conv") and fig.layout.legend.title.text
    profile = fused_profile({"features.0": (0.001, None), "features.3": (2.0, None)})
    heat = viz_graph.graph_figure(layout, viz_graph.layer_values(profile, "latency"))
    lowest = heat.data[1].marker.colorscale[0][1]
    assert _lightness(lowest) < 0.9, lowest  # YlOrRd's lowest colour is near white
    assert set(heat.data[1].marker.line.color) == {"#666666"}


def _lightness(colour: str) -> float:
    """0 (black) to 1 (white) for ``#RRGGBB`` or ``rgb(r,g,b)``."""
    if colour.startswith("#"):
        rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    else:
        rgb = [int(float(x)) for x in colour[colour.index("(") + 1 : -1].split(",")]
    return (max(rgb) + min(rgb)) / 2 / 255
