"""Tree ensembles compiled to tensor operations on torch (Hummingbird's strategies).

``wb.transform(m, "tree-tensors")`` turns a tree model's ensemble into a torch `Model`
that the ``torch`` and ``torch-compile`` backends run (and that exports back to an ONNX
graph of plain tensor ops). Three strategies, as in Hummingbird (Nakandala et al., OSDI
2020), chosen by depth with Hummingbird's rule unless named:

- ``gemm`` (depth <= 3): every split of every tree tested at once (one gather
  of the features, one comparison), then a batched product with each tree's
  path matrix finds the leaf whose path agrees with all its ancestors' tests.
  Work grows with the number of nodes, not the depth, and is all dense tensor maths.
- ``perf_tree_trav`` (depth 4 to 10, `workbench.optimize.tree_perfect`): the trees
  padded to perfect trees, walked a level a step with no branch (``p = 2p + test``).
- ``tree_trav`` (deeper, or trees that do not pad: ``==`` / ``!=`` splits, padding over
  `PERFECT_MAX_LEAF_VALUES`): all rows walk all trees together, one level per step (a
  gather of the current nodes' features and thresholds, a comparison, a gather of the
  next nodes, a test for leaves): work grows with the depth.

The outputs are the converted graph's (label and probabilities for a classifier,
scores for a regressor) with ONNX Runtime's rules for base values, post-transforms and
binary classifiers; the module's submodules are named after the graph's stages
(``ensemble``, then the finishing step in ``post-transform``), so per-layer rows line up
with the ONNX model's. Exact in float32 up to summation order: a compilation, not an
approximation (its recipe says which strategy).

A graph with nodes besides the tree node (LightGBM's and scikit-learn's boosted models
add Identity, Cast and Mul after it) keeps them: they are cut out as ONNX graphs of
their own and converted by the torch backends' ONNX converter
(`workbench.backends.torch.from_onnx`) into ``preprocess`` (before the trees) and
``postprocess`` (after) submodules, one layer each. Ops that converter lacks (a
pipeline's ``Scaler``) are refused in one line naming them; a graph of several tree
nodes (an IsolationForest) is refused too.

Example:
    >>> t = wb.transform(wb.samples.load("trees-gbm"), "tree-tensors")
    >>> wb.profile(t, backend="torch-compile", batch_size=10_000)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from workbench.errors import TransformError
from workbench.loaders.tree_graph import (
    LEAF,
    PERFECT_MAX_DEPTH,
    PERFECT_MAX_LEAF_VALUES,
    TREE_OPS,
    TreeArrays,
    subtree_ends,
)
from workbench.model import Model
from workbench.optimize.base import Transform, config_to_dict, register

__all__ = ["TreeTensors"]

#: deepest trees the ``auto`` strategy compiles with ``gemm`` (Hummingbird's default)
GEMM_MAX_DEPTH = 3
#: deepest trees ``auto`` pads into perfect trees (Hummingbird's default, as the Numba kernel)
PERF_TREE_TRAV_MAX_DEPTH = PERFECT_MAX_DEPTH
STRATEGIES = ("auto", "gemm", "perf_tree_trav", "tree_trav")


@register("tree-tensors")
@dataclasses.dataclass(frozen=True)
class TreeTensors(Transform):
    """Compile the trees to torch tensor operations.

    Attributes:
        strategy: ``"auto"`` (``gemm`` up to depth 3, ``perf_tree_trav`` up to depth 10
            where the trees pad into perfect trees, else ``tree_trav``), ``"gemm"``,
            ``"perf_tree_trav"`` or ``"tree_trav"``. The recipe's ``chosen`` (and its
            label) names the strategy used, the ensemble layer's repr too.
    """

    strategy: Literal["auto", "gemm", "perf_tree_trav", "tree_trav"] = "auto"

    def label(self) -> str:
        return f"tree-tensors({self.strategy})"

    def apply(self, model: Model, data: Any = None) -> Model:
        from workbench.loaders.torch import from_module
        from workbench.loaders.trees import ensemble_of

        if self.strategy not in STRATEGIES:
            raise TransformError(
                f"tree-tensors strategy is one of {', '.join(STRATEGIES)}, not {self.strategy!r}"
            )
        proto = model.to_onnx().proto
        nodes = [n for n in proto.graph.node if n.op_type in TREE_OPS] if proto else []
        if proto is None or len(nodes) != 1:
            raise TransformError(
                f"tree-tensors compiles a graph with one tree-ensemble node; {model.name!r} "
                f"has {len(nodes)} (an IsolationForest converts to one node a tree)"
            )
        trees = ensemble_of(nodes[0])
        if trees.aggregate > 1:
            raise TransformError("tree-tensors compiles summed or averaged ensembles only")
        classifier = nodes[0].op_type == "TreeEnsembleClassifier"
        ensemble, strategy = _ensemble(trees, self.strategy)
        module = tree_module(
            trees, classifier, ensemble, _surroundings(model, proto, nodes[0], trees)
        )
        import torch

        example = torch.zeros(1, int(model.inputs[0].shape[1]))
        compiled = from_module(module, (example,), name=model.name, input_names=["input"])
        label = f"tree-tensors({'auto: ' if self.strategy == 'auto' else ''}{strategy})"
        recipe = config_to_dict(self, chosen=strategy, label=label)
        derived = model.derive(
            framework="torch", module=compiled.module, proto=None, layers=compiled.layers,
            inputs=compiled.inputs, outputs=compiled.outputs, recipe=recipe,
        )  # fmt: skip
        derived.metadata.pop("native", None)
        return derived


def _module_classes() -> tuple[type, type, type, type]:
    """The torch modules, built on first use so that importing this file needs no torch."""
    import torch
    from torch import nn

    class Gemm(nn.Module):
        """Hummingbird's GEMM strategy: all tests at once, leaves found by path products."""

        index: torch.Tensor
        path: torch.Tensor
        wanted: torch.Tensor
        weights: torch.Tensor

        def __init__(self, t: TreeArrays, values: np.ndarray) -> None:
            super().__init__()
            tree_of = np.repeat(np.arange(t.n_trees), np.diff(np.append(t.roots, t.n_nodes)))
            splits = [np.flatnonzero((tree_of == k) & (t.mode != LEAF)) for k in range(t.n_trees)]
            leaves = [np.flatnonzero((tree_of == k) & (t.mode == LEAF)) for k in range(t.n_trees)]
            n_i = max(1, max(len(s) for s in splits))
            n_l = max(len(s) for s in leaves)
            index = np.zeros((t.n_trees, n_i), np.int64)  # padded splits test row 0: masked by C
            path = np.zeros((t.n_trees, n_i, n_l), np.float32)
            wanted = np.zeros((t.n_trees, n_l), np.float32)
            weights = np.zeros((t.n_trees, n_l, values.shape[1]), np.float32)
            ends = subtree_ends(t)
            for k in range(t.n_trees):
                index[k, : len(splits[k])] = splits[k]
                for j, leaf in enumerate(leaves[k]):
                    weights[k, j] = values[leaf]
                    for i, node in enumerate(splits[k]):
                        if node < leaf < ends[node]:  # an ancestor: true side is node + 1 ...
                            true_side = leaf < t.false_child[node]
                            path[k, i, j] = 1.0 if true_side else -1.0
                            wanted[k, j] += 1.0 if true_side else 0.0
                wanted[k, len(leaves[k]) :] = -1  # padded leaves never match
            self.n_trees = t.n_trees
            self.register_buffer("index", torch.from_numpy(index.reshape(-1)))
            self.register_buffer("path", torch.from_numpy(path))
            self.register_buffer("wanted", torch.from_numpy(wanted).unsqueeze(1))
            self.register_buffer("weights", torch.from_numpy(weights))
            _register_tests(self, t)

        def extra_repr(self) -> str:
            return f"strategy=gemm, trees={self.n_trees}"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            go = _tests(self, x, self.index).to(torch.float32)  # (N, trees * splits)
            go = go.reshape(x.shape[0], self.n_trees, -1).transpose(0, 1)
            reached = torch.eq(torch.bmm(go, self.path), self.wanted).to(torch.float32)
            return torch.bmm(reached, self.weights).sum(0)  # (N, targets)

    class TreeTrav(nn.Module):
        """Hummingbird's tree-traversal strategy: all rows down all trees, a level a step."""

        roots: torch.Tensor
        false_child: torch.Tensor
        leaf: torch.Tensor
        values: torch.Tensor
        depth: int

        def __init__(self, t: TreeArrays, values: np.ndarray) -> None:
            super().__init__()
            self.depth = t.max_depth
            self.register_buffer("roots", torch.from_numpy(t.roots.astype(np.int64)))
            false_child = np.maximum(t.false_child, 0).astype(np.int64)
            self.register_buffer("false_child", torch.from_numpy(false_child))
            self.register_buffer("leaf", torch.from_numpy(t.mode == LEAF))
            self.register_buffer("values", torch.from_numpy(values.astype(np.float32)))
            _register_tests(self, t)

        def extra_repr(self) -> str:
            return f"strategy=tree_trav, trees={len(self.roots)}, depth={self.depth}"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            node = self.roots.expand(x.shape[0], -1)
            for _ in range(self.depth):
                go = _tests(self, x, node)
                step = torch.where(go, node + 1, self.false_child[node])
                node = torch.where(self.leaf[node], node, step)
            return self.values[node].sum(1)  # (N, targets)

    class Finish(nn.Module):
        """Base values, post-transform and labels, with ONNX Runtime's rules."""

        base: torch.Tensor
        labels: torch.Tensor

        def __init__(self, t: TreeArrays, classifier: bool) -> None:
            super().__init__()
            self.classifier, self.post = classifier, t.post_transform
            self.divide = float(t.n_trees) if t.aggregate == 1 else 1.0
            scored = np.zeros(t.n_targets, bool)
            scored[np.unique(t.leaf_target)] = True
            self.scored = [bool(s) for s in scored]
            self.binary = classifier and t.n_targets == 2 and int(scored.sum()) == 1
            self.all_positive = bool((t.leaf_weight >= 0).all())
            self.register_buffer("base", torch.from_numpy(t.base_values.astype(np.float32)))
            labels = t.class_labels if len(t.class_labels) else np.zeros(1, np.int64)
            self.register_buffer("labels", torch.from_numpy(labels))

        def forward(self, s: torch.Tensor) -> Any:
            s = s / self.divide
            n, k = int(s.shape[1]), int(self.base.shape[0])
            if not self.classifier:
                s = s + self.base if k == n else s
                return _transform(s, self.post) if n >= 2 else _probit_only(s, self.post)
            if n > 2:
                s = s + self.base if k else s
                return self.labels[s.argmax(1)], _transform(s, self.post)
            return self._binary(s, k)

        def _binary(self, s: torch.Tensor, k: int) -> Any:
            s0, s1, size, add = s[:, 0], s[:, 1], 2, -1
            if k == 2 and self.scored[1]:
                s1 = self.base[1] + s0
                s0 = -s1
            elif k == 2:
                s0, s1 = s0 + self.base[0], s1 + self.base[1]
            elif k == 1:
                s0 = s0 + self.base[0]
                size = 2 if self.scored[1] else 1
            else:
                add, size = 3, 2 if self.scored[1] else 1
            zero = torch.zeros_like(s0)
            positive = s1 if size == 2 and self.scored[1] else (s0 if self.scored[0] else zero)
            limit = 0.5 if self.binary and self.all_positive else 0.0
            high = positive > limit
            if self.binary:
                label = torch.where(high, self.labels[1], self.labels[0])
                add = (0 if self.all_positive else 2) if size == 1 else add
            else:
                label = high.to(torch.int64)
            if size == 2:
                return label, _transform(torch.stack([s0, s1], 1), self.post)
            if self.post == 4:
                return label, _probit_only(s0[:, None], 4)
            if self.binary and self.all_positive:  # ORT: 1 - p beside p
                return label, torch.stack([1 - s0, s0], 1)
            if add in (2, 3) and self.post == 2:
                return label, torch.stack([torch.sigmoid(-s0), torch.sigmoid(s0)], 1)
            if add in (2, 3):
                return label, torch.stack([-s0, s0], 1)
            return label, s0[:, None]

    class OnnxGraph(nn.Module):
        """The graph's nodes around the trees, as one layer: the converted ONNX module is
        held out of the module tree, so the profile times it once instead of as a
        container row that also counts each of its nodes again."""

        def __init__(self, graph: nn.Module) -> None:
            super().__init__()
            self.graph = (graph,)

        def forward(self, *inputs: torch.Tensor) -> Any:
            return self.graph[0](*inputs)

    class Stages(nn.Module):
        """``preprocess`` (the graph's nodes before the trees), ``ensemble``,
        ``post-transform`` (the tree node's own), ``postprocess`` (the nodes after it)."""

        def __init__(self, ensemble: nn.Module, finish: nn.Module, wiring: Wiring | None) -> None:
            super().__init__()
            if wiring is not None and wiring.pre is not None:
                self.add_module("preprocess", OnnxGraph(wiring.pre))
            self.add_module("ensemble", ensemble)
            self.add_module("post-transform", finish)
            if wiring is not None and wiring.post is not None:
                self.add_module("postprocess", OnnxGraph(wiring.post))
            # only the names: the modules are children (a copy of this module copies them once)
            self.wiring = dataclasses.replace(wiring, pre=None, post=None) if wiring else None

        def forward(self, x: torch.Tensor) -> Any:
            stage: dict[str, Any] = self._modules  # the stage names are not identifiers
            pre, post = stage.get("preprocess"), stage.get("postprocess")
            h = pre(x)[0] if pre is not None else x
            out = stage["post-transform"](stage["ensemble"](h))
            if post is None or self.wiring is None:
                return out
            w = self.wiring
            values = dict(
                zip(w.tree_outputs, out if isinstance(out, tuple) else (out,), strict=True)
            )
            values[w.input_name] = x
            computed = post(*[values[n] for n in w.post_inputs])
            values.update(zip(w.post_outputs, computed, strict=True))
            return tuple(values[n] for n in w.graph_outputs)

    return Gemm, TreeTrav, Finish, Stages


