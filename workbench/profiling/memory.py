"""Memory of one inference: the model's own (measured by its backend), the cost model's
estimate, and the process's resident set, kept apart and named so nobody mistakes one
for another.

- **model**: what the runtime holds for this model, measured by the backend's
  ``Session.memory`` (torch's profiler memory events or CUDA allocator peaks, ORT's arena
  statistics, the Numba executor's planned buffers); ``model_memory_unavailable`` says why
  when a backend cannot measure. Fields ``model_*``.
- **estimate**: weights + inputs + the peak of live activations when the ONNX graph's
  nodes run in order, each value freed after its last reader (`estimate_memory`). Fields
  ``estimate_*``.
- **process RSS (not the model)**: the whole process's resident set while the model runs
  (Python, every imported library, other sessions). Fields ``process_rss_*``.

All in bytes. Each is measured in its own run, so no sampling competes with a timed pass.
A profile holds them as one `ProfileMemory` record, written to JSON as the flat fields
named above (``to_dict``), the ones not measured left out.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.base import MemoryReport, memory_of

if TYPE_CHECKING:
    import onnx
    import pandas as pd

    from workbench.profiling.profile import Profile

#: ops whose output shares its input's memory (nothing allocated)
ALIAS_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})

#: per-layer activation memory measured by a backend agrees with the cost model's
#: ``activation_bytes`` within this relative tolerance on layers that allocate (views and
#: in-place ops allocate nothing and are left out); checked on the samples in the tests
LAYER_TOLERANCE = 0.05

#: the labels every view uses, so the process's resident set is never read as the model's
PROCESS_RSS_LABEL = "process RSS (not the model)"

#: keys of profiles written before the model's memory was measured -> today's keys
_LEGACY_KEYS = {
    "peak_bytes": "process_rss_bytes",
    "rss_before_bytes": "process_rss_before_bytes",
    "run_delta_bytes": "process_rss_delta_bytes",
}


@dataclass(frozen=True)
class ProfileMemory:
    """The memory report of a profile (bytes); None: not measured (left out of JSON).

    Attributes:
        model_peak_bytes: the model's own peak, measured by its backend
            (`workbench.backends.base.MemoryReport.peak_bytes`).
        model_peak_source: how the backend measured it.
        model_weights_bytes, model_input_bytes, model_activation_peak_bytes,
            model_reserved_bytes: the parts of the model's peak, as the backend told.
        model_memory_notes: what the backend's numbers leave out.
        model_memory_unavailable: why the backend measured nothing.
        activation_bytes_by_layer: per layer, the memory the backend saw it allocate.
        estimate_peak_bytes, estimate_weights_bytes, estimate_input_bytes,
            estimate_activation_peak_bytes: the cost model's peak and its parts.
        estimate_source: how the estimate is made.
        estimate_unavailable: why there is no estimate.
        process_rss_bytes: the whole process's resident set at its peak (not the model).
        process_rss_before_bytes, process_rss_delta_bytes: before the run, and what it added.
        process_rss_error: why the process's resident set was not read.
        backend_peak_bytes: a per-layer trace's own peak (ORT's arena).
        allocated_bytes_by_layer: per leaf layer, what torch.profiler saw it allocate.
        params_bytes: the layers' parameter bytes, summed.
        extra: fields this version does not know (a newer file's), kept as read.

    Example:
        >>> p.memory.model_peak_bytes, p.memory.process_rss_bytes
    """

    model_peak_bytes: int | None = None
    model_peak_source: str | None = None
    model_weights_bytes: int | None = None
    model_input_bytes: int | None = None
    model_activation_peak_bytes: int | None = None
    model_reserved_bytes: int | None = None
    model_memory_notes: tuple[str, ...] | None = None
    model_memory_unavailable: str | None = None
    activation_bytes_by_layer: Mapping[str, int] | None = None
    estimate_peak_bytes: int | None = None
    estimate_weights_bytes: int | None = None
    estimate_input_bytes: int | None = None
    estimate_activation_peak_bytes: int | None = None
    estimate_source: str | None = None
    estimate_unavailable: str | None = None
    process_rss_bytes: int | None = None
    process_rss_before_bytes: int | None = None
    process_rss_delta_bytes: int | None = None
    process_rss_error: str | None = None
    backend_peak_bytes: int | None = None
    allocated_bytes_by_layer: Mapping[str, int] | None = None
    params_bytes: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def merged(self, other: ProfileMemory) -> ProfileMemory:
        """This report with every field ``other`` measured taken from ``other``."""
        given = {
            f.name: value
            for f in dataclasses.fields(other)
            if f.name != "extra" and (value := getattr(other, f.name)) is not None
        }
        return dataclasses.replace(self, **given, extra={**self.extra, **other.extra})

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields: the measured ones, by the names profiles have always used."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None:
                continue
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ProfileMemory:
        """Read `to_dict` output, a stored profile's older keys upgraded (`upgrade_memory`)."""
        data = upgrade_memory(data)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("model_memory_notes"), list):
            values["model_memory_notes"] = tuple(values["model_memory_notes"])
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})


