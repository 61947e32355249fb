"""The contract between workbench and the runtimes that execute models.

A backend is any object satisfying the `Backend` protocol; it need not subclass
anything. Built-in backends register themselves with `register`; third parties add
theirs through the ``workbench.backends`` entry-point group, loaded lazily the first
time a name is looked up. Profiling and sweeps speak only to these protocols.

Each backend's ``compile`` options are a frozen dataclass built by `parse_options`, so
every backend rejects an unknown option or a badly typed value with the same
`BackendOptionError` and a one-line message listing the options it knows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import os
import time
import types
import typing
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np

from workbench.data import Inputs
from workbench.errors import (
    BackendOptionError,
    DeviceUnavailableError,
    UnknownBackendError,
    UnsupportedModelError,
)

if TYPE_CHECKING:
    from workbench.model import Model


@dataclass(frozen=True)
class Support:
    """Whether a backend can run a model, and if not, why.

    Attributes:
        ok: True when the backend can compile and run the model.
        reasons: human-readable reasons when it cannot (e.g. unsupported op names).
    """

    ok: bool
    reasons: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class Availability:
    """Whether a backend works on this machine.

    Attributes:
        ok: the backend's library imports and at least one device is usable.
        reason: why not, and what to do, when it is not available.
        version: the version of the underlying library, when known.
        details: per-device facts (``{"cpu": "8 threads", "cuda:0": "H100 80GB"}``).
    """

    ok: bool
    reason: str = ""
    version: str = ""
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerTiming:
    """Raw per-layer timings from one instrumented run or a set of them.

    Attributes:
        layer: canonical layer name (see `workbench.model`).
        op_type: the layer's op type as the backend saw it.
        samples_ms: one duration per instrumented run, in milliseconds.
        detail: backend-specific facts (kernel names, fused nodes, provider).
    """

    layer: str
    op_type: str
    samples_ms: tuple[float, ...]
    detail: Mapping[str, Any] = field(default_factory=dict)


#: a per-layer timing method: ``method(inputs, repeats)`` -> timings in execution order
LayerMethod = Callable[[Inputs, int], list[LayerTiming]]


@dataclass(frozen=True)
class ImportedTrace:
    """Per-layer timings read from a runtime's own trace file, before they become a `Profile`.

    Attributes:
        model: the model's name (the file's stem when the trace names none).
        backend: the runtime that wrote the trace (``"onnxruntime"``, ``"torch"``).
        device: ``"cpu"`` or ``"cuda:0"``, as far as the trace tells.
        batch_size: the batch the trace ran (0 when it does not tell).
        timings: `LayerTiming` per layer, in execution order.
        run_ms: one end-to-end duration per traced run, in milliseconds (instrumented).
        method: how the timings were obtained, for `Profile.layer_method`.
        notes: what the trace could not tell, in order.
        memory: memory facts the trace holds (``backend_peak_bytes``).
    """

    model: str
    backend: str
    device: str
    batch_size: int
    timings: tuple[LayerTiming, ...]
    run_ms: tuple[float, ...]
    method: str
    notes: tuple[str, ...] = ()
    memory: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryReport:
    """The model's own memory in one inference, as its backend measured it (bytes).

    Not the process's resident set: only what the runtime holds for this model. A backend
    that cannot measure returns ``MemoryReport.unavailable(why)``; it never estimates.

    Attributes:
        source: how the numbers were measured (``"torch.profiler memory events (CPU)"``).
        activation_peak_bytes: peak of what the inference itself allocated above what was
            held before it (activations, outputs, workspaces); None when unavailable.
        weights_bytes: the weights the runtime holds for the model, counted from its
            tensors; None when the runtime does not tell.
        input_bytes: the staged inputs.
        reserved_bytes: what the allocator held at its peak (ORT's arena, torch's CUDA
            cache), when it tells; None otherwise.
        by_layer_bytes: per canonical layer, the memory it allocated that outlived it
            (its outputs), when measured.
        reason: why nothing could be measured (empty when measured).
        notes: what the numbers leave out, in words.

    Example:
        >>> report = memory_of(session, x)
        >>> report.peak_bytes if report.measured else report.reason
    """

    source: str
    activation_peak_bytes: int | None = None
    weights_bytes: int | None = None
    input_bytes: int = 0
    reserved_bytes: int | None = None
    by_layer_bytes: Mapping[str, int] = field(default_factory=dict)
    reason: str = ""
    notes: tuple[str, ...] = ()

    @classmethod
    def unavailable(cls, reason: str) -> MemoryReport:
        """A report saying why the model's memory could not be measured."""
        return cls(source="unavailable", reason=reason)

    @property
    def measured(self) -> bool:
        """True when the activation peak was measured."""
        return self.activation_peak_bytes is not None

    @property
    def peak_bytes(self) -> int | None:
        """Weights + inputs + activation peak: the model's peak (None when unmeasured)."""
        if self.activation_peak_bytes is None:
            return None
        return (self.weights_bytes or 0) + self.input_bytes + self.activation_peak_bytes