@dataclasses.dataclass(frozen=True)
class Wiring:
    """How the graph's other nodes, converted to torch, sit around the compiled trees.

    Attributes:
        pre: the nodes computing the trees' input from the graph's (None: the trees read it).
        post: the nodes after the trees (None: the tree node's outputs are the graph's).
        input_name: the graph's input.
        tree_outputs: the tree node's outputs, in order.
        post_inputs: the values ``post`` takes (tree outputs or the graph's input).
        post_outputs: the graph outputs ``post`` computes.
        graph_outputs: the graph's outputs, in order.
    """

    pre: Any
    post: Any
    input_name: str
    tree_outputs: tuple[str, ...]
    post_inputs: tuple[str, ...]
    post_outputs: tuple[str, ...]
    graph_outputs: tuple[str, ...]


def _ensemble(trees: TreeArrays, strategy: str) -> tuple[Any, str]:
    """The ensemble module of ``strategy`` (``auto`` resolved by depth) and its name.

    Raises:
        TransformError: ``perf_tree_trav`` named for trees that do not pad.
    """
    from workbench.optimize.tree_perfect import perfect_ensemble

    depth = trees.max_depth
    if strategy == "auto" and depth <= GEMM_MAX_DEPTH:
        strategy = "gemm"
    if strategy in ("auto", "perf_tree_trav") and depth <= PERF_TREE_TRAV_MAX_DEPTH:
        perfect = perfect_ensemble(trees)
        if perfect is not None:
            return perfect, "perf_tree_trav"
    if strategy == "perf_tree_trav":
        raise TransformError(
            f"tree-tensors: these trees do not pad into perfect trees (depth {depth}, at most "
            f"{PERF_TREE_TRAV_MAX_DEPTH}; no == / != splits; at most "
            f"{PERFECT_MAX_LEAF_VALUES:,} padded leaf values): use strategy='tree_trav'"
        )
    strategy = "gemm" if strategy == "gemm" else "tree_trav"
    gemm, trav, _, _ = _module_classes()
    values = np.zeros((trees.n_nodes, trees.n_targets))
    rows = np.repeat(np.arange(trees.n_nodes), trees.leaf_count)
    np.add.at(values, (rows, trees.leaf_target), trees.leaf_weight)
    return (gemm if strategy == "gemm" else trav)(trees, values), strategy


