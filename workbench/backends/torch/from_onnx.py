"""An ONNX graph as a torch module, so the torch backends (eager and compiled) run ONNX models.

`onnx_module` builds an `OnnxModule`: one `OnnxNode` submodule per graph node, run in the
graph's order by a small interpreter loop that ``torch.compile`` unrolls into one graph.
Weights become buffers copied from the initializers (tensors only: nothing in the file is
executed). Each submodule remembers its node and canonical layer, and
`OnnxModule.canonical_timings` turns the per-module timings of the torch backends into
rows named after the canonical layers, the names ONNX Runtime's per-layer table uses
(node names for a plain ONNX file, module paths for our own exports), so one layer lines
up across runtimes.

This module imports torch at its top: the torch backends import it inside the functions
that handle an ONNX model.

Example:
    >>> m = wb.load("resnet50.onnx")
    >>> s = wb.backend("torch-compile").compile(m, "cpu")   # converts, then compiles
    >>> s.module.layer_of["nodes.n0"]
    'n0'
"""

from __future__ import annotations

import itertools
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from workbench.backends.base import LayerTiming, MemoryReport
from workbench.backends.torch.onnx_ops import KERNELS, Static, as_tensor, attribute_problem
from workbench.errors import UnsupportedModelError
from workbench.loaders.onnx import canonical_layer_name, constant_value, node_attributes

if TYPE_CHECKING:
    import onnx

    from workbench.model import Model

#: int64 constants up to this many elements stay Python ints (shape arithmetic)
_STATIC_MAX = 64
#: numbers each module's own ``forward`` code object (see `OnnxModule._own_forward`)
_SERIAL = itertools.count()
#: ops whose extra outputs (training statistics, masks, indices) are never computed
_FIRST_OUTPUT_ONLY = {"BatchNormalization", "Dropout", "MaxPool", "LayerNormalization"}
#: ops whose kernel returns a tuple, one value per output (``_outputs`` of them)
_MULTI_OUTPUT = {"Split"}


class OnnxNode(torch.nn.Module):
    """One ONNX node: its op type, its attributes, and the kernel that runs it.

    Attributes:
        op_type: the ONNX op type (``Conv``).
        attrs: the node's attributes as Python values, plus ``_opset`` (the graph's).
    """

    def __init__(self, op_type: str, attrs: dict[str, Any]) -> None:
        super().__init__()
        self.op_type = op_type
        self.attrs = attrs
        self.kernel = KERNELS[op_type]

    def forward(self, *inputs: Any) -> Any:
        return self.kernel(self.attrs, *inputs)

    def extra_repr(self) -> str:
        return self.op_type


