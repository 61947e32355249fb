"""The contract between workbench and the runtimes that execute models.

A backend is any object satisfying the `Backend` protocol; it need not subclass
anything. Built-in backends register themselves with `register`; third parties add
theirs through the ``workbench.backends`` entry-point group, loaded lazily the first
time a name is looked up. Profiling and sweeps speak only to these protocols.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from workbench.errors import DeviceUnavailableError, UnknownBackendError, UnsupportedModelError

if TYPE_CHECKING:
    from workbench.model import Model

Inputs = Mapping[str, Any] | Sequence[Any] | np.ndarray


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


@runtime_checkable
class Session(Protocol):
    """A model compiled for one device, ready to run.

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

    def close(self) -> None:
        """Release the session's resources (device memory, temporary files)."""
        ...


@runtime_checkable
class Backend(Protocol):
    """A runtime that can execute models on one or more devices."""

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


_FACTORIES: dict[str, Callable[[], Backend]] = {}
_INSTANCES: dict[str, Backend] = {}
_BUILTINS = {
    "torch": "workbench.backends.torch",
    "onnxruntime": "workbench.backends.onnxruntime",
    "numba": "workbench.backends.numba",
    "numba-cuda": "workbench.backends.numba",
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
        raise UnknownBackendError(
            f"unknown backend {name!r}; known backends: {', '.join(backend_names())}"
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
