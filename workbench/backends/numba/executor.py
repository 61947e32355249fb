"""Run a `Graph` on a device: plan once per input shapes, then replay bound steps.

The first run at a given set of input shapes is the *planning* run: every node gets
freshly allocated outputs, values that depend only on shapes (the exporter's
Shape/Gather/Concat arithmetic) are evaluated on the host and frozen, and the shapes of
all intermediates are recorded. A node whose kernel can give its outputs without
computing them (a ``plan`` attribute) is not run when no later node of the planning run
reads its values (`values_planning_reads`): a convolution network's planning run
computes nothing, where it used to cost a whole inference at cold memory (the first
run at batch 32 paid for two). From those, one arena of buffers is
allocated with liveness-based reuse, and the inputs get buffers of their own that
each run copies into. Every array a step touches is then fixed, so each step is
*bound* once: a kernel with a ``bind`` attribute precomputes its geometry and
workspaces and returns a closure of its compiled calls; views (Reshape and the like)
are made once and cost nothing per run. A run allocates nothing; on the sample CNN at
batch 1 binding took a run from 0.078 to 0.052 ms (2 cores, kernels unchanged).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from workbench.backends.base import LayerTiming
from workbench.backends.numba.graph import ALIAS_OPS, Graph, Node
from workbench.backends.numba.preload import load_kernels
from workbench.errors import BackendError, InvalidArgumentError

#: A kernel: (node, input arrays, preallocated outputs or None) -> output arrays. Given
#: outputs, it must write into them. It may have a ``bind`` attribute: the same
#: arguments (outputs given) -> a zero-argument callable doing the work on those arrays.
#: A kernel with ``owns_outputs`` true returns views of memory it keeps (the Numba
#: decoder's KV cache): the plan gives it no buffer and binds it to those views.
Kernel = Callable[[Node, list[Any], list[Any] | None], list[Any]]
Binder = Callable[[Node, list[Any], list[Any]], Callable[[], Any]]
#: A kernel's optional ``plan`` attribute: (node, inputs) -> new output arrays of the
#: right shapes and types, nothing computed (their contents are undefined).
Planner = Callable[[Node, list[Any]], list[Any]]

#: Ops whose outputs' shapes follow from their inputs' shapes and their host inputs
#: (`HOST_INPUTS`) alone, and which only move values: run on undefined values in a
#: planning run they give the right shapes, and neither fail nor warn (a Cast of
#: undefined floats to integers would warn of invalid values: it is computed instead).
#: Gather's indices are a host input, computed: a ViT's class-token Gather at the end
#: made the planning run compute the whole encoder.
SHAPE_ONLY_OPS = ALIAS_OPS | {"Slice", "Expand", "Gather"}


def nothing() -> None:
    """The bound step of a view, and a binder's placeholder for work it can skip."""
    return None


#: Inputs that kernels read on the host (shapes, axes, scales): they stay numpy arrays.
HOST_INPUTS: dict[str, frozenset[int]] = {
    "Reshape": frozenset({1}),
    "Squeeze": frozenset({1}),
    "Unsqueeze": frozenset({1}),
    "Resize": frozenset({1, 2, 3}),
    "ConstantOfShape": frozenset({0}),
    "ReduceMean": frozenset({1}),
    "Slice": frozenset({1, 2, 3, 4}),
    "Expand": frozenset({1}),
    "Gather": frozenset({1}),
    "Pad": frozenset({1, 2, 3}),
    "ReduceSum": frozenset({1}),
    "ReduceMax": frozenset({1}),
    "ReduceMin": frozenset({1}),
    "ReduceProd": frozenset({1}),
    "Split": frozenset({1}),
    "Tile": frozenset({1}),
    "Range": frozenset({0, 1, 2}),
    "CumSum": frozenset({1}),
    **{
        op: frozenset({1})
        for op in ("ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")
    },
}


