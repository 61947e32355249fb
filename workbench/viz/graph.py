"""The model's graph as a figure: layers as nodes, tensors between them as edges.

`graph_layout` turns a model's ONNX graph into one node per canonical layer (after the
backend's fusions when a profile says which layers ran fused), collapses it when it is
large (by module path prefix, then by chains of single-input single-output nodes) and
lays it out once in Python: a layered, topological layout (each node one row below its
deepest input). `graph_figure` draws that layout as a plotly scatter (so clicks reach
Python; no external JavaScript), nodes coloured by any per-layer value: latency,
memory, change against a baseline, or sensitivity.

Example:
    >>> from workbench.viz import graph as viz_graph
    >>> layout = viz_graph.graph_layout(m, profile=p)
    >>> viz_graph.graph_figure(layout, viz_graph.layer_values(p, "latency")).show()
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.model import Model
from workbench.profiling.profile import UNATTRIBUTED, Profile
from workbench.viz.style import LAYOUT, canonical_op_type, empty_figure, op_type_color

__all__ = ["COLOR_BY", "GraphLayout", "graph_figure", "graph_layout", "layer_values"]

#: what the nodes can be coloured by
COLOR_BY = ("latency", "memory", "change vs baseline", "sensitivity", "op type")


@dataclass(frozen=True)
class GraphLayout:
    """Nodes with positions and the edges between them (computed once per model).

    Attributes:
        nodes: one row per drawn node: ``node`` (its name: a layer, or a group such as
            ``layer2`` or ``n4…n9``), ``op_type``, ``layers`` (the canonical layers it
            holds, a tuple), ``x``, ``y``.
        edges: ``(source, target)`` node names.
        collapsed: how the graph was reduced: ``""`` (not), ``"prefix N"`` or ``"chains"``.
    """

    nodes: pd.DataFrame
    edges: tuple[tuple[str, str], ...]
    collapsed: str = ""

    def node_of(self, layer: str) -> str | None:
        """The drawn node that holds ``layer`` (None when the graph does not have it)."""
        for node, layers in zip(self.nodes["node"], self.nodes["layers"], strict=True):
            if layer in layers:
                return str(node)
        return None


def graph_layout(
    model: Model, *, profile: Profile | None = None, max_nodes: int = 150
) -> GraphLayout:
    """One node per layer of ``model``'s ONNX graph, collapsed past ``max_nodes``, laid out.

    Args:
        model: the model (a torch model is exported to ONNX, cached by the model).
        profile: a profile whose ``fused_into`` column says which layers the backend
            fused into which: those become one node, named after the layer that ran.
        max_nodes: above this many nodes, layers are grouped by module path prefix (the
            shallowest prefix that fits), else chains of single-input single-output nodes
            are merged.

    Returns:
        A `GraphLayout`. The model is not changed.

    Example:
        >>> graph_layout(wb.samples.load("digits-resnet"), max_nodes=12).collapsed
        'prefix 1'
    """
    members, ops, edges = _layer_graph(model, _fusions(profile))
    collapsed = ""
    if len(members) > max_nodes:
        members, ops, edges, collapsed = _collapse(members, ops, edges, max_nodes)
    order = list(members)
    x, y = _layered_positions(order, edges)
    nodes = pd.DataFrame(
        {
            "node": order,
            "op_type": [ops[n] for n in order],
            "layers": [tuple(members[n]) for n in order],
            "x": [x[n] for n in order],
            "y": [y[n] for n in order],
        }
    )
    return GraphLayout(nodes, tuple(sorted(edges)), collapsed)


def _fusions(profile: Profile | None) -> dict[str, str]:
    """Layer -> the layer it was fused into, from a profile's per-layer table."""
    if profile is None or profile.layers is None or "fused_into" not in profile.layers:
        return {}
    table = profile.layers.dropna(subset=["fused_into"])
    return {str(a): str(b) for a, b in zip(table["layer"], table["fused_into"], strict=True) if b}