class RssSampler:
    """Samples this process's resident set size every ``interval_s`` while active.

    Example:
        >>> with RssSampler() as rss:
        ...     session.run(x)
        >>> rss.peak_bytes - rss.before_bytes
    """

    def __init__(self, interval_s: float = 0.001) -> None:
        import psutil

        self._process = psutil.Process()
        self.interval_s = interval_s
        self.before_bytes = 0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, int(self._process.memory_info().rss))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> RssSampler:
        self.before_bytes = int(self._process.memory_info().rss)
        self.peak_bytes = self.before_bytes
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def measure_memory(session: Any, inputs: dict[str, np.ndarray]) -> ProfileMemory:
    """The model's memory, the estimate and the process's RSS for ``session.run(inputs)``.

    Args:
        session: a compiled `Session` (its ``memory`` method is optional).
        inputs: the inputs to measure at.

    Returns:
        A `ProfileMemory` (bytes; see the module docstring). Never raises: what fails
        is reported as ``model_memory_unavailable``, ``estimate_unavailable`` or
        ``process_rss_error``, with the reason.

    Example:
        >>> measure_memory(wb.backend("torch").compile(m, "cpu"), m.example_inputs(32))
        ProfileMemory(model_peak_bytes=..., estimate_peak_bytes=..., process_rss_bytes=...)
    """
    out = process_rss(session, inputs)
    try:
        report = memory_of(session, inputs)
    except Exception as exc:  # memory is a side report; the timing pass reports failures
        report = MemoryReport.unavailable(f"the backend's measurement failed: {exc}")
    out = out.merged(model_memory(report))
    try:
        proto = session.model.to_onnx().proto
        assert proto is not None  # an exported Model always carries its graph
        return out.merged(estimate_memory(proto, inputs))
    except Exception as exc:  # a graph the cost model cannot shape: say so, never guess
        return dataclasses.replace(out, estimate_unavailable=f"cost model failed: {exc}")


def process_rss(session: Any, inputs: dict[str, np.ndarray]) -> ProfileMemory:
    """The process's resident set during one ``session.run(inputs)`` (not the model's).

    Returns:
        ``process_rss_bytes`` (the peak), ``process_rss_before_bytes`` and
        ``process_rss_delta_bytes`` (what the run added), or ``process_rss_error``.
    """
    try:
        with RssSampler() as rss:
            session.run(inputs)
    except Exception as exc:  # memory is a side report; the timing pass reports failures
        return ProfileMemory(process_rss_error=f"memory run failed: {exc}")
    return ProfileMemory(
        process_rss_bytes=rss.peak_bytes,
        process_rss_before_bytes=rss.before_bytes,
        process_rss_delta_bytes=max(0, rss.peak_bytes - rss.before_bytes),
    )


def model_memory(report: MemoryReport) -> ProfileMemory:
    """A backend's `MemoryReport` as the ``model_*`` fields of a profile's memory."""
    if not report.measured:
        return ProfileMemory(
            model_memory_unavailable=report.reason or "the backend measured nothing"
        )
    return ProfileMemory(
        model_peak_bytes=report.peak_bytes,
        model_peak_source=report.source,
        model_weights_bytes=report.weights_bytes,
        model_input_bytes=report.input_bytes,
        model_activation_peak_bytes=report.activation_peak_bytes,
        model_reserved_bytes=report.reserved_bytes,
        model_memory_notes=tuple(report.notes),
        activation_bytes_by_layer=dict(report.by_layer_bytes) if report.by_layer_bytes else None,
    )


