"""`NumbaSession`: a compiled model on the CPU or a CUDA device, behind the Session protocol."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from workbench.backends.base import Inputs, LayerMethod, LayerTiming, MemoryReport
from workbench.backends.numba import (
    conv_fusion,
    embedding_bag_graph,
    layout,
    qdq_fusion,
    registry,
)
from workbench.backends.numba.executor import Device, Executor, Kernel, Plan
from workbench.backends.numba.graph import Node, build_graph
from workbench.errors import BackendError, out_of_memory
from workbench.model import Model


class NumbaSession:
    """A model compiled by the Numba executor for one device.

    Attributes:
        model: the model it was compiled from.
        backend: ``"numba"`` or ``"numba-cuda"``.
        device: ``"cpu"`` or ``"cuda:N"``.
        graph: the executed graph after folding and fusion (for inspection).
        graph_s: seconds ``compile`` spent building ``graph`` (reading the ONNX graph,
            folding constants, fusion, layout).
        plan_s: seconds spent planning so far: at each new set of input shapes, the
            planning run's kernels loaded from Numba's disk cache (or compiled), its
            buffers allocated and its steps bound; no inference (a runner's first call
            is the first inference). Numba's one-off start in the process is in
            neither (`NumbaBackend.start`).
    """

    def __init__(
        self,
        model: Model,
        backend: str,
        device: str,
        kernels: Mapping[str, Kernel],
        device_api: Device,
        custom_device: str,
        channels_last: bool = False,
        threads: int | None = None,
    ) -> None:
        from workbench.backends.numba import cpu_ops

        started = time.perf_counter()
        self.model = model
        #: Numba threads its parallel loops run on (None: Numba's own count, on a GPU)
        self.threads = threads
        self._applied = False
        self.backend = backend
        self.device = device
        self._device = device_api
        proto = model.to_onnx().proto

        def has_custom(node: Node) -> bool:
            return registry.custom_kernel(node, custom_device) is not None

        self.graph = build_graph(proto, cpu_ops.fold, kernels, has_custom)
        if embedding_bag_graph.FUSED_OP in kernels:  # the device has the fused gather-reduce
            self.graph = embedding_bag_graph.fuse_embedding_bags(self.graph, has_custom)
        if custom_device == "cpu":  # epilogues only the CPU kernels apply
            self.graph = conv_fusion.fuse_conv_activations(self.graph, has_custom)
        if qdq_fusion.FUSED_OP in kernels:  # the device multiplies INT8 in integers
            self.graph = qdq_fusion.fuse_int8_products(self.graph, proto, has_custom)
        if channels_last:
            self.graph = layout.channels_last(self.graph, has_custom)
            if custom_device == "cpu":  # the shuffled writes are the CPU kernel's
                self.graph = conv_fusion.fuse_channel_shuffles(self.graph, has_custom)
        overrides = {}
        for node in self.graph.nodes:
            fn = registry.custom_kernel(node, custom_device)
            if fn is not None:
                reference = kernels[node.op_type]
                overrides[node.name] = registry.checked(
                    fn, reference, self._empty_like, self._to_host
                )
        self._executor: Executor | None = Executor(
            self.graph, kernels, cpu_ops.fold, device_api, overrides
        )
        self.graph_s = time.perf_counter() - started
        self.plan_s = 0.0

    @property
    def compile_s(self) -> float:
        """Seconds compiling took so far: `graph_s` plus `plan_s` (the Numba kernels are
        loaded or compiled on the first run at each set of input shapes, not in
        ``compile``)."""
        return self.graph_s + self.plan_s

    def _empty_like(self, array: Any) -> Any:
        return self._device.view(
            self._device.empty(max(int(array.nbytes), 1)), array.shape, array.dtype
        )

    def _to_host(self, array: Any) -> np.ndarray:
        return self._device.download(array)

    def _stage(self, inputs: Inputs) -> tuple[Executor, Plan]:
        """The executor and the plan for ``inputs``, staged into its buffers; a new plan
        counts in `plan_s`."""
        executor = self._executor
        if executor is None:
            raise BackendError("this session is closed; compile the model again")
        checked = self.model.check_inputs(inputs)
        by_graph_name = dict(zip(self.graph.inputs, checked.values(), strict=True))
        # binding picks serial or parallel kernels by the thread count in force
        with self._memory_guard(checked), self.settings():
            started, known = time.perf_counter(), len(executor.plans)
            # staging allocates every planned buffer: where a too-large batch fails
            plan = executor.stage(by_graph_name)
            if len(executor.plans) > known:
                self.plan_s += time.perf_counter() - started
            return executor, plan

    @contextlib.contextmanager
    def _memory_guard(self, checked: Mapping[str, np.ndarray]) -> Any:
        """Turn an allocation failure (host or device) into one line naming the inputs."""
        try:
            yield
        except MemoryError as exc:
            raise out_of_memory(self.device, self.model.name, checked.items()) from exc
        except Exception as exc:  # numba-cuda raises its own driver error types
            if "out of memory" not in str(exc).lower():
                raise
            raise out_of_memory(self.device, self.model.name, checked.items()) from exc

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        """Run once; return the outputs as new NumPy arrays (synchronises the device).

        Args:
            inputs: a dict of input name to array, a sequence in input order, or one array.
        """
        executor, plan = self._stage(inputs)
        with self.settings():
            outputs = executor.execute(plan)
        return [self._device.download(o) for o in outputs]

    def runner(self, inputs: Inputs) -> Callable[[], Any]:
        """A zero-argument callable running one inference on inputs staged once.

        The callable returns when the device has finished; outputs stay on the device
        in the session's planned buffers (overwritten by the next call). Its first call
        is the first inference (first touch of the buffers, kernels the planning run did
        not call): measuring warms it up, as for every runtime.
        """
        executor, plan = self._stage(inputs)
        device = self._device

        def run_once() -> list[Any]:
            if self._applied or self.threads is None:
                outputs = executor.execute(plan)
            else:
                with self.settings():
                    outputs = executor.execute(plan)
            device.synchronize()
            return outputs

        return run_once

    def run_layers(self, inputs: Inputs, repeats: int = 10) -> list[LayerTiming]:
        """Per-layer timings of ``repeats`` instrumented runs, in execution order.

        One `LayerTiming` per canonical layer: the nodes of a layer are summed within
        each run; ``detail`` lists the executed ``nodes`` and the ``fused`` ones. A layer
        whose nodes were all fused into another is reported with zero time and
        ``detail["fused_into"]``. CPU steps are timed with ``perf_counter``, CUDA steps
        with CUDA events.
        """
        executor, plan = self._stage(inputs)
        with self.settings():
            executor.execute(plan)
            self._device.synchronize()
            return executor.layer_timings(plan, repeats)

    def layer_methods(self) -> Mapping[str, LayerMethod]:
        """Only the executor's own timer: ``{"default": run_layers}``."""
        return {"default": self.run_layers}

    def memory(self, inputs: Inputs) -> MemoryReport:
        """The buffers planned and bound for these inputs (see `planned_memory`)."""
        from workbench.backends.numba.memory import planned_memory

        executor, plan = self._stage(inputs)
        with self.settings():
            executor.execute(plan)  # kernels may fill their caches on the first run
        return planned_memory(plan, self.graph.consts)

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        """Numba's thread count set to `threads` while inside, the caller's restored after.

        Numba's count belongs to the calling thread, and its parallel loops wait for all
        of their threads: the count holds only while this session runs or is measured.
        `profile` enters it once around the measurement; the `runner` callable otherwise
        sets it on each call. Nested entries, and a count already in force, are no-ops.
        """
        if self.threads is None or self._applied:
            yield
            return
        import numba

        before = numba.get_num_threads()
        # Numba runs at most the NUMBA_NUM_THREADS it started with
        wanted = min(self.threads, numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
        if before == wanted:
            yield
            return
        numba.set_num_threads(wanted)
        self._applied = True
        try:
            yield
        finally:
            self._applied = False
            numba.set_num_threads(before)

    @property
    def conv_strategies(self) -> list[dict[str, Any]]:
        """The kernel each convolution runs and why, per plan (input shapes) made so far:
        node, layer, the plan's batch (its first input's leading dimension), ``strategy``,
        the candidates' measured ``times_ms`` and ``source`` (see
        `workbench.backends.numba.strategy.Decision`)."""
        executor, rows = self._executor, []
        for plan in executor.plans if executor is not None else []:
            for step in plan.steps:
                decision = executor.decision(plan, step.node)  # type: ignore[union-attr]
                if decision is not None:
                    node, shape = step.node, next(iter(plan.inputs.values())).shape
                    batch = int(shape[0]) if shape else None
                    rows.append({"node": node.name, "layer": node.layer, "batch": batch})
                    rows[-1].update(decision.to_dict())
        return rows

    def close(self) -> None:
        """Drop the plans and their buffers (device memory is freed with them)."""
        self._executor = None