@runtime_checkable
class Session(Protocol):
    """A model compiled for one device, ready to run.

    Optional: ``memory(inputs) -> MemoryReport | None``, the model's own memory in one
    inference as the runtime measures it; it is left out of the protocol so sessions
    without it still satisfy ``isinstance``, and callers go through `memory_of`. A session
    whose own helpers (per-layer timing, memory) run it on inputs staged once is also a
    `StagedSession`; those helpers take it through a protocol, never its private members.

    Attributes:
        model: the `Model` it was compiled from.
        backend: the backend's registry name.
        device: the device string (``"cpu"``, ``"cuda:0"``).
    """

    model: Model
    backend: str
    device: str

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        """Run once on host inputs; return the outputs as numpy arrays (synchronises)."""
        ...

    def runner(self, inputs: Inputs) -> Callable[[], Any]:
        """A zero-argument callable that runs one inference on pre-staged inputs.

        Inputs are validated and moved to the device once, outside the callable, so a
        timer measures inference rather than host-to-device copies. The callable
        returns only when the device has finished (it synchronises).
        """
        ...

    def run_layers(self, inputs: Inputs, repeats: int = 10) -> list[LayerTiming]:
        """Run ``repeats`` instrumented inferences; return per-layer timings in execution order."""
        ...

    def layer_methods(self) -> Mapping[str, LayerMethod]:
        """Per-layer timing methods by name: ``"default"`` is `run_layers`; others are
        alternatives a profile can ask for (torch's ``"torch.profiler"``)."""
        ...

    def settings(self) -> AbstractContextManager[None]:
        """A context applying the session's process-wide settings (torch's thread count)
        while measuring and restoring them on exit; a no-op for per-session runtimes."""
        ...

    def close(self) -> None:
        """Release the session's resources (device memory, temporary files)."""
        ...


@runtime_checkable
class StagedSession(Protocol):
    """A session that stages inputs once and runs on them as often as asked.

    What a backend's own measuring helpers need (its per-layer timing and memory
    modules), as public methods: the torch and onnxruntime sessions are staged sessions.
    ``runner`` is the timed form of the same two steps.
    """

    def stage(self, inputs: Inputs) -> Any:
        """The inputs validated and placed where the runtime reads them (numpy feeds by
        name, tensors on the device), once."""
        ...

    def run_staged(self, staged: Any) -> Any:
        """One inference on what `stage` returned; the runtime's own outputs."""
        ...


def cache_dir() -> Path:
    """Where workbench keeps what it measured or built on this machine (the ceilings, the
    Numba convolutions' kernel choices, treelite's compiled libraries); the environment
    variable ``WORKBENCH_CACHE_DIR`` overrides ``~/.cache/workbench``."""
    return Path(os.environ.get("WORKBENCH_CACHE_DIR") or Path.home() / ".cache" / "workbench")


def layer_methods_of(session: Any) -> Mapping[str, LayerMethod]:
    """``session.layer_methods()``, or `run_layers` alone for a session written before it.

    Plugins that predate `Session.layer_methods` keep profiling per layer; a session
    with neither has no per-layer method (an empty mapping).
    """
    methods = getattr(session, "layer_methods", None)
    if callable(methods):
        return methods()
    run_layers = getattr(session, "run_layers", None)
    return {"default": run_layers} if callable(run_layers) else {}


def settings_of(session: Any) -> AbstractContextManager[None]:
    """``session.settings()``, or a no-op context for a session written before it."""
    settings = getattr(session, "settings", None)
    return settings() if callable(settings) else contextlib.nullcontext()


