"""``torch.compile`` (TorchDynamo + Inductor) as its own backend, ``"torch-compile"``.

The module is compiled in `TorchCompileBackend.compile`: one forward pass on the model's
example inputs at ``batch_size`` triggers Dynamo's capture and Inductor's code generation,
so `workbench.profile`'s ``compile_s`` holds the compile and steady-state latency never
does. Inductor specialises on input shapes (even ``dynamic=True`` graphs branch on the
batch: CPU convolutions pick their algorithm below and above batch 16), so another batch
size recompiles. The session notices every recompilation through Dynamo's counters: one
for a new input shape is done when a runner is set up, before any timing, and reported in
`TorchCompiledSession.notes`; one during timed calls raises `RecompileError`.

Per-layer times are *eager-equivalent*: Inductor fuses modules into generated kernels
that no longer carry module boundaries, so the per-layer pass times the user's eager
module with the same hooks as the ``torch`` backend, and says so.

Generation (`CompiledDecoder`, the backend's ``decoder``): the causal LM's forward is
compiled as it is called, once per new shape (the prefill, the first decode step, then
one graph with the cache length symbolic). `generate_profile` has the decoder
``prepare`` first: one untimed generation of the same prompt compiles every graph the
timed ones will use, its seconds kept apart in ``compile_s``; a compile after that
raises `RecompileError`.

Example:
    >>> s = wb.backend("torch-compile").compile(m, "cpu", mode="max-autotune", batch_size=32)
    >>> s.compile_s, s.run(m.example_inputs(32))[0].shape
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from workbench.backends.base import (
    Availability,
    Inputs,
    LayerMethod,
    LayerTiming,
    Support,
    check_device,
    check_supported,
    parse_options,
    register,
)
from workbench.backends.torch import TorchBackend
from workbench.backends.torch.decoder import TorchDecoder, phase_layer_timings
from workbench.backends.torch.session import TorchOptions, TorchSession
from workbench.errors import BackendError, DeviceUnavailableError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from workbench.model import Model

Mode = Literal["default", "reduce-overhead", "max-autotune"]

#: what every per-layer table of this backend says about its numbers
EAGER_EQUIVALENT = (
    "per-layer times are eager-equivalent: Inductor fuses modules into generated kernels "
    "without module boundaries, so each module was timed running eagerly (forward hooks); "
    "the end-to-end latency is the compiled module's"
)


class RecompileError(BackendError):
    """torch recompiled the module during a timed call: the time would include a compile."""


@dataclass(frozen=True)
class TorchCompileOptions(TorchOptions):
    """Options of the torch-compile backend's ``compile``.

    Attributes:
        threads: as `TorchOptions.threads` (process-wide, applied only while measuring).
        mode: ``torch.compile`` mode: ``"default"``, ``"reduce-overhead"`` (CUDA graphs
            on a GPU) or ``"max-autotune"`` (benchmarks kernel choices; compiles longer).
        dynamic: ``torch.compile``'s ``dynamic``: None (torch's default: static first,
            symbolic shapes after a shape changes), True (symbolic from the start) or
            False (always specialise).
        batch_size: the batch compiled ahead in ``compile`` (None: 1); another batch
            size recompiles when a runner is set up, which the session reports.

    Example:
        >>> wb.backend("torch-compile").compile(m, "cpu", mode="max-autotune", batch_size=32)
    """

    mode: Mode = "default"
    dynamic: bool | None = None
    batch_size: int | None = None


@dataclass(frozen=True)
class Recompile:
    """One recompilation the session saw: the input shapes that caused it and its seconds."""

    shapes: tuple[tuple[int, ...], ...]
    seconds: float


class TorchCompiledSession(TorchSession):
    """A torch module compiled with ``torch.compile``; compiles once on creation.

    Attributes:
        options: the validated `TorchCompileOptions`.
        module: the eager module the per-layer pass times (the user's on the CPU).
        compiled: the ``torch.compile`` wrapper of a private copy of the module.
        compile_s: seconds the first compile took (capture and code generation).
        recompiles: every later recompilation, in order.
        notes: what a profile of this session must say (eager-equivalent layers,
            recompilations).
    """

    backend = "torch-compile"
    options: TorchCompileOptions

    def __init__(self, model: Model, device: str, options: TorchCompileOptions) -> None:
        import torch

        super().__init__(model, device, options)
        # Dynamo guards on the module it compiled: compile a private copy, so hooks that
        # the per-layer pass puts on `module` (the user's) never invalidate the graph
        self.compiled = torch.compile(
            copy.deepcopy(self.module), mode=options.mode, dynamic=options.dynamic
        )
        # "reduce-overhead" replays CUDA graphs on a GPU (on the CPU it is plain Inductor)
        self._cuda_graphs = options.mode == "reduce-overhead" and device.startswith("cuda")
        self.recompiles: list[Recompile] = []
        self._shapes: set[tuple[tuple[int, ...], ...]] = set()
        example = model.example_inputs(options.batch_size or 1)
        with self.settings():
            self.compile_s, _ = self._compile_for(self.stage(example))

    @property
    def notes(self) -> list[str]:
        """Facts a profile of this session reports next to its numbers."""
        notes = [EAGER_EQUIVALENT]
        for r in self.recompiles:
            notes.append(
                f"torch recompiled for input shapes {list(r.shapes)} in {r.seconds:.2f} s, "
                f"before timing; compile_s holds only the first compile (batch "
                f"{self.options.batch_size or 1}): pass batch_size= to compile for this one"
            )
        return notes

    def call(self, *tensors: torch.Tensor) -> Any:
        """One bare call of the compiled module (a CUDA-graph step marked first)."""
        if self._cuda_graphs:
            import torch

            # each call is a new inference step: CUDA graph trees may reuse its buffers
            torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(*tensors)

    def _compile_for(self, tensors: list[torch.Tensor]) -> tuple[float, bool]:
        """Run once on ``tensors``; the seconds it took and whether torch compiled a graph."""
        before = _graphs_compiled()
        started = time.perf_counter()
        try:
            self.run_staged(tensors)
            self.synchronize()
        except Exception as exc:  # Dynamo and Inductor raise their own types
            if isinstance(exc, BackendError):
                raise
            raise BackendError(
                f"torch.compile failed on {self.model.name!r} ({self.device}, "
                f"mode={self.options.mode}): {type(exc).__name__}: {exc}"
            ) from exc
        seconds = time.perf_counter() - started
        self._shapes.add(_shapes(tensors))
        return seconds, _graphs_compiled() > before

    def _checked(self, tensors: list[torch.Tensor]) -> Any:
        """A forward pass that must not compile: raise `RecompileError` when it did."""
        before = _graphs_compiled()
        out = self.run_staged(tensors)
        if _graphs_compiled() > before:
            raise RecompileError(
                f"torch recompiled {self.model.name!r} during a timed call (input shapes "
                f"{list(_shapes(tensors))}); the time would include a compile: keep input "
                "shapes fixed while timing, or compile with batch_size= for them"
            )
        return out

    def _prepare(self, tensors: list[torch.Tensor]) -> None:
        """Compile for unseen input shapes now, outside any timing, and record it."""
        if _shapes(tensors) in self._shapes:
            return
        seconds, compiled = self._compile_for(tensors)
        if compiled:
            self.recompiles.append(Recompile(_shapes(tensors), seconds))

    def run(self, inputs: Inputs) -> list[Any]:
        with self.settings():
            tensors = self.stage(inputs)
            self._prepare(tensors)
        return super().run(inputs)

    def runner(self, inputs: Inputs) -> Callable[[], Any]:
        tensors = self.stage(inputs)
        with self.settings():
            self._prepare(tensors)
        return self.timed_runner(tensors, self._checked)

    def run_layers(self, inputs: Inputs, repeats: int = 10) -> list[LayerTiming]:
        """Eager-equivalent per-module timings (hooks on the eager module), each noted so."""
        return [_noted(t) for t in super().run_layers(inputs, repeats)]

    def profiler_layers(self, inputs: Inputs, repeats: int = 10) -> list[LayerTiming]:
        """``torch.profiler`` per-module timings on the eager module, each noted so."""
        return [_noted(t) for t in super().profiler_layers(inputs, repeats)]

    def layer_methods(self) -> Mapping[str, LayerMethod]:
        """``"default"`` (hooks) and ``"torch.profiler"``, both on the eager module."""
        return {"default": self.run_layers, "torch.profiler": self.profiler_layers}

    def close(self) -> None:
        self.compiled = None  # type: ignore[assignment]
        super().close()


class CompiledDecoder(TorchDecoder):
    """Greedy decoding with the causal LM's forward compiled by ``torch.compile``.

    A private copy of the model compiles (Dynamo guards on the module it traced, so
    hooks the eager per-layer pass puts on the user's model never invalidate it); the
    user's model is never changed. Each call that compiled a graph adds its seconds to
    `compile_s` and to `compiles`; after `prepare`, a call that compiles raises
    `RecompileError` rather than time a compile.

    Args:
        model: a ``transformers`` causal LM.
        threads: as `TorchDecoder` (process-wide while inside `settings`).
        mode: ``torch.compile``'s mode.
        dynamic: ``torch.compile``'s ``dynamic`` (None: static first, symbolic after a
            shape changes, so the growing cache compiles once more, not every step).
        compiler: ``torch.compile``'s ``backend`` (``"inductor"``; ``"eager"`` traces
            with Dynamo and runs eagerly, for checking the capture without code
            generation).

    Example:
        >>> d = CompiledDecoder(model)
        >>> d.prepare(ids, output_length=16, context=None)  # compiles, untimed
        >>> d.compile_s, d.step(d.prefill(ids))
    """

    def __init__(
        self,
        model: Any,
        threads: int | None = None,
        mode: Mode = "default",
        dynamic: bool | None = None,
        compiler: str = "inductor",
    ) -> None:
        import torch

        super().__init__(model, threads)
        self.call = torch.compile(
            copy.deepcopy(model), mode=mode, dynamic=dynamic, backend=compiler
        )
        self.mode = mode
        #: the private copy holds its own weights (the memory split counts them apart)
        self.weights_copied = True
        #: seconds spent in calls that compiled a graph, and how many did
        self.compile_s = 0.0
        self.compiles = 0
        self._sealed = False
        self._eager_layers = False

    @property
    def notes(self) -> tuple[str, ...]:
        """What a generation profile of this decoder says next to its numbers."""
        return (EAGER_EQUIVALENT,) if self._eager_layers else ()

    def _forward(self, ids: torch.Tensor) -> np.ndarray:
        before = _graphs_compiled()
        started = time.perf_counter()
        try:
            token = super()._forward(ids)
        except Exception as exc:  # Dynamo and Inductor raise their own types
            if isinstance(exc, BackendError):
                raise
            first = " ".join(str(exc).split())[:300]
            raise BackendError(
                f"torch.compile failed on {type(self.model).__name__} (mode={self.mode}) "
                f"while generating: {type(exc).__name__}: {first}"
            ) from exc
        if _graphs_compiled() > before:
            if self._sealed:
                raise RecompileError(
                    f"torch recompiled {type(self.model).__name__} for input shape "
                    f"{tuple(ids.shape)} after prepare(); the time would include a compile: "
                    "prepare with the prompt and output length that are then timed"
                )
            self.compile_s += time.perf_counter() - started
            self.compiles += 1
        return token

    def prepare(self, ids: np.ndarray, output_length: int, context: np.ndarray | None) -> None:
        """Compile every graph a generation of ``ids`` takes, now, untimed: one
        generation of ``output_length`` tokens (``context`` prefilled first). Later
        calls of the same shapes never compile; one that does raises `RecompileError`."""
        with self.settings():
            token = self.prefill(ids) if context is None else self._after(context, ids)
            for _ in range(output_length - 1):
                token = self.step(token)
        self._sealed = True

    def _after(self, context: np.ndarray, ids: np.ndarray) -> np.ndarray:
        self.prefill(context)
        return self.extend(ids)

    def phase_layer_timings(
        self, ids: np.ndarray, output_length: int, context: np.ndarray | None, runs: int
    ) -> tuple[list[LayerTiming], list[LayerTiming]]:
        """Eager-equivalent per-module timings of each phase (Inductor's kernels carry
        no module boundaries): the user's model run eagerly with the torch backend's
        hooks, each timing noted so, and the profile's notes say it."""
        eager = TorchDecoder(self.model, self.threads)
        prefill, decode = phase_layer_timings(eager, ids, output_length, context, runs)
        self._eager_layers = True
        return [_noted(t) for t in prefill], [_noted(t) for t in decode]


