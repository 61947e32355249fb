"""`TorchSession`: a torch module placed on one device, run under ``torch.inference_mode``.

An ONNX model runs as the torch module `workbench.backends.torch.from_onnx` builds from its
graph; its per-layer rows and memory are then named after the canonical layers.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.base import Inputs, LayerMethod, LayerTiming, MemoryReport
from workbench.backends.torch.layers import torch_layer_timings, torch_profiler_layer_timings
from workbench.backends.torch.memory import torch_memory
from workbench.errors import InputError, out_of_memory
from workbench.model import named_outputs, to_numpy

if TYPE_CHECKING:
    import torch

    from workbench.model import Model


@dataclass(frozen=True)
class TorchOptions:
    """Options of the torch backend's ``compile``.

    Attributes:
        threads: intra-op threads on the CPU while the session runs or is measured
            (None or 0: torch's own count capped by the CPUs free here, see
            `workbench.backends.cpus.default_threads`). torch's thread count is
            process-wide, so `TorchSession.settings` applies it and restores it after.
    """

    threads: int | None = None


class TorchSession:
    """A torch module placed on one device, run under ``torch.inference_mode``.

    Attributes:
        model: the model it was compiled from.
        device: the device string.
        options: the validated `TorchOptions`.
        threads: the intra-op threads it runs with on the CPU (None on a GPU).
        module: the module that runs (the user's on the CPU, a moved copy on a GPU; for an
            ONNX model, the `OnnxModule` built from its graph).
    """

    backend = "torch"

    def __init__(self, model: Model, device: str, options: TorchOptions | None = None) -> None:
        import torch

        self.model = model
        self.device = device
        self.options = options or TorchOptions()
        self.module = _module_for(model, device)
        self._torch_device = torch.device(device)
        self._applied = False  # inside settings(): the thread count is already set
        self.threads = _threads(self.options.threads, self._torch_device.type)

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        """Apply `threads` process-wide while inside; restore the old count after.

        torch has no per-session thread setting, and a count left changed would slow or
        skew every later measurement in the process (another backend's included), so it
        holds only for the duration of a run or a measurement. `run` and `run_layers`
        enter it themselves. `profile` enters it once around the whole measurement: the
        `runner` callable then finds the count already set and times the forward pass
        alone; called outside it, the callable sets and restores the count on each call.
        Nested entries are no-ops.
        """
        import torch

        before = torch.get_num_threads()
        if not self.threads or self._applied or before == self.threads:
            yield
            return
        torch.set_num_threads(self.threads)
        self._applied = True
        try:
            yield
        finally:
            self._applied = False
            torch.set_num_threads(before)

    def stage(self, inputs: Inputs) -> list[torch.Tensor]:
        """The inputs validated and placed on the session's device, in input order.

        Raises:
            InputError: an input is missing or has the wrong shape or dtype.
        """
        import torch

        arrays = self.model.check_inputs(inputs)
        return [torch.from_numpy(a).to(self._torch_device) for a in arrays.values()]

    def run_staged(self, tensors: list[torch.Tensor]) -> Any:
        """One forward pass on `stage`'s tensors under ``torch.inference_mode``; the
        module's raw outputs (not synchronised, thread settings not applied).

        Raises:
            BackendError: the device or the CPU allocator ran out of memory.
            InputError: the module failed on these inputs.
        """
        import torch

        try:
            with torch.inference_mode():
                return self.call(*tensors)
        except (RuntimeError, MemoryError) as exc:
            # CUDA's OutOfMemoryError, or the CPU allocator's RuntimeError
            if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError) or (
                "can't allocate memory" in str(exc)
            ):
                names = [spec.name for spec in self.model.inputs]
                pairs = zip(names, tensors, strict=False)
                raise out_of_memory(self.device, self.model.name, pairs) from exc
            raise InputError(f"torch failed to run {self.model.name!r}: {exc}") from exc

    def call(self, *tensors: torch.Tensor) -> Any:
        """One bare forward pass of what this session runs (the eager module here; a
        compiled session's compiled wrapper): no inference mode, no error mapping, for
        measuring code that sets up its own context (the memory profiler)."""
        return self.module(*tensors)

    def synchronize(self) -> None:
        """Wait for the device to finish queued work (no-op on the CPU)."""
        import torch

        if self._torch_device.type == "cuda":
            torch.cuda.synchronize(self._torch_device)

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        with self.settings():
            outputs = self.run_staged(self.stage(inputs))
        # a Hugging Face ModelOutput, a tuple or dict: its tensors in order, as `outputs`
        return [to_numpy(o) for _, o in named_outputs(outputs)]

    def runner(self, inputs: Inputs) -> Callable[[], Any]:
        return self.timed_runner(self.stage(inputs), self.run_staged)

    def timed_runner(
        self, tensors: list[torch.Tensor], forward: Callable[[list[torch.Tensor]], Any]
    ) -> Callable[[], Any]:
        """The callable `runner` returns: ``forward(tensors)``, then a synchronisation.

        Inside `settings` (a profile's measurement) the thread count is already set and
        the call times the forward pass alone; outside, it sets and restores the count on
        each call. A subclass passes its own ``forward`` (a compiled session: one that
        must not recompile).
        """

        def run_once() -> Any:
            if self._applied or not self.threads:
                out = forward(tensors)
            else:
                with self.settings():
                    out = forward(tensors)
            self.synchronize()
            return out

        return run_once

    def run_layers(self, inputs: Inputs, repeats: int = 10) -> list[LayerTiming]:
        """Per-module timings with forward hooks (see `torch_layer_timings`)."""
        with self.settings():
            return self._canonical(torch_layer_timings(self, inputs, repeats))

    def profiler_layers(self, inputs: Inputs, repeats: int = 10) -> list[LayerTiming]:
        """Per-module timings by ``torch.profiler``, with memory per module (see
        `torch_profiler_layer_timings`): the ``"torch.profiler"`` layer method."""
        with self.settings():
            return self._canonical(torch_profiler_layer_timings(self, inputs, repeats))

    def _canonical(self, timings: list[LayerTiming]) -> list[LayerTiming]:
        """Module paths are the canonical layers of a torch model; an ONNX one maps them."""
        if self.model.module is not None:
            return timings
        return self.module.canonical_timings(timings)  # type: ignore[operator]

    def layer_methods(self) -> Mapping[str, LayerMethod]:
        """``"default"`` (forward hooks) and ``"torch.profiler"`` (with memory per module)."""
        return {"default": self.run_layers, "torch.profiler": self.profiler_layers}

    def memory(self, inputs: Inputs) -> MemoryReport:
        """The model's own memory in one forward pass (see `torch_memory`)."""
        with self.settings():
            report = torch_memory(self, inputs)
        if self.model.module is not None:
            return report
        return self.module.canonical_memory(report)  # type: ignore[operator]

    def close(self) -> None:
        self.module = None  # type: ignore[assignment]


def _threads(threads: int | None, device_type: str) -> int | None:
    """The intra-op threads a CPU session runs with: the option, else torch's own count
    capped by the free CPUs. torch counts the machine's cores, not a container's quota,
    and its OpenMP threads wait for each other at every operator: with a busy neighbour
    per core the sample CNN took 277 ms on 2 threads and 2.3 ms on 1."""
    if device_type != "cpu":
        return threads or None
    import torch

    from workbench.backends.cpus import default_threads

    _cap_interop_threads()
    return threads or default_threads(torch.get_num_threads())


@functools.cache
def _cap_interop_threads() -> None:
    """torch's inter-op pool (``torch.jit.fork``) no larger than the CPUs available.

    torch allows this once, before the pool starts: a pool already running keeps its size.
    """
    import torch

    from workbench.backends.cpus import cpu_budget

    available = cpu_budget().available
    if torch.get_num_interop_threads() > available:
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(available)


def _module_for(model: Model, device: str) -> torch.nn.Module:
    """The module a session on ``device`` runs; the user's model is never changed."""
    if model.module is None:  # an ONNX model (`supports` has checked its ops)
        from workbench.backends.torch.from_onnx import onnx_module

        return onnx_module(model).to(device)
    # moving a module to a GPU changes it in place: move a copy, never the user's model
    return model.module if device == "cpu" else copy.deepcopy(model.module).to(device)