def tree_module(
    trees: TreeArrays, classifier: bool, ensemble: Any, wiring: Wiring | None = None
) -> Any:
    """The compiled ensemble: ``ensemble`` (the strategy's module) then ``post-transform``,
    with the graph's other nodes before (``preprocess``) and after (``postprocess``) when
    given."""
    from collections import OrderedDict

    from torch import nn

    _, _, finish, stages = _module_classes()
    if wiring is None:  # a pure container: no routing code of its own to time
        return nn.Sequential(
            OrderedDict([("ensemble", ensemble), ("post-transform", finish(trees, classifier))])
        ).eval()
    return stages(ensemble, finish(trees, classifier), wiring).eval()


def _surroundings(model: Model, proto: Any, node: Any, trees: TreeArrays) -> Wiring | None:
    """The nodes of ``proto`` (``model``'s graph) other than the tree ``node``, converted to
    torch, or None if there are none."""
    import onnx

    graph = proto.graph
    others = [n for n in graph.node if n is not node]
    if not others:
        return None
    if len(graph.input) != 1:
        raise TransformError(
            f"tree-tensors compiles graphs of one input; {model.name!r} has {len(graph.input)}"
        )
    produced_by = {out: n for n in others for out in n.output}
    before: list[Any] = []
    wanted = [node.input[0]]
    while wanted:  # the nodes the trees' input depends on
        producer = produced_by.get(wanted.pop())
        if producer is not None and producer not in before:
            before.append(producer)
            wanted.extend(producer.input)
    before = [n for n in others if n in before]
    after = [n for n in others if n not in before]
    values = {v.name: v for v in onnx.shape_inference.infer_shapes(proto).graph.value_info}
    values.update({v.name: v for v in [*graph.input, *graph.output]})
    tree_values = _tree_values(node, trees)
    pre = None
    if before:
        tree_input = values.get(node.input[0]) or onnx.helper.make_tensor_value_info(
            node.input[0], onnx.TensorProto.FLOAT, ["batch", None]
        )
        pre = _torch_part(model, proto, before, [graph.input[0]], [tree_input], "preprocess")
    post = None
    post_inputs: tuple[str, ...] = ()
    post_outputs: tuple[str, ...] = ()
    if after:
        made = {out for n in after for out in n.output}
        known = {**tree_values, graph.input[0].name: graph.input[0]}
        initializers = {i.name for i in graph.initializer}
        needed = [
            name for n in after for name in n.input
            if name and name not in made and name not in initializers
        ]  # fmt: skip
        missing = sorted({name for name in needed if name not in known})
        if missing:
            raise TransformError(
                f"tree-tensors: the nodes after the trees in {model.name!r} read {missing}, "
                "computed before the trees; not supported"
            )
        post_inputs = tuple(dict.fromkeys(needed))
        post_outputs = tuple(o.name for o in graph.output if o.name in made)
        post = _torch_part(
            model, proto, after, [known[n] for n in post_inputs],
            [values[n] for n in post_outputs], "postprocess",
        )  # fmt: skip
    return Wiring(
        pre=pre, post=post, input_name=graph.input[0].name, tree_outputs=tuple(node.output),
        post_inputs=post_inputs, post_outputs=post_outputs,
        graph_outputs=tuple(o.name for o in graph.output),
    )  # fmt: skip