def _noted(timing: LayerTiming) -> LayerTiming:
    detail = {**timing.detail, "timed": "eager"}
    return LayerTiming(timing.layer, timing.op_type, timing.samples_ms, detail)


def _graphs_compiled() -> int:
    """Graphs Dynamo has compiled in this process (grows by one on every recompilation)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _shapes(tensors: list[torch.Tensor]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(t.shape) for t in tensors)


def cpp_compiler() -> str | None:
    """The C++ compiler Inductor's CPU code generation would use, or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def has_triton() -> bool:
    """Whether Triton (Inductor's GPU code generator) imports."""
    try:
        from torch.utils._triton import has_triton as torch_has_triton
    except ImportError:  # pragma: no cover - every supported torch has it
        return False
    return bool(torch_has_triton())


@register("torch-compile")
class TorchCompileBackend(TorchBackend):
    """``torch.compile`` with Inductor: ``cpu`` (needs a C++ compiler) and ``cuda:N``
    (needs Triton).

    Options for `compile` are the fields of `TorchCompileOptions`: ``mode``, ``dynamic``,
    ``batch_size`` (compiled ahead) and ``threads``.
    """

    name = "torch-compile"
    #: compiles for one batch size (its ``batch_size`` option); another recompiles
    compiles_for_batch = True

    def availability(self) -> Availability:
        eager = super().availability()
        if not eager.ok:
            return eager
        details = dict(eager.details)
        missing = []
        if cpp_compiler() is None:
            details.pop("cpu")
            missing.append("Inductor's CPU code needs a C++ compiler (install g++, or set CXX)")
        if any(d.startswith("cuda") for d in details) and not has_triton():
            details = {d: v for d, v in details.items() if not d.startswith("cuda")}
            missing.append("Inductor's GPU code needs Triton: pip install triton")
        if not details:
            return Availability(False, "; ".join(missing), eager.version)
        return Availability(True, "; ".join(missing), eager.version, details)

    def decoder(
        self, model: Any, device: str = "cpu", *, threads: int | None = None
    ) -> CompiledDecoder:
        """Greedy generation of a ``transformers`` causal LM with its forward compiled by
        Inductor (`CompiledDecoder`; CPU; never changes ``model``).

        Raises:
            DeviceUnavailableError: not the CPU, or Inductor cannot generate CPU code here.
            UnsupportedModelError: ``model`` is not a causal LM.
        """
        from workbench.backends.base import generation_device
        from workbench.loaders.causal_lm import causal_lm

        generation_device(self, device)
        availability = self.availability()
        if "cpu" not in availability.details:
            raise DeviceUnavailableError(
                f"torch-compile cannot generate here: {availability.reason or 'no CPU device'}"
            )
        causal_lm(model)  # refuses what is not a causal LM, in one line
        return CompiledDecoder(model, threads)

    def supports(self, model: Model) -> Support:
        """As the torch backend, and not at all when Inductor cannot generate code here."""
        availability = self.availability()
        if not availability.ok:
            return Support(False, (availability.reason,))
        return super().supports(model)

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> TorchCompiledSession:
        """Compile ``model`` for ``device``; never changes ``model`` (a private copy compiles).

        Runs one forward pass on ``model.example_inputs(batch_size)`` so the compile
        happens here, not in the first timed call.

        Raises:
            BackendOptionError: an unknown option or a badly typed value.
            UnsupportedModelError: an ONNX model with ops the torch kernels lack.
            DeviceUnavailableError: ``device`` is not usable here (the reason says why).
            BackendError: torch.compile failed on this model.
        """
        config = parse_options(TorchCompileOptions, self.name, options)
        check_supported(self, model)
        check_device(self, device)
        return TorchCompiledSession(model, device, config)
