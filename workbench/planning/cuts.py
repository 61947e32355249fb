"""The cuts of a model's layer sequence: which are possible, what crosses each, and the
model cut there into parts that run in turn.

Layers are the canonical layers (`workbench.loaders.onnx.canonical_layer_name`) of the
model's ONNX graph, in the order their first node runs. A cut before a layer is possible
when no layer before it uses a tensor made at or after it; what crosses it is every
tensor made before and used after it, except tensors made only from the model inputs'
shapes and constants, which each part recomputes from those inputs.

Example:
    >>> possible_cuts(m)                            # ['features.0', 'features.1', ...]
    >>> first, second = split_model(m, ["features.6"])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.planning.links import PlacementError

if TYPE_CHECKING:
    import onnx

    from workbench.model import Model

__all__ = ["Cuts", "chained", "graph_cuts", "onnx_proto", "output_names", "possible_cuts",
           "split_model", "used_tensors"]  # fmt: skip


@dataclass(frozen=True)
class Cuts:
    """Where one graph can be cut.

    Attributes:
        layers: the canonical layers in graph order; cut position k is before ``layers[k]``.
        crossing: each possible cut position -> the tensors crossing it.
        why_not: each impossible cut position (1 to len - 1) -> the reason, in words.
        recomputed: tensors made from model inputs' shapes and constants alone (a batch
            size read by Shape for a Reshape) -> those inputs: every part recomputes them.
    """

    layers: list[str]
    crossing: dict[int, list[str]]
    why_not: dict[int, str]
    recomputed: dict[str, set[str]]


def used_tensors(node: onnx.NodeProto) -> Iterable[str]:
    """Tensors a node reads, its subgraphs' outer-scope reads included."""
    yield from (t for t in node.input if t)
    for attribute in node.attribute:
        # AttributeProto.GRAPH and GRAPHS: an If's branches, a Loop's body
        for graph in [attribute.g, *attribute.graphs] if attribute.type in (5, 10) else []:
            for inner in graph.node:
                yield from used_tensors(inner)


def _recomputed(graph: onnx.GraphProto) -> dict[str, set[str]]:
    """Tensors computed only from model inputs' shapes and constants, with those inputs."""
    inputs = {i.name for i in graph.input}
    weights = {t.name for t in graph.initializer}
    found: dict[str, set[str]] = {}
    for node in graph.node:
        used = list(used_tensors(node))
        if node.op_type in ("Shape", "Size") and used and used[0] in inputs:
            roots = {used[0]}
        elif all(t in weights or t in found for t in used):
            roots = set().union(*(found.get(t, set()) for t in used))
        else:
            continue
        found.update({t: roots for t in node.output if t})
    return found


def graph_cuts(proto: onnx.ModelProto) -> Cuts:
    """The possible cuts of ``proto`` (not changed), what crosses each, and why not."""
    from workbench.loaders.onnx import canonical_layer_name

    graph = proto.graph
    layer_of = [canonical_layer_name(n, i) for i, n in enumerate(graph.node)]
    layers = list(dict.fromkeys(layer_of))
    position = {name: k for k, name in enumerate(layers)}
    recomputed = _recomputed(graph)
    made_at = {
        t: position[layer_of[i]]
        for i, n in enumerate(graph.node)
        for t in n.output
        if t and t not in recomputed
    }
    last_use: dict[str, int] = {}
    why_not: dict[int, str] = {}
    for i, node in enumerate(graph.node):
        here = position[layer_of[i]]
        for tensor in used_tensors(node):
            made = made_at.get(tensor)
            if made is None:  # a model input, a weight or recomputed: each part has its own
                continue
            last_use[tensor] = max(last_use.get(tensor, here), here)
            for k in range(here + 1, made + 1):  # a layer reads what a later one makes
                why_not.setdefault(
                    k,
                    f"{layers[here]} uses {tensor} made by {layers[made]}, which runs after it "
                    "(their graph nodes interleave)",
                )
    crossing = {
        k: [t for t, made in made_at.items() if made < k <= last_use.get(t, -1)]
        for k in range(1, len(layers))
        if k not in why_not
    }
    for k in [k for k, tensors in crossing.items() if not tensors]:
        del crossing[k]
        why_not[k] = "nothing made before it is used after it (a part would hand nothing on)"
    return Cuts(layers, crossing, why_not, recomputed)


def possible_cuts(model: Model) -> list[str]:
    """The layers of ``model``'s graph a second segment can start at, in graph order."""
    cuts = graph_cuts(onnx_proto(model))
    return [cuts.layers[k] for k in sorted(cuts.crossing)]


def onnx_proto(model: Model) -> onnx.ModelProto:
    """``model``'s ONNX graph (a torch model's export, cached on the model)."""
    proto = model.to_onnx().proto
    assert proto is not None  # to_onnx always holds a graph
    return proto


