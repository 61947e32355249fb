"""Per-module timing of eager PyTorch: forward hooks, or torch.profiler ranges with memory.

Every module that runs gets its inclusive time; a container also gets its *self* time
(its own code: the residual add in a block, the attention matmuls in an attention
module), so that leaves plus self rows partition the forward pass. Pure containers
(``Sequential``, ``ModuleList``, ``ModuleDict``) have no code of their own, so their
dispatch overhead stays unattributed rather than becoming a row of noise.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from workbench.backends.base import Inputs, LayerTiming, StagedSession
from workbench.errors import BackendError

if TYPE_CHECKING:
    import torch

_PURE_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


class HookedSession(StagedSession, Protocol):
    """What per-module timing needs of a torch session (`TorchSession` is one).

    Attributes:
        module: the eager module whose submodules are hooked.
        device: the device string (``"cuda:0"`` turns on device timing).
    """

    module: torch.nn.Module
    device: str

    def stage(self, inputs: Inputs) -> list[torch.Tensor]:
        """The inputs as tensors on the device, in input order."""
        ...

    def synchronize(self) -> None:
        """Wait for the device to finish queued work."""
        ...


@dataclass
class HookRecorder:
    """Hook state: open calls and, per run, inner and outer time per module path (ms).

    A call's *inner* time runs from the end of its pre-hook to the start of its post-hook
    (the module's own work); its *outer* time also covers both hooks. A container's self
    time subtracts its children's outer times, so hook overhead lands in no row at all
    (it shows in the unattributed gap instead of inflating a parent).
    """

    sync: Callable[[], None]
    open: list[tuple[str, float, float]] = field(default_factory=list)
    inner: list[dict[str, float]] = field(default_factory=list)
    outer: list[dict[str, float]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    order: list[str] = field(default_factory=list)
    parent: dict[str, str | None] = field(default_factory=dict)
    recording: bool = False

    def start_run(self) -> None:
        self.recording = True
        self.inner.append({})
        self.outer.append({})

    def pre(self, path: str) -> None:
        entered = time.perf_counter()
        if path not in self.parent:
            self.order.append(path)  # first call: execution order
            # the module that called it at run time (a ModuleList is never called itself)
            self.parent[path] = self.open[-1][0] if self.open else None
        self.sync()
        self.open.append((path, entered, time.perf_counter()))

    def post(self, path: str) -> None:
        self.sync()
        end = time.perf_counter()
        opened, entered, start = self.open.pop()
        if self.recording and opened == path:
            inner, outer = self.inner[-1], self.outer[-1]
            inner[path] = inner.get(path, 0.0) + (end - start) * 1e3
            if len(self.inner) == 1:
                self.calls[path] += 1
            outer[path] = outer.get(path, 0.0) + (time.perf_counter() - entered) * 1e3

    def timings(self, module: torch.nn.Module) -> list[LayerTiming]:
        """Leaf, container and self timings of ``module`` from the runs recorded."""
        return _timings(module, self.order, self.parent, self.inner, self.outer, self.calls)


def module_paths(module: torch.nn.Module) -> dict[str, Any]:
    """Path -> module for every module; the root is named after its class, as in `Model.layers`."""
    return {path or type(module).__name__: sub for path, sub in module.named_modules()}


def torch_layer_timings(session: HookedSession, inputs: Inputs, repeats: int) -> list[LayerTiming]:
    """Time every module of a `TorchSession` over ``repeats`` forward passes.

    Each module call is bracketed by forward pre/post hooks reading ``perf_counter``;
    on CUDA both hooks synchronise the device first, so a module's time is its kernels'
    time. Hooks are removed before returning, even on error; the module is not changed.

    Args:
        session: a torch backend session (its thread settings already applied).
        inputs: model inputs (dict or sequence of arrays).
        repeats: timed forward passes (after one untimed warm-up pass).

    Returns:
        `LayerTiming` per executed module in execution order; ``detail["scope"]`` is
        ``"leaf"``, ``"container"`` (inclusive) or ``"self"`` (a container's own code);
        ``detail["parent"]`` the enclosing module's path.

    Raises:
        BackendError: a module failed (the message names it) or no hook fired
            (a TorchScript module, whose submodules cannot be hooked).

    Example:
        >>> s = wb.backend("torch").compile(m, "cpu")
        >>> {t.layer: min(t.samples_ms) for t in s.run_layers(x, 10)}
    """
    import torch

    recorder = HookRecorder(sync=session.synchronize)
    tensors = session.stage(inputs)
    module = session.module
    with module_hooks(module, recorder.pre, recorder.post), torch.inference_mode():
        for _ in range(2):  # warm-up (first calls allocate and pick kernels); fixes the order
            _forward(module, tensors, recorder)
        for _ in range(repeats):
            recorder.start_run()
            _forward(module, tensors, recorder)
    if not recorder.order:
        raise BackendError(
            "no module hook fired: per-module timing needs an eager nn.Module "
            "(TorchScript modules cannot be hooked); use the onnxruntime backend"
        )
    return recorder.timings(module)


def _forward(module: torch.nn.Module, tensors: list[Any], recorder: HookRecorder) -> None:
    try:
        module(*tensors)
    except Exception as exc:
        failing = recorder.open[-1][0] if recorder.open else "(model)"
        recorder.open.clear()
        raise BackendError(
            f"layer {failing!r} failed during per-layer timing: {type(exc).__name__}: {exc}"
        ) from exc


def _timings(
    module: torch.nn.Module,
    order: list[str],
    parents: dict[str, str | None],
    totals: list[dict[str, float]],
    outer: list[dict[str, float]],
    calls: dict[str, int],
    extra: dict[str, dict[str, Any]] | None = None,
) -> list[LayerTiming]:
    """Leaf, container and self timings from per-run inner (and outer) times."""
    paths = module_paths(module)
    called: dict[str | None, list[str]] = defaultdict(list)
    for path in order:
        called[parents.get(path)].append(path)
    result = []
    for path in order:
        sub = paths[path]
        children = called.get(path, [])
        samples = tuple(run.get(path, 0.0) for run in totals)
        parent = parents.get(path)
        base = {"parent": parent, "calls": calls.get(path, 0), **(extra or {}).get(path, {})}
        op = type(sub).__name__
        if not list(sub.children()):
            leaf = {**base, "scope": "leaf", "kernels": _typed_op(path, op, sub)}
            result.append(LayerTiming(path, op, samples, leaf))
            continue
        result.append(LayerTiming(path, op, samples, {**base, "scope": "container"}))
        if op not in _PURE_CONTAINERS:
            own = tuple(
                max(0.0, run.get(path, 0.0) - sum(out.get(c, 0.0) for c in children))
                for run, out in zip(totals, outer, strict=True)
            )
            detail = {"parent": parent, "scope": "self", "note": _own_code_note(sub)}
            result.append(LayerTiming(path, op, own, detail))
    ran = set(order)
    for path, sub in paths.items():
        if path not in ran and not list(sub.children()):
            detail = {"scope": "leaf", "parent": _parent(path, paths), "note": "never called"}
            result.append(LayerTiming(path, type(sub).__name__, (), detail))
    return result


def _typed_op(path: str, op: str, sub: Any) -> list[str]:
    """``["path:Conv2d(float16)"]``: the op a leaf module ran, with its weights' precision.

    The precision is what `workbench.optimize.explain` needs to tell an FP16 model's slow
    CPU kernels apart; a module without floating-point weights (ReLU) lists nothing.
    """
    dtypes = {
        str(p.dtype).removeprefix("torch.")
        for p in sub.parameters(recurse=False)
        if p.is_floating_point()
    }
    return [f"{path}:{op}({', '.join(sorted(dtypes))})"] if dtypes else []


def _own_code_note(sub: Any) -> str:
    if type(sub).__name__ == "GraphModule":  # torch.export / fx: submodules are inlined
        return (
            "own code of a container; a traced graph (torch.export/fx) inlines its "
            "submodules, so their time is here: profile on onnxruntime for per-layer times"
        )
    return "own code of a container"


def _parent(path: str, paths: dict[str, Any]) -> str | None:
    if "." in path:
        return path.rsplit(".", 1)[0]
    root = next(iter(paths))
    return None if path == root else root


def torch_profiler_layer_timings(
    session: HookedSession, inputs: Inputs, repeats: int
) -> list[LayerTiming]:
    """Like `torch_layer_timings`, timed by ``torch.profiler`` with memory per module.

    Each module call becomes a ``record_function`` range; its duration is the range's
    CPU time, or on CUDA the device time of the kernels it launched (no per-module
    synchronisation needed). ``detail["allocated_bytes"]`` is the memory the module
    allocated (CPU, or device on CUDA), from ``profile_memory=True``.

    Raises:
        BackendError: as `torch_layer_timings`, or torch.profiler is unavailable.
    """
    import torch

    try:
        from torch.profiler import ProfilerActivity, profile, record_function
    except ImportError as exc:  # pragma: no cover - every supported torch has it
        raise BackendError(f"torch.profiler is unavailable: {exc}") from exc
    from workbench.backends.torch.trace import quiet_profiler

    cuda = session.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    tensors = session.stage(inputs)
    module = session.module
    ranges: list[Any] = []
    recorder = HookRecorder(sync=lambda: None)

    def pre(path: str) -> None:
        recorder.pre(path)
        ranges.append(record_function(f"wb::{path}").__enter__())

    def post(path: str) -> None:
        ranges.pop().__exit__(None, None, None)
        recorder.post(path)

    with torch.inference_mode():
        _forward(module, tensors, recorder)  # warm-up without hooks or profiler
        with (
            quiet_profiler(),
            module_hooks(module, pre, post),
            profile(activities=activities, profile_memory=True) as prof,
        ):
            for run in range(repeats):
                with record_function(f"wb::run#{run}"):
                    _forward(module, tensors, recorder)
                session.synchronize()
    totals, memory, calls = _profiler_totals(prof.events(), repeats, cuda)
    extra = {path: {"allocated_bytes": b} for path, b in memory.items()}
    order = [p for p in recorder.order if p in calls]
    return _timings(module, order, recorder.parent, totals, totals, calls, extra)


@contextmanager
def module_hooks(
    module: torch.nn.Module, pre: Callable[[str], None], post: Callable[[str], None]
) -> Iterator[None]:
    """``pre(path)`` and ``post(path)`` around every call of every submodule while inside.

    The hooks are always removed on exit, so the user's module stays clean.

    Raises:
        BackendError: the module refuses hooks (a TorchScript module).
    """
    handles = []
    try:
        for path, sub in module_paths(module).items():
            try:
                handles.append(sub.register_forward_pre_hook(lambda m, a, p=path: pre(p)))
                handles.append(sub.register_forward_hook(lambda m, a, o, p=path: post(p)))
            except RuntimeError as exc:  # ScriptModules refuse hooks
                raise BackendError(
                    f"cannot time the modules of {type(module).__name__} ({exc}); per-module "
                    "timing needs an eager nn.Module: profile this model on onnxruntime"
                ) from exc
        yield
    finally:
        for handle in handles:
            handle.remove()


def _profiler_totals(
    events: Any, repeats: int, cuda: bool
) -> tuple[list[dict[str, float]], dict[str, int], dict[str, int]]:
    runs = sorted(
        (e.time_range.start, e.time_range.end, int(e.name.split("#")[1]))
        for e in events
        if e.name.startswith("wb::run#")
    )
    totals: list[dict[str, float]] = [{} for _ in range(repeats)]
    memory: dict[str, int] = defaultdict(int)
    calls: dict[str, int] = defaultdict(int)
    for event in events:
        if not event.name.startswith("wb::") or event.name.startswith("wb::run#"):
            continue
        path = event.name[4:]
        run = next((r for s, e, r in runs if s <= event.time_range.start <= e), None)
        if run is None:
            continue
        us = event.device_time_total if cuda else event.time_range.elapsed_us()
        totals[run][path] = totals[run].get(path, 0.0) + us / 1e3
        if run == 0:
            calls[path] += 1
            used = event.device_memory_usage if cuda else event.cpu_memory_usage
            memory[path] += max(0, int(used))
    return totals, dict(memory), dict(calls)