class OnnxModule(torch.nn.Module):
    """An ONNX graph run node by node; outputs are a tuple in the graph's output order.

    Attributes:
        nodes: the `OnnxNode` per graph node, keyed by a torch-safe form of its name.
        layer_of: module path (``nodes.n0``) -> canonical layer.
        kernel_of: module path -> ``node:op`` (the node named ``<op>_<index>`` when unnamed).
        layer_ops: canonical layer -> its op type, as `Model.layers` gives it.
    """

    def __init__(self, model: Model) -> None:
        super().__init__()
        assert model.proto is not None  # callers check `supports` first
        graph = model.proto.graph
        opset = _opset(model.proto)
        self.input_names = [spec.name for spec in model.inputs]
        self.output_names = [value.name for value in graph.output]
        self.statics: dict[str, Static] = {}
        self.tensors: dict[str, str] = {}  # value name -> buffer attribute
        constants = {init.name: _array(init) for init in graph.initializer}
        for name, value in constants.items():
            self._constant(name, value)
        self.nodes = torch.nn.ModuleDict()
        self.plan: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
        self.layer_of: dict[str, str] = {}
        self.kernel_of: dict[str, str] = {}
        self.layer_ops = {layer.name: layer.op_type for layer in model.layers}
        for index, node in enumerate(graph.node):
            attrs = node_attributes(node)
            folded = _folded(node, attrs, constants)
            if folded is not None:  # constants are folded now, as every runtime does
                constants[node.output[0]] = folded
                self._constant(node.output[0], folded)
                continue
            key = self._key(node, index)
            attrs.update(_opset=opset, _outputs=len(node.output), **_configuration(node, constants))
            self.nodes[key] = OnnxNode(node.op_type, attrs)
            outputs = tuple(node.output) if node.op_type in _MULTI_OUTPUT else node.output[:1]
            self.plan.append((key, tuple(node.input), tuple(outputs)))
            self.layer_of[f"nodes.{key}"] = canonical_layer_name(node, index)
            name = node.name or f"{node.op_type}_{index}"
            self.kernel_of[f"nodes.{key}"] = f"{name}:{node.op_type}"
        self._own_forward()

    def _constant(self, name: str, value: np.ndarray) -> None:
        """Keep a small int64 constant in Python (shape arithmetic), anything else a buffer."""
        if value.dtype == np.int64 and value.ndim <= 1 and value.size <= _STATIC_MAX:
            self.statics[name] = int(value) if value.ndim == 0 else tuple(int(v) for v in value)
            return
        attr = f"const_{len(self.tensors)}"
        # a copy in torch's own allocation: numpy's buffers are not aligned as oneDNN wants,
        # and a convolution on such weights ran 10x slower (a ResNet-50 1x1 convolution:
        # 2.6 ms instead of 0.22)
        self.register_buffer(attr, torch.tensor(value))
        self.tensors[name] = attr

    def _key(self, node: onnx.NodeProto, index: int) -> str:
        """A ModuleDict key for ``node``: its name with ``.`` and other symbols replaced."""
        key = re.sub(r"\W", "_", node.name) or f"{node.op_type}_{index}"
        if key in self.nodes or hasattr(self.nodes, key):
            key = f"{key}_{index}"
        return key

    def forward(self, *inputs: Any) -> tuple[Any, ...]:
        env: dict[str, Any] = dict(self.statics)
        for value, attr in self.tensors.items():
            env[value] = getattr(self, attr)
        env.update(zip(self.input_names, inputs, strict=True))
        for key, names, outputs in self.plan:
            result = self.nodes[key](*[env[n] if n else None for n in names])
            if len(outputs) == 1:
                env[outputs[0]] = result
            else:
                env.update(zip(outputs, result, strict=True))
        return tuple(as_tensor(env[name]) for name in self.output_names)

    def _own_forward(self) -> None:
        """Give this module a ``forward`` with a code object of its own.

        Dynamo keeps compiled graphs per code object and stops compiling one after
        ``recompile_limit`` (8) different graphs: with one shared ``forward``, the ninth
        ONNX model compiled in a process would silently run eagerly under torch-compile.
        """
        function = OnnxModule.forward
        code = function.__code__.replace(co_name=f"forward_{next(_SERIAL)}")
        own = types.FunctionType(code, function.__globals__, code.co_name)
        self.forward = types.MethodType(own, self)  # type: ignore[method-assign]

    def canonical_timings(self, timings: Sequence[LayerTiming]) -> list[LayerTiming]:
        """One row per canonical layer from per-module timings, its nodes summed run by run.

        The graph module's own row (the interpreter loop between nodes) is left out: it
        belongs to no layer, so it shows in the profile's unattributed time, as a runtime's
        dispatch overhead does. ``detail["kernels"]`` lists the layer's ``node:op`` pairs.
        """
        grouped: dict[str, list[LayerTiming]] = {}
        for timing in timings:
            layer = self.layer_of.get(timing.layer)
            if layer is not None:
                grouped.setdefault(layer, []).append(timing)
        rows = []
        for layer, parts in grouped.items():
            timed = [p.samples_ms for p in parts if p.samples_ms]
            samples = tuple(float(sum(run)) for run in zip(*timed, strict=True))
            kernels = [self.kernel_of[p.layer] for p in parts]
            detail = {"scope": "leaf", "parent": None, "kernels": kernels}
            op = self.layer_ops.get(layer, parts[0].op_type)
            rows.append(LayerTiming(layer, op, samples, detail))
        return rows

    def canonical_memory(self, report: MemoryReport) -> MemoryReport:
        """``report`` with its per-module bytes summed per canonical layer."""
        by_layer: dict[str, int] = {}
        for path, nbytes in (report.by_layer_bytes or {}).items():
            layer = self.layer_of.get(path)
            if layer is not None:
                by_layer[layer] = by_layer.get(layer, 0) + nbytes
        return replace(report, by_layer_bytes=by_layer)