def _tree_values(node: Any, trees: TreeArrays) -> dict[str, Any]:
    """The tree node's outputs as ONNX value infos (label int64, scores float32)."""
    from onnx import TensorProto, helper

    if node.op_type == "TreeEnsembleClassifier":
        label, *scores = node.output
        found = {label: helper.make_tensor_value_info(label, TensorProto.INT64, ["batch"])}
        for name in scores:
            found[name] = helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", None])
        return found
    return {
        name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", trees.n_targets])
        for name in node.output
    }


def _torch_part(
    model: Model, proto: Any, nodes: list[Any], inputs: list[Any], outputs: list[Any], part: str
) -> Any:
    """``nodes`` of ``proto`` as their own ONNX graph, converted by the torch backends."""
    from onnx import helper

    from workbench.backends.torch.from_onnx import onnx_module
    from workbench.errors import UnsupportedModelError
    from workbench.loaders.onnx import model_from_proto

    used = {name for n in nodes for name in n.input}
    graph = helper.make_graph(
        nodes,
        part,
        inputs,
        outputs,
        initializer=[i for i in proto.graph.initializer if i.name in used],
    )
    sub = helper.make_model(graph, opset_imports=proto.opset_import, ir_version=proto.ir_version)
    try:
        return onnx_module(model_from_proto(sub, f"{model.name}:{part}"))
    except UnsupportedModelError as error:
        raise TransformError(f"tree-tensors: the {part} nodes around the trees: {error}") from None