def _layer_graph(
    model: Model, fused: Mapping[str, str]
) -> tuple[dict[str, list[str]], dict[str, str], set[tuple[str, str]]]:
    """Nodes (name -> member layers), their op types and the edges between them."""
    from workbench.optimize.onnx_graph import node_layers

    proto = model.to_onnx().proto
    if proto is None:
        return {}, {}, set()
    names = node_layers(proto)
    members: dict[str, list[str]] = {}
    ops: dict[str, str] = {}
    producer: dict[str, str] = {}
    consumers: list[tuple[str, list[str]]] = []
    for i, node in enumerate(proto.graph.node):
        layer = names.get(node.name) or f"node{i}"
        host = fused.get(layer, layer)
        if layer not in members.get(host, []):
            members.setdefault(host, []).append(layer)
        ops.setdefault(host, node.op_type)
        for out in node.output:
            producer[out] = host
        consumers.append((host, list(node.input)))
    edges = {
        (producer[name], host)
        for host, inputs in consumers
        for name in inputs
        if name in producer and producer[name] != host
    }
    return members, ops, edges


def _collapse(
    members: dict[str, list[str]], ops: dict[str, str], edges: set[tuple[str, str]], most: int
) -> tuple[dict[str, list[str]], dict[str, str], set[tuple[str, str]], str]:
    """Group by the shallowest module path prefix that fits, else merge chains."""
    deepest = max(node.count(".") for node in members) + 1
    for depth in range(1, deepest):
        group = {node: ".".join(node.split(".")[:depth]) for node in members}
        if 1 < len(set(group.values())) <= most:
            return (*_merged(members, ops, edges, group), f"prefix {depth}")
    return (*_merged(members, ops, edges, _chains(list(members), edges)), "chains")


def _chains(order: Sequence[str], edges: set[tuple[str, str]]) -> dict[str, str]:
    """Each node -> the first node of its chain (single-input single-output runs)."""
    outs, ins = defaultdict(set), defaultdict(set)
    for a, b in edges:
        outs[a].add(b)
        ins[b].add(a)
    head: dict[str, str] = {}
    for node in order:  # topological (ONNX node order), so a node's input is seen first
        (parent,) = ins[node] if len(ins[node]) == 1 else (None,)
        joins = parent is not None and len(outs[parent]) == 1
        head[node] = head[parent] if joins and parent in head else node
    return head


def _merged(
    members: dict[str, list[str]],
    ops: dict[str, str],
    edges: set[tuple[str, str]],
    group: Mapping[str, str],
) -> tuple[dict[str, list[str]], dict[str, str], set[tuple[str, str]]]:
    """The graph with every node replaced by its group (named ``first…last`` for chains)."""
    grouped: dict[str, list[str]] = {}
    for node, layers in members.items():
        grouped.setdefault(group[node], []).extend(layers)
    names = {key: _group_name(key, layers, members) for key, layers in grouped.items()}
    new_members = {names[key]: layers for key, layers in grouped.items()}
    new_ops = {}
    for key in grouped:
        kinds = {ops[n] for n in members if group[n] == key}
        new_ops[names[key]] = kinds.pop() if len(kinds) == 1 else "(group)"
    new_edges = {(names[group[a]], names[group[b]]) for a, b in edges if group[a] != group[b]}
    return new_members, new_ops, new_edges


def _group_name(key: str, layers: list[str], members: Mapping[str, list[str]]) -> str:
    if key in members and len(layers) > len(members[key]):  # a chain headed by ``key``
        return f"{key}…{layers[-1]}"
    return key