def values_planning_reads(graph: Graph, kernel_of: Callable[[Node], Kernel]) -> set[str]:
    """The values a planning run must compute, not only shape: what a node reads on the
    host (`HOST_INPUTS`: shapes, axes, pads), every input of a node that has to run
    for real (its kernel has no ``plan`` and its op is not in `SHAPE_ONLY_OPS`: its
    outputs' shapes may follow from its inputs' values, as NonZero's, or undefined
    values could fail it, as GatherElements' indices), and, back through the graph,
    every input of a node whose outputs are in the set."""
    needed: set[str] = set()
    for node in reversed(graph.nodes):
        # a Shape is folded from its input's shape (`_is_static`), never run: counting its
        # input made the planning run compute torchvision's whole ViT encoder
        if node.op_type == "Shape":
            continue
        kernel = kernel_of(node)
        computed = not needed.isdisjoint(node.outputs) or (
            getattr(kernel, "plan", None) is None and node.op_type not in SHAPE_ONLY_OPS
        )
        if computed:
            needed.update(name for name in node.inputs if name)
        else:
            host = HOST_INPUTS.get(node.op_type, frozenset())
            needed.update(name for i, name in enumerate(node.inputs) if name and i in host)
    return needed


class Device(Protocol):
    """What the executor needs from a device: memory, copies, clocks."""

    def upload(self, array: np.ndarray) -> Any: ...
    def upload_into(self, buffer: Any, array: np.ndarray) -> None: ...
    def download(self, array: Any) -> np.ndarray: ...
    def empty(self, nbytes: int) -> Any: ...
    def view(self, buffer: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any: ...
    def synchronize(self) -> None: ...
    def stopwatch(self) -> Stopwatch: ...


class Stopwatch(Protocol):
    """Marks points in the device's timeline; `elapsed_ms` reads them after a sync."""

    def mark(self) -> None: ...
    def elapsed_ms(self) -> list[float]: ...


@dataclass
class Step:
    """One node bound to its kernel and (after planning) its output buffers."""

    node: Node
    kernel: Kernel
    outs: list[Any] | None = None


@dataclass
class Plan:
    """Everything fixed for one set of input shapes."""

    steps: list[Step]
    env: dict[str, Any] = field(default_factory=dict)
    arena_bytes: int = 0
    #: graph input -> the fixed buffer each run copies that input into
    inputs: dict[str, Any] = field(default_factory=dict)
    #: one bound callable per step
    thunks: list[Callable[[], Any]] = field(default_factory=list)
    #: the graph outputs' buffers
    outputs: list[Any] = field(default_factory=list)


class Executor:
    """Plans and runs a graph on one device.

    Args:
        graph: the folded, fused graph.
        kernels: op type -> kernel for this device (custom kernels already applied).
        host_fold: CPU kernels, used to evaluate shape arithmetic on the host.
        device: memory and timing for the target device.
        overrides: node name -> kernel replacing the op's kernel for that node.
    """

    def __init__(
        self,
        graph: Graph,
        kernels: Mapping[str, Kernel],
        host_fold: Callable[[Node, list[Any]], list[np.ndarray]],
        device: Device,
        overrides: Mapping[str, Kernel] | None = None,
    ) -> None:
        self.graph = graph
        self.kernels = kernels
        self.host_fold = host_fold
        self.device = device
        self.overrides = dict(overrides or {})
        self._plans: dict[tuple[tuple[tuple[int, ...], bytes], ...], Plan] = {}
        self._consts = dict(graph.consts)
        self._host_only = self._host_only_inputs(graph)
        #: the values planning runs compute (`values_planning_reads`), found at the first
        self._read_in_planning: set[str] | None = None

    def stage(self, inputs: Mapping[str, np.ndarray]) -> Plan:
        """Plan for these inputs if needed, and copy them into the plan's input buffers.

        Inputs read only as shapes or axes stay on the host, and their values join the
        plan's key: the plan froze what was derived from them.
        """
        key = tuple(
            (inputs[name].shape, inputs[name].tobytes() if name in self._host_only else b"")
            for name in self.graph.inputs
        )
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(inputs)
            return plan
        for name, buffer in plan.inputs.items():
            if name in self._host_only:
                np.copyto(buffer, inputs[name])
            else:
                self.device.upload_into(buffer, inputs[name])
        return plan

    @property
    def plans(self) -> list[Plan]:
        """The plans made so far, one per set of input shapes, in the order made."""
        return list(self._plans.values())

    def drop_plans(self) -> None:
        """Forget every plan (their buffers go with them); the next run plans again."""
        self._plans.clear()

    def execute(self, plan: Plan) -> list[Any]:
        """Run every step into the plan's buffers; return the device outputs (no sync)."""
        for run in plan.thunks:
            run()
        return plan.outputs

    def execute_timed(self, plan: Plan) -> list[float]:
        """Run once, timing each step on the device clock; milliseconds per step."""
        watch = self.device.stopwatch()
        watch.mark()
        for run in plan.thunks:
            run()
            watch.mark()
        self.device.synchronize()
        return watch.elapsed_ms()

    def layer_timings(self, plan: Plan, repeats: int) -> list[LayerTiming]:
        """Per-layer timings over ``repeats`` runs, one `LayerTiming` per canonical layer."""
        if repeats < 1:
            raise InvalidArgumentError(f"repeats must be at least 1, got {repeats}")
        runs = [self.execute_timed(plan) for _ in range(repeats)]
        order: dict[str, list[int]] = {}
        for index, step in enumerate(plan.steps):
            order.setdefault(step.node.layer, []).append(index)
        fused_into: dict[str, str] = {}
        for step in plan.steps:
            for name in step.node.fused:
                fused_into.setdefault(self._layer_of(name), step.node.layer)
        timings = []
        for layer, indices in order.items():
            steps = [plan.steps[i].node for i in indices]
            executed = [n.cache.get("executed_flops") for n in steps]  # set by e.g. Winograd
            notes = [d.note() for d in (self.decision(plan, n) for n in steps) if d]
            timings.append(
                LayerTiming(
                    layer=layer,
                    op_type=steps[0].op_type,
                    samples_ms=tuple(sum(run[i] for i in indices) for run in runs),
                    detail={
                        "nodes": [n.name for n in steps],
                        "fused": [f for n in steps for f in n.fused],
                        **({"executed_flops": sum(executed)} if None not in executed else {}),
                        **({"note": "; ".join(notes)} if notes else {}),
                    },
                )
            )
        for layer, into in fused_into.items():
            if layer not in order:
                timings.append(
                    LayerTiming(
                        layer=layer,
                        op_type="fused",
                        samples_ms=(0.0,) * repeats,
                        detail={
                            "nodes": [],
                            "fused": self.graph.layer_nodes[layer],
                            "fused_into": into,
                        },
                    )
                )
        return timings

    @staticmethod
    def decision(plan: Plan, node: Node) -> Any:
        """The kernel strategy (`strategy.Decision`) ``node`` runs in ``plan``, or None:
        kernels that choose among strategies keep it under ``("conv_strategy", the
        shape of input 0)``."""
        if not node.inputs or not node.cache:
            return None
        first = plan.inputs.get(node.inputs[0], plan.env.get(node.inputs[0]))
        return None if first is None else node.cache.get(("conv_strategy", first.shape))

    def _layer_of(self, node_name: str) -> str:
        for layer, names in self.graph.layer_nodes.items():
            if node_name in names:
                return layer
        return node_name

    @staticmethod
    def _host_only_inputs(graph: Graph) -> set[str]:
        """Graph inputs read only as shapes/axes/indices: they stay on the host."""
        uses: dict[str, set[bool]] = {}
        for node in graph.nodes:
            host = HOST_INPUTS.get(node.op_type, frozenset())
            for i, name in enumerate(node.inputs):
                uses.setdefault(name, set()).add(i in host)
        return {name for name in graph.inputs if uses.get(name) == {True}}

    # ---- planning ----------------------------------------------------------------
    def _plan(self, inputs: Mapping[str, np.ndarray]) -> Plan:
        if self._read_in_planning is None:
            self._read_in_planning = values_planning_reads(self.graph, self._kernel_of)
        read = self._read_in_planning
        staged = {}
        for name in self.graph.inputs:
            value = inputs[name]
            if name in self._host_only:
                staged[name] = np.array(value, copy=True)
                continue
            nbytes = max(int(value.nbytes), 1)
            staged[name] = self.device.view(self.device.empty(nbytes), value.shape, value.dtype)
            self.device.upload_into(staged[name], value)
        static: dict[str, Any] = dict(self._consts)
        shapes = {name: (tuple(value.shape), value.dtype) for name, value in staged.items()}
        env: dict[str, Any] = dict(staged)
        steps: list[Step] = []
        for node in self.graph.nodes:
            if self._is_static(node, static, shapes):
                host = [self._host_value(name, static, shapes) for name in node.inputs]
                static.update(zip(node.outputs, self.host_fold(node, host), strict=True))
                continue
            kernel = self._kernel_of(node)
            node.const_inputs = frozenset(i for i, name in enumerate(node.inputs) if name in static)
            step = Step(node, kernel)
            ins = [self._operand(node, i, name, env, static) for i, name in enumerate(node.inputs)]
            planner: Planner | None = getattr(kernel, "plan", None)
            try:
                if planner is not None and read.isdisjoint(node.outputs):
                    outs = planner(node, ins)
                else:
                    outs = kernel(node, ins, None)
            except (ValueError, IndexError, TypeError) as exc:
                raise BackendError(f"node {node.name!r} ({node.op_type}) failed: {exc}") from exc
            for name, value in zip(node.outputs, outs, strict=False):
                env[name] = value
                shapes[name] = (tuple(value.shape), value.dtype)
            steps.append(step)
        plan = Plan(steps, inputs=staged)
        self._allocate(plan, env, static, staged)
        self._bind(plan)
        if isinstance(self.device, CpuDevice):  # the first inference then loads nothing
            load_kernels(plan.thunks)
        return plan

    def _kernel_of(self, node: Node) -> Kernel:
        return self.overrides.get(node.name) or self.kernels[node.op_type]

    def _bind(self, plan: Plan) -> None:
        """Fix every step's arrays and make its callable (see the module docstring)."""
        env = {**plan.env, **plan.inputs}
        for step in plan.steps:
            node = step.node
            ins = [env[name] if name else None for name in node.inputs]
            if step.outs is None:  # a view: made once, here, of the fixed buffers
                outs = step.kernel(node, ins, None)
                env.update(zip(node.outputs, outs, strict=False))
                plan.thunks.append(nothing)
                continue
            bind: Binder | None = getattr(step.kernel, "bind", None)
            if bind is not None:
                plan.thunks.append(bind(node, ins, step.outs))
            else:
                plan.thunks.append(functools.partial(step.kernel, node, ins, step.outs))
        plan.outputs = [env[name] for name in self.graph.outputs]

    def _is_static(self, node: Node, static: Mapping[str, Any], shapes: Mapping[str, Any]) -> bool:
        # Shape reads only a shape, CastLike only its second input's dtype: both known now
        if node.op_type == "Shape":
            return True
        if node.op_type == "CastLike":
            return node.inputs[0] in static
        return all(name == "" or name in static for name in node.inputs)

    @staticmethod
    def _host_value(name: str, static: Mapping[str, Any], shapes: Mapping[str, Any]) -> Any:
        if not name:
            return None
        if name in static:
            return static[name]
        # Shape and CastLike need no values: a stand-in avoids copying them to the host
        shape, dtype = shapes[name]
        return np.broadcast_to(np.zeros((), dtype), shape)

    def _operand(
        self, node: Node, index: int, name: str, env: dict[str, Any], static: Mapping[str, Any]
    ) -> Any:
        if not name:
            return None
        if name in env:
            return env[name]
        value = static[name]
        if index not in HOST_INPUTS.get(node.op_type, ()):
            value = self.device.upload(np.ascontiguousarray(value))
        env[name] = value
        return value

    def _allocate(
        self, plan: Plan, env: dict[str, Any], static: Mapping[str, Any], staged: Mapping[str, Any]
    ) -> None:
        """Give every computed value a buffer, reusing buffers whose values are dead."""
        root: dict[str, str] = {}
        last_use: dict[str, int] = {}
        for index, step in enumerate(plan.steps):
            for name in step.node.inputs:
                if name in root:
                    last_use[root[name]] = index
            for name in step.node.outputs:
                aliased = step.node.op_type in ALIAS_OPS and step.node.inputs[0] in root
                root[name] = root[step.node.inputs[0]] if aliased else name
        for name in self.graph.outputs:
            if name in root:
                last_use[root[name]] = len(plan.steps)
        free: list[tuple[int, Any]] = []
        owned: dict[str, tuple[int, Any]] = {}
        total = 0
        for index, step in enumerate(plan.steps):
            node = step.node
            if getattr(step.kernel, "owns_outputs", False):
                # views of memory the kernel keeps (a KV cache): no buffer, never freed
                step.outs = [env[name] for name in node.outputs]
            elif node.op_type not in ALIAS_OPS:
                step.outs = []
                for name in node.outputs:
                    value = env[name]
                    nbytes = max(int(value.nbytes), 1)
                    fits = [i for i, (size, _) in enumerate(free) if size >= nbytes]
                    if fits:
                        best = min(fits, key=lambda i: free[i][0])
                        buffer = free.pop(best)[1]
                    else:
                        buffer = self.device.empty(nbytes)
                        total += nbytes
                    view = self.device.view(buffer, tuple(value.shape), value.dtype)
                    step.outs.append(view)
                    env[name] = view
                    last_use.setdefault(name, index)
                    owned[name] = (nbytes, buffer)
            for name in {root[n] for n in node.inputs if n in root}:
                if last_use.get(name) == index and name in owned:
                    free.append(owned.pop(name))
            for name in node.outputs:
                # a value nobody reads is dead as soon as it is written
                if root.get(name) == name and last_use.get(name) == index and name in owned:
                    free.append(owned.pop(name))
        plan.env = {name: value for name, value in env.items() if name not in staged}
        plan.env.update({k: v for k, v in static.items() if k not in plan.env})
        plan.arena_bytes = total


class CpuDevice:
    """Host memory and `time.perf_counter` timing."""

    def upload(self, array: np.ndarray) -> np.ndarray:
        return array

    def upload_into(self, buffer: np.ndarray, array: np.ndarray) -> None:
        np.copyto(buffer, array)

    def download(self, array: np.ndarray) -> np.ndarray:
        return np.array(array, copy=True)

    def empty(self, nbytes: int) -> np.ndarray:
        # 64-byte alignment keeps vector loads aligned for every planned view
        raw = np.empty(nbytes + 64, dtype=np.uint8)
        offset = (-raw.ctypes.data) % 64
        return raw[offset : offset + nbytes]

    def view(self, buffer: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        return buffer[: count * np.dtype(dtype).itemsize].view(dtype).reshape(shape)

    def synchronize(self) -> None:
        return None

    def stopwatch(self) -> PerfCounterStopwatch:
        return PerfCounterStopwatch()


class PerfCounterStopwatch:
    """Host wall-clock marks (the CPU kernels are synchronous)."""

    def __init__(self) -> None:
        self._marks: list[float] = []

    def mark(self) -> None:
        self._marks.append(time.perf_counter())

    def elapsed_ms(self) -> list[float]:
        return [(b - a) * 1e3 for a, b in zip(self._marks, self._marks[1:], strict=False)]