def memory_of(session: Any, inputs: Inputs) -> MemoryReport:
    """``session.memory(inputs)``, or an unavailable report for a session without it.

    ``memory`` is optional in the protocol: a plugin written before it (or one whose
    runtime cannot measure) still profiles, and the profile says why memory is missing.
    """
    memory = getattr(session, "memory", None)
    if not callable(memory):
        return MemoryReport.unavailable(
            f"backend {getattr(session, 'backend', '?')!r} does not measure its memory"
        )
    report = memory(inputs)
    return report if report is not None else MemoryReport.unavailable("the session measured none")


@runtime_checkable
class Backend(Protocol):
    """A runtime that can execute models on one or more devices.

    Optional: ``half_precision_fallback() -> str``, how the runtime runs a half-precision
    op on a CPU without native half arithmetic, in words (`half_precision_fallback_of`
    gives the generic wording for a backend without it).

    Optional: ``decoder(model, device, *, threads) -> Decoder``, token-by-token generation
    of a causal LM (`GenerativeBackend`; `generative` finds it).

    Optional: ``start() -> float``, the runtime's one-off start in this process (its
    import, a JIT's target initialisation), done once and apart from any model's compile,
    as ``import torch`` is; the seconds it took, 0.0 once started (`start_of`, `once`).
    """

    name: str

    def availability(self) -> Availability:
        """Whether this backend works here, with versions and device details."""
        ...

    def devices(self) -> list[str]:
        """Devices usable on this machine (empty when the backend is unavailable)."""
        ...

    def supports(self, model: Model) -> Support:
        """Whether this backend can run ``model``, with reasons when it cannot."""
        ...

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> Session:
        """Prepare ``model`` to run on ``device``; never changes ``model``."""
        ...


#: how a runtime without native half-precision arithmetic computes, unless it says otherwise
HALF_PRECISION_FALLBACK = "falls back to slow reference kernels that convert element by element"


def half_precision_fallback_of(name: str) -> str:
    """How backend ``name`` runs half-precision ops on a CPU without native half arithmetic.

    The backend's own ``half_precision_fallback()`` when it has one, else
    `HALF_PRECISION_FALLBACK`; a backend unknown here (a profile read on a machine without
    its plugin) gets the generic wording too, so explaining a profile never fails.

    Example:
        >>> half_precision_fallback_of("onnxruntime")
        'inserts Cast nodes to float32 and back around ops without a half kernel'
    """
    try:
        backend = get_backend(name)
    except Exception:  # unknown here, or a plugin that fails to load: the wording stands
        return HALF_PRECISION_FALLBACK
    own = getattr(backend, "half_precision_fallback", None)
    return str(own()) if callable(own) else HALF_PRECISION_FALLBACK


def start_of(backend: Backend) -> float:
    """Start ``backend``'s runtime in this process (its optional ``start``); the seconds
    it took, 0.0 once started or for a backend without a start of its own.

    Example:
        >>> start_of(get_backend("onnxruntime")) >= 0.0  # imports onnxruntime, once
        True
    """
    own = getattr(backend, "start", None)
    return float(own()) if callable(own) else 0.0


def once(start: Callable[[], object]) -> Callable[[], float]:
    """``start`` run at the first call only, timed: the seconds it took, 0.0 after."""
    done = False

    def timed() -> float:
        nonlocal done
        if done:
            return 0.0
        started = time.perf_counter()
        start()
        done = True
        return time.perf_counter() - started

    return timed


OptionsT = TypeVar("OptionsT")


def parse_options(config: type[OptionsT], backend: str, options: Mapping[str, Any]) -> OptionsT:
    """A backend's options dataclass from ``compile`` keyword arguments, validated.

    Every field's annotation is checked: ``int`` fields take non-negative integers (not
    bools), ``bool`` fields bools, ``Literal`` fields one of their values, ``X | None``
    also None. A backend calls this first thing in ``compile``.

    Args:
        config: a frozen dataclass whose fields (with defaults) are the known options.
        backend: the backend's name, for the message.
        options: the keyword arguments given to ``compile``.

    Returns:
        ``config(**options)``.

    Raises:
        BackendOptionError: an unknown name or a badly typed value; one line naming it
            and listing the known options with their types.

    Example:
        >>> @dataclass(frozen=True)
        ... class MyOptions:
        ...     threads: int | None = None
        >>> parse_options(MyOptions, "mine", {"threads": 2})
        MyOptions(threads=2)
    """
    hints = typing.get_type_hints(config)
    names = [f.name for f in dataclasses.fields(config)]  # type: ignore[arg-type]
    known = ", ".join(f"{n} ({_describe(hints[n])})" for n in names) or "none"
    for name, value in options.items():
        if name not in names:
            raise BackendOptionError(f"unknown {backend} option {name!r}; known options: {known}")
        if not _accepts(hints[name], value):
            raise BackendOptionError(
                f"{backend} option {name}={value!r} is not {_describe(hints[name])}; "
                f"known options: {known}"
            )
    return config(**options)