def _register_tests(module: Any, t: TreeArrays) -> None:
    import torch

    module.register_buffer("feature", torch.from_numpy(np.maximum(t.feature, 0).astype(np.int64)))
    module.register_buffer("threshold", torch.from_numpy(t.threshold.astype(np.float32)))
    module.register_buffer("mode", torch.from_numpy(np.maximum(t.mode, 0).astype(np.int64)))
    module.register_buffer("missing_true", torch.from_numpy(t.missing_true))
    module.single_mode = int(t.mode[t.mode != LEAF][0]) if (t.mode != LEAF).any() else 0
    module.same_mode = bool((t.mode[t.mode != LEAF] == module.single_mode).all())


def _tests(module: Any, x: Any, node: Any) -> Any:
    """Each node's split test on its row of ``x``: ``node`` is ``(N, k)`` or flat ``(k,)``."""
    import torch

    feature = module.feature[node]
    v = x[:, feature] if node.dim() == 1 else torch.gather(x, 1, feature)
    t = module.threshold[node]
    if module.same_mode:
        go = _compare(v, t, module.single_mode)
    else:
        mode = module.mode[node]
        go = torch.zeros_like(v, dtype=torch.bool)
        for m in range(6):
            go = torch.where(mode == m, _compare(v, t, m), go)
        go = go | (torch.isnan(v) & (mode == 5))
    return torch.where(torch.isnan(v), module.missing_true[node] | go, go)


def _compare(v: Any, t: Any, mode: int) -> Any:
    return [v <= t, v < t, v >= t, v > t, v == t, v != t][mode]


def _transform(s: Any, post: int) -> Any:
    import torch

    if post == 2:
        return torch.sigmoid(s)
    if post == 1:
        return torch.softmax(s, 1)
    if post == 3:
        e = torch.where(s == 0, torch.zeros_like(s), torch.exp(s - s.max(1, keepdim=True).values))
        return e / e.sum(1, keepdim=True).clamp_min(torch.finfo(s.dtype).tiny)
    return _probit_only(s, post)


def _probit_only(s: Any, post: int) -> Any:
    import torch

    return torch.special.ndtri(s) if post == 4 else s