def _layered_positions(
    order: Sequence[str], edges: set[tuple[str, str]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Row = longest path from an input; column = order within the row, nudged towards the
    mean column of the node's inputs (one barycentre pass keeps edges short)."""
    ins = defaultdict(list)
    for a, b in edges:
        ins[b].append(a)
    rank: dict[str, int] = {}
    for node in order:  # ONNX nodes are topologically sorted
        rank[node] = 1 + max((rank[p] for p in ins[node] if p in rank), default=-1)
    rows: dict[int, list[str]] = defaultdict(list)
    for node in order:
        rows[rank[node]].append(node)
    x: dict[str, float] = {}
    for r in sorted(rows):
        wanted = {
            n: np.mean([x[p] for p in ins[n] if p in x]) if any(p in x for p in ins[n]) else i
            for i, n in enumerate(rows[r])
        }
        ranked = sorted(rows[r], key=lambda n: wanted[n])
        width = len(ranked)
        for i, n in enumerate(ranked):
            x[n] = float(i - (width - 1) / 2)
    y = {n: -float(rank[n]) for n in order}
    return x, y


def layer_values(
    source: Any, what: str = "latency", baseline: Profile | None = None
) -> dict[str, float]:
    """Per-layer numbers to colour the graph by.

    Args:
        source: a `Profile` (latency, memory, change vs baseline) or a `wb.sensitivity`
            DataFrame (sensitivity: the metric lost, in points).
        what: one of `COLOR_BY`.
        baseline: the profile ``"change vs baseline"`` subtracts.

    Example:
        >>> layer_values(p, "memory")["features.0"]   # parameter + activation bytes
    """
    if what == "sensitivity":
        if not isinstance(source, pd.DataFrame) or "metric_delta" not in source:
            return {}
        scale = 100.0 if source.attrs.get("metric") == "accuracy" else 1.0
        drops = zip(source["layer"], source["metric_delta"], strict=True)
        return {str(layer): -float(delta) * scale for layer, delta in drops}
    table = getattr(source, "layers", None)
    if table is None or table.empty or "layer" not in table:
        return {}
    table = table[table["layer"] != UNATTRIBUTED].set_index("layer")
    if what == "memory":
        parts = [c for c in ("params_bytes", "activation_bytes") if c in table]
        return table[parts].fillna(0).sum(axis=1).astype(float).to_dict() if parts else {}
    latency = table["latency_ms"].astype(float) if "latency_ms" in table else pd.Series()
    if what == "change vs baseline":
        if baseline is None or baseline.layers is None or baseline.layers.empty:
            return {}
        base = baseline.layers.groupby("layer")["latency_ms"].sum()
        return (latency - base.reindex(latency.index)).dropna().to_dict()
    return latency.dropna().to_dict()


#: every node has a grey outline: a light node never melts into the page
_OUTLINE = "#666666"
#: light orange to dark red: the fastest node is still a visible colour
_HEAT = [[0.0, "#FDD49E"], [0.35, "#FDBB84"], [0.65, "#EF6548"], [1.0, "#990000"]]
_UNITS = {"latency": "ms", "memory": "bytes", "change vs baseline": "ms", "sensitivity": "pts"}


def graph_figure(
    layout: GraphLayout,
    values: Mapping[str, float] | None = None,
    *,
    what: str = "latency",
    selected: str | None = None,
    title: str = "Graph",
) -> go.Figure:
    """The laid-out graph: edges as lines, nodes as markers coloured by ``values``.

    A node holding several layers shows their sum. ``what == "op type"`` colours by op
    type instead (the shared palette). Each node's ``customdata`` is its first layer, so
    a click can select that layer everywhere.

    Args:
        layout: from `graph_layout`.
        values: layer -> number (`layer_values`); missing layers are drawn grey.
        what: the quantity's name (one of `COLOR_BY`), for the colour bar.
        selected: a layer whose node is outlined.
        title: the figure's title.

    Example:
        >>> graph_figure(layout, layer_values(p, "latency"), selected="features.3")
    """
    nodes = layout.nodes
    if nodes.empty:
        return empty_figure("This model has no ONNX graph to draw.", title)
    values = values or {}
    totals = [
        sum(values[x] for x in layers if x in values) if any(x in values for x in layers)
        else np.nan
        for layers in nodes["layers"]
    ]  # fmt: skip
    at = dict(zip(nodes["node"], zip(nodes["x"], nodes["y"], strict=True), strict=True))
    xs: list[float | None] = []
    ys: list[float | None] = []
    for a, b in layout.edges:
        xs += [at[a][0], at[b][0], None]
        ys += [at[a][1], at[b][1], None]
    fig = go.Figure(
        go.Scatter(x=xs, y=ys, mode="lines", line={"color": "#C8C8C8", "width": 1},
                   hoverinfo="skip", showlegend=False)
    )  # fmt: skip
    chosen = layout.node_of(selected) if selected else None
    frame = nodes.assign(total=totals)
    by_type = what == "op type" or not values
    valued = frame if by_type else frame[frame["total"].notna()]
    labelled = len(nodes) <= 60
    if by_type:  # one trace per op type (canonical: torch's Conv2d is Conv), in the legend
        kinds = valued["op_type"].map(canonical_op_type)
        for kind, part in valued.groupby(kinds, sort=False):
            marker: dict[str, Any] = {"color": op_type_color(str(kind)), "line_color": _OUTLINE}
            trace = _node_trace(part, marker, what, chosen, labelled)
            trace.update(name=str(kind) or "?", showlegend=True, legendgroup=str(kind))
            fig.add_trace(trace)
    else:
        signed = what == "change vs baseline"
        marker = {
            "color": list(valued["total"]),
            # the lowest values stay visible on the white page (YlOrRd starts near white)
            "colorscale": "RdBu_r" if signed else _HEAT,
            "cmid": 0 if signed else None,
            "colorbar": {"title": f"{what} ({_UNITS.get(what, '')})"},
            "showscale": True,
            "line_color": _OUTLINE,
        }
        fig.add_trace(_node_trace(valued, marker, what, chosen, labelled))
    missing = frame.drop(index=valued.index)
    if not missing.empty:  # no value: hollow grey, never coloured as if zero
        hollow = {"color": "white", "line_color": "#AAAAAA"}
        fig.add_trace(_node_trace(missing, hollow, what, chosen, labelled))
    note = f" (collapsed: {layout.collapsed})" if layout.collapsed else ""
    fig.update_layout(
        title=f"{title}{note}",
        # room for the labels right of the outermost nodes
        xaxis={"visible": False, "range": [nodes["x"].min() - 1, nodes["x"].max() + 1.5]},
        yaxis={"visible": False},
        height=max(420, min(1400, 40 * int(-nodes["y"].min() + 1) + 120)),
        clickmode="event",
        legend_title="op type",
        **LAYOUT,
    )
    return fig


def _node_trace(
    frame: pd.DataFrame, marker: dict[str, Any], what: str, chosen: str | None, text: bool
) -> go.Scatter:
    """Nodes as markers (``customdata`` = each node's first layer, for clicks)."""
    unit = _UNITS.get(what, "")
    marker = dict(marker)
    outline = marker.pop("line_color", "white")
    return go.Scatter(
        x=frame["x"],
        y=frame["y"],
        mode="markers+text" if text else "markers",
        text=frame["node"],
        textposition="middle right",
        textfont={"size": 10},
        marker={
            "size": 16,
            **marker,
            "line": {
                "color": ["black" if n == chosen else outline for n in frame["node"]],
                "width": [3 if n == chosen else 1 for n in frame["node"]],
            },
        },
        customdata=[layers[0] for layers in frame["layers"]],
        hovertext=[
            f"<b>{n}</b> ({t})<br>{len(layers)} layer(s)<br>{what}: "
            + (f"{v:.4g} {unit}" if np.isfinite(v) else "n/a")
            for n, t, layers, v in zip(
                frame["node"], frame["op_type"], frame["layers"], frame["total"], strict=True
            )
        ],
        hoverinfo="text",
        showlegend=False,
    )