def _alternatives(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _accepts(hint: Any, value: Any) -> bool:
    for kind in _alternatives(hint):
        if kind is type(None) and value is None:
            return True
        if typing.get_origin(kind) is Literal and value in typing.get_args(kind):
            return True
        if kind is bool and isinstance(value, bool):
            return True
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value >= 0
        if kind is str and isinstance(value, str):
            return True
    return False


def _describe(hint: Any) -> str:
    words = []
    for kind in _alternatives(hint):
        if kind is type(None):
            words.append("None")
        elif typing.get_origin(kind) is Literal:
            words.append("one of " + ", ".join(repr(v) for v in typing.get_args(kind)))
        elif kind is int:
            words.append("an integer >= 0")
        elif kind is bool:
            words.append("True or False")
        else:
            words.append(f"a {getattr(kind, '__name__', kind)}")
    return " or ".join(words)


_FACTORIES: dict[str, Callable[[], Backend]] = {}
_INSTANCES: dict[str, Backend] = {}
_BUILTINS = {
    "torch": "workbench.backends.torch",
    "torch-compile": "workbench.backends.torch.compiled",
    "onnxruntime": "workbench.backends.onnxruntime",
    "genai": "workbench.backends.genai",
    "numba": "workbench.backends.numba",
    "numba-cuda": "workbench.backends.numba",
    "native": "workbench.backends.native",
    "treelite": "workbench.backends.treelite",
}
_entry_points_loaded = False


def register(name: str) -> Callable[[Callable[[], Backend]], Callable[[], Backend]]:
    """Class or factory decorator registering a backend under ``name``.

    Example:
        >>> @register("my-runtime")
        ... class MyBackend: ...
    """

    def decorate(factory: Callable[[], Backend]) -> Callable[[], Backend]:
        _FACTORIES[name] = factory
        _INSTANCES.pop(name, None)
        return factory

    return decorate


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="workbench.backends"):
        if ep.name not in _FACTORIES:
            _FACTORIES[ep.name] = _lazy_entry_point(ep)


def _lazy_entry_point(ep: Any) -> Callable[[], Backend]:
    def factory() -> Backend:
        loaded = ep.load()
        return loaded() if isinstance(loaded, type) or callable(loaded) else loaded

    return factory


def backend_names() -> list[str]:
    """Names of every known backend: built-ins, registered and from entry points."""
    _load_entry_points()
    return sorted(set(_BUILTINS) | set(_FACTORIES))