def estimate_memory(proto: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> ProfileMemory:
    """The cost model's peak: weights + inputs + live activations by execution order.

    Walks the ONNX graph in node order at the inputs' shapes: each node's outputs are
    allocated when it runs and freed after their last reader (graph outputs live to the
    end); views (`ALIAS_OPS`) allocate nothing and keep their source alive.

    Args:
        proto: the model's ONNX graph (a torch model's export: ``model.to_onnx().proto``);
            not changed.
        inputs: the inputs that fix the shapes.

    Returns:
        ``estimate_peak_bytes``, ``estimate_weights_bytes``, ``estimate_input_bytes``,
        ``estimate_activation_peak_bytes`` and ``estimate_source`` (or
        ``estimate_unavailable``) of a `ProfileMemory`.
    """
    from workbench.profiling.cost import tensor_shapes

    graph = proto.graph
    shapes = tensor_shapes(proto, inputs)

    unknown: list[str] = []

    def size(name: str) -> int:
        if name not in shapes:
            unknown.append(name)
            return 0
        shape, itemsize = shapes[name]
        return int(np.prod(shape, dtype=np.int64)) * itemsize

    weights = {init.name for init in graph.initializer}
    root: dict[str, str] = {}
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            if name in root:
                last_use[root[name]] = index
        for name in node.output:
            alias = node.op_type in ALIAS_OPS and node.input and node.input[0] in root
            root[name] = root[node.input[0]] if alias else name
    for output in graph.output:
        if output.name in root:
            last_use[root[output.name]] = len(graph.node)
    live: dict[str, int] = {}
    peak = 0
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name and root.get(name) == name:
                live[name] = size(name)
        peak = max(peak, sum(live.values()))
        for name in [n for n in live if last_use.get(n, index) <= index]:
            del live[name]
    input_bytes = sum(int(a.nbytes) for a in inputs.values())
    weight_bytes = sum(size(name) for name in weights)
    if unknown:  # a partial sum would understate the peak: say what is missing instead
        shown = ", ".join(sorted(set(unknown))[:5])
        return ProfileMemory(estimate_unavailable=f"cost model could not size tensor(s) {shown}")
    return ProfileMemory(
        estimate_peak_bytes=weight_bytes + input_bytes + peak,
        estimate_weights_bytes=weight_bytes,
        estimate_input_bytes=input_bytes,
        estimate_activation_peak_bytes=peak,
        estimate_source="cost model: weights + inputs + live activations by execution order",
    )


def upgrade_memory(memory: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stored profile's memory with today's keys: an old ``peak_bytes`` was the process's
    resident set, so it becomes ``process_rss_bytes`` (and never the model's peak)."""
    out = dict(memory or {})
    legacy = [old for old in _LEGACY_KEYS if old in out]
    for old in legacy:
        out.setdefault(_LEGACY_KEYS[old], out.pop(old))
    if legacy and "model_peak_bytes" not in out:
        out.setdefault(
            "model_memory_unavailable", "not measured: written before profiles measured it"
        )
    return out


def activation_agreement(profile: Profile) -> pd.DataFrame:
    """Measured per-layer activation memory against the cost model's, layer by layer.

    Returns:
        One row per layer the backend measured and the cost model sized: ``layer``,
        ``measured_bytes``, ``estimate_bytes``, ``ratio`` (measured / estimate) and
        ``within_tolerance`` (|ratio - 1| <= `LAYER_TOLERANCE`; views and in-place ops,
        which allocate nothing, are ``None``).
    """
    import pandas as pd

    measured = profile.memory.activation_bytes_by_layer or {}
    layers = profile.layers
    if not measured or layers.empty or "activation_bytes" not in layers:
        return pd.DataFrame(
            columns=["layer", "measured_bytes", "estimate_bytes", "ratio", "within_tolerance"]
        )
    estimate = layers.set_index("layer")["activation_bytes"]
    rows = []
    for layer, nbytes in measured.items():
        if layer not in estimate.index or not estimate[layer] > 0:
            continue
        ratio = nbytes / float(estimate[layer])
        within = None if nbytes == 0 else abs(ratio - 1) <= LAYER_TOLERANCE
        rows.append((layer, nbytes, float(estimate[layer]), ratio, within))
    return pd.DataFrame(
        rows, columns=["layer", "measured_bytes", "estimate_bytes", "ratio", "within_tolerance"]
    )