def split_model(model: Model, cuts: Sequence[str]) -> list[Model]:
    """``model``'s ONNX graph cut into consecutive parts, each a new `Model`.

    Each part's inputs are the model inputs it uses and the tensors earlier parts make
    for it; its outputs, the tensors later parts use and the model outputs it makes.
    Running the parts in order, each fed from what came before, gives the model's outputs.
    ``model`` is not changed.

    Args:
        model: the model (a torch model is exported to ONNX first).
        cuts: the layers the second, third… parts start at, in graph order.

    Raises:
        PlacementError: a layer that is not in the graph, cuts out of order, or a cut that
            is not possible (names why, and the possible ones).

    Example:
        >>> first, second = split_model(m, ["features.6"])
    """
    from onnx.utils import Extractor

    from workbench.loaders import load

    proto = onnx_proto(model)
    found = graph_cuts(proto)
    position = {name: k for k, name in enumerate(found.layers)}
    starts = []
    for layer in cuts:
        k = position.get(layer)
        if k is None or k not in found.crossing:
            possible = ", ".join(found.layers[j] for j in sorted(found.crossing)) or "none"
            why = (
                "not a layer of its graph" if k is None else found.why_not.get(k, "its first layer")
            )
            raise PlacementError(
                f"cannot cut {model.name} before {layer!r}: {why}; possible cuts "
                f"are before: {possible}"
            )
        starts.append(k)
    if starts != sorted(set(starts)):
        raise PlacementError(f"cuts {list(cuts)} are not in graph order (or repeat a layer)")
    from workbench.loaders.onnx import canonical_layer_name

    graph = proto.graph
    bounds = [0, *starts, len(found.layers)]
    # the part a node runs in: the last part starting at or before its layer
    part_of = [
        sum(start <= position[canonical_layer_name(n, i)] for start in starts)
        for i, n in enumerate(graph.node)
    ]
    weights = {t.name for t in graph.initializer}  # each part keeps the weights it uses
    outputs = [o.name for o in graph.output]
    extractor = Extractor(proto)
    parts = []
    for j in range(len(bounds) - 1):
        nodes = [n for n, p in zip(graph.node, part_of, strict=True) if p == j]
        made = {t for n in nodes for t in n.output if t}
        later = {
            t for n, p in zip(graph.node, part_of, strict=True) if p > j for t in used_tensors(n)
        }
        needs = [t for n in nodes for t in used_tensors(n) if t not in made and t not in weights]
        # a recomputed tensor is made again in this part from the model inputs it came from
        roots = [r for t in needs for r in sorted(found.recomputed.get(t, {t}))]
        part_inputs = list(dict.fromkeys(roots))
        kept = [
            t
            for t in dict.fromkeys([*later, *outputs])
            if t in outputs or t not in found.recomputed
        ]
        part_outputs = [t for t in kept if t in made]
        try:
            sub = extractor.extract_model(part_inputs, part_outputs)
        except KeyError as exc:  # the Extractor needs every boundary tensor's type
            raise PlacementError(
                f"cannot cut {model.name} there: ONNX shape inference gives no type for "
                f"{exc}, which crosses a cut; choose another cut"
            ) from None
        parts.append(load(sub, name=f"{model.name}[part {j + 1}/{len(bounds) - 1}]"))
    return parts


def chained(
    parts: Sequence[Model],
    runs: Sequence[Callable[[dict[str, Any]], list[Any]]],
    outputs: list[str],
) -> Callable[..., list[Any]]:
    """One call running ``parts`` in turn, each fed the model inputs and earlier parts'
    outputs it takes, returning the tensors named ``outputs`` (the whole model's).

    The call takes the model inputs by name and, optionally, ``fed``: a list to which
    each part's feeds are appended in turn (to run a part again on its own).

    Args:
        parts: from `split_model`.
        runs: one function per part, feeds by name -> outputs in the part's output order
            (a `Session.run`).
        outputs: the names to return, in order.

    Example:
        >>> run = chained(parts, [s.run for s in sessions], ["linear"])
        >>> (logits,) = run(m.example_inputs(8))
    """
    steps = [
        ([i.name for i in p.inputs], output_names(p), fn) for p, fn in zip(parts, runs, strict=True)
    ]

    def run(inputs: dict[str, Any], fed: list[dict[str, Any]] | None = None) -> list[Any]:
        known: dict[str, Any] = dict(inputs)
        for names, produced, fn in steps:
            feeds = {n: known[n] for n in names}
            if fed is not None:
                fed.append(feeds)
            known.update(zip(produced, fn(feeds), strict=True))
        return [known[n] for n in outputs]

    return run


def output_names(part: Model) -> list[str]:
    """The names of ``part``'s graph outputs, in order (what its session returns)."""
    return [o.name for o in onnx_proto(part).graph.output]