def onnx_module(model: Model) -> OnnxModule:
    """A torch module that computes ``model``'s ONNX graph; ``model`` is not changed.

    Args:
        model: an ONNX `Model`.

    Returns:
        An `OnnxModule` in eval mode on the CPU; call it with the inputs as tensors in
        `Model.inputs` order.

    Raises:
        UnsupportedModelError: the graph holds ops (or op settings) the torch kernels do
            not implement; the message lists them all.
    """
    reason = unsupported_reason(model)
    if reason:
        raise UnsupportedModelError(reason)
    return OnnxModule(model).eval()


def unsupported_reason(model: Model) -> str | None:
    """One line naming everything in ``model``'s graph the torch kernels cannot run, or None."""
    problems = unsupported(model)
    if not problems:
        return None
    return (
        f"{model.name!r} is an ONNX model with op(s) the torch backends do not convert: "
        f"{', '.join(problems)} (run it on onnxruntime)"
    )


def unsupported(model: Model) -> list[str]:
    """What in ``model``'s graph the torch kernels cannot run, once each (empty: all of it).

    Op types outside `onnx_ops.KERNELS` (other domains prefixed, ``com.microsoft.FusedConv``),
    attribute settings the kernels lack (``Resize(mode=cubic, ...)``), and extra outputs that
    are computed only by training (``MaxPool`` indices) but used by the graph.
    """
    assert model.proto is not None
    graph = model.proto.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    problems: dict[str, None] = {}
    for node in graph.node:
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        if op not in KERNELS and op != "Constant":
            problems[op] = None
            continue
        detail = attribute_problem(op, node_attributes(node))
        if detail:
            problems[f"{op}({detail})"] = None
        extra = [o for o in node.output[1:] if o and o in used]
        if extra and op in _FIRST_OUTPUT_ONLY:
            problems[f"{op} output {list(node.output).index(extra[0])}"] = None
    return list(problems)


def _folded(
    node: onnx.NodeProto, attrs: Mapping[str, Any], constants: Mapping[str, np.ndarray]
) -> np.ndarray | None:
    """The value of a node that only makes a constant (``Constant``, ``ConstantOfShape`` of
    a constant shape: the zoo's light models make every weight so), or None."""
    if node.op_type == "Constant":
        return np.asarray(constant_value(attrs, node.name))
    if node.op_type == "ConstantOfShape" and node.input[0] in constants:
        fill = _fill_value(attrs)
        return np.full(tuple(int(d) for d in constants[node.input[0]]), fill, fill.dtype)
    return None


def _fill_value(attrs: Mapping[str, Any]) -> np.ndarray:
    """A ``ConstantOfShape``'s one-element ``value`` (float32 0 when it has none)."""
    from onnx import numpy_helper

    if "value" not in attrs:
        return np.zeros((), np.float32)
    return np.asarray(numpy_helper.to_array(attrs["value"])).reshape(())


def _configuration(node: onnx.NodeProto, constants: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Constant inputs and tensor attributes that configure ``node``, as Python numbers.

    Reading them from a tensor while ``torch.compile`` traces would break the graph
    (``tolist()`` of a float tensor); read now, they are plain constants to it.
    """
    if node.op_type == "Resize" and len(node.input) > 2 and node.input[2] in constants:
        return {"_scales": tuple(float(v) for v in constants[node.input[2]].reshape(-1))}
    if node.op_type == "ConstantOfShape":
        from onnx import helper

        fill = _fill_value(node_attributes(node))
        # the number replaces the attribute's TensorProto
        return {"value": fill.item(), "_dtype": helper.np_dtype_to_tensor_dtype(fill.dtype)}
    return {}


def _opset(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)


def _array(tensor: onnx.TensorProto) -> np.ndarray:
    from onnx import numpy_helper

    return np.asarray(numpy_helper.to_array(tensor))