def get_backend(name: str) -> Backend:
    """The backend registered under ``name``.

    Raises:
        UnknownBackendError: no such backend; the message lists the known names.
    """
    if name in _INSTANCES:
        return _INSTANCES[name]
    if name not in _FACTORIES and name in _BUILTINS:
        importlib.import_module(_BUILTINS[name])
    _load_entry_points()
    if name not in _FACTORIES:
        close = difflib.get_close_matches(str(name), backend_names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownBackendError(
            f"unknown backend {name!r}; {hint}known backends: {', '.join(backend_names())}"
        )
    instance = _FACTORIES[name]()
    _INSTANCES[name] = instance
    return instance


def check_device(backend: Backend, device: str) -> None:
    """Raise a clear error when ``device`` is not usable on ``backend``.

    Raises:
        DeviceUnavailableError: naming the devices that are available, or why none is.
    """
    available = backend.devices()
    if device in available:
        return
    if not available:
        reason = backend.availability().reason
        raise DeviceUnavailableError(
            f"backend {backend.name!r} has no usable device here: {reason}"
        )
    raise DeviceUnavailableError(
        f"device {device!r} is not available for backend {backend.name!r}; "
        f"available: {', '.join(available)} (see `workbench devices`)"
    )


def check_supported(backend: Backend, model: Model) -> None:
    """Raise `UnsupportedModelError` listing the reasons when ``backend`` cannot run ``model``."""
    support = backend.supports(model)
    if not support.ok:
        raise UnsupportedModelError(
            f"backend {backend.name!r} cannot run {model.name!r}: " + "; ".join(support.reasons)
        )


# ---- generation: an optional capability of a backend ----------------------------------


@runtime_checkable
class Decoder(Protocol):
    """A causal language model ready to generate on one runtime, greedy, token by token.

    One generation is `prefill` on the prompt, then one `step` per further token, the KV
    cache kept inside the runtime between calls. Token ids are int64 arrays; each call
    returns the next token of every sequence (argmax of the last position's logits), as a
    (batch,) array, and returns only when the runtime has finished (it synchronises).
    `workbench.profiling.generate` times each call; a decoder never times itself.

    Optional: ``phase_layer_timings(ids, output_length, context, runs) -> (prefill,
    decode)``, per-layer `LayerTiming` lists of each phase (canonical layer names), for
    ``generate_profile(..., layers=True)``; a decoder without it gets a note instead.
    Optional: ``settings() -> context manager``, process-wide settings (torch's thread
    count) applied while generating and restored after, as `Session.settings`
    (`settings_of` gives a no-op for a decoder without it).
    Optional: ``prepare(ids, output_length, context)``, work done once before any
    timing (torch-compile compiles every graph a generation takes), its seconds in a
    ``compile_s`` attribute; ``notes``, lines a profile of the decoder reports;
    ``weights_copied``, True when the runtime holds its own copy of the weights (ORT's
    initializers), which the memory split's rest leaves out.

    Example:
        >>> d = wb.backend("onnxruntime").decoder(model)
        >>> token = d.prefill(prompt_ids)       # (batch, length) -> (batch,)
        >>> token = d.step(token)               # (batch,) -> (batch,)
        >>> d.close()
    """

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Run the prompt (batch, length) on a new, empty cache; the next tokens."""
        ...

    def extend(self, ids: np.ndarray) -> np.ndarray:
        """Run more tokens (batch, length) on the cache as it is; the next tokens."""
        ...

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Feed one token per sequence (batch,); the next tokens."""
        ...

    def cache_bytes(self) -> int:
        """Bytes the runtime's KV-cache tensors hold now (measured, not from the config)."""
        ...

    def close(self) -> None:
        """Release the cache and the runtime's resources."""
        ...


@runtime_checkable
class GenerativeBackend(Protocol):
    """A backend that can generate: the optional ``decoder`` method of a `Backend`.

    A plugin adds generation by giving its backend this one method; `generative` finds
    it, and `generation_backends` lists every registered backend that has it.
    """

    name: str

    def decoder(self, model: Any, device: str = "cpu", *, threads: int | None = None) -> Decoder:
        """A `Decoder` of ``model`` (a ``transformers`` causal LM) on ``device``; never
        changes ``model``.

        Args:
            model: the causal LM object.
            device: where it generates.
            threads: intra-op threads where the runtime has a per-decoder setting
                (None: the runtime's own default).

        Raises:
            UnsupportedModelError: ``model`` is not a causal LM this runtime can run.
            DeviceUnavailableError: the runtime cannot generate on ``device``.
        """
        ...


def generation_backends() -> list[str]:
    """Names of the registered backends that can generate (those with ``decoder``).

    A plugin that fails to load is left out rather than failing the listing.
    """
    names = []
    for name in backend_names():
        try:
            backend = get_backend(name)
        except Exception:  # a broken plugin must not stop the others being listed
            continue
        if callable(getattr(backend, "decoder", None)):
            names.append(name)
    return names


def generative(backend: Backend) -> GenerativeBackend:
    """``backend`` as a `GenerativeBackend`, when it can generate.

    Raises:
        UnsupportedModelError: the backend has no ``decoder``; one line naming the
            backends that can generate.

    Example:
        >>> decoder = generative(get_backend("torch")).decoder(model)
    """
    if not callable(getattr(backend, "decoder", None)):
        raise UnsupportedModelError(
            f"backend {backend.name!r} cannot generate (it has no decoder); backends that "
            f"can: {', '.join(generation_backends())}"
        )
    return typing.cast(GenerativeBackend, backend)


def generation_device(backend: Backend, device: str) -> None:
    """Raise unless ``device`` is one ``backend`` generates on (the CPU, for now).

    Raises:
        DeviceUnavailableError: one line naming the device and what works.
    """
    if device != "cpu":
        raise DeviceUnavailableError(
            f"backend {backend.name!r} generates on the CPU only for now, not {device!r}; "
            'use device="cpu"'
        )
