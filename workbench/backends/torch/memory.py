"""The memory a torch model itself uses in one inference, from torch's own accounting.

On the CPU, ``torch.profiler`` with ``profile_memory=True`` records every allocation and
free: their running sum over one forward pass gives the activation peak, and each leaf
module's ``record_function`` range gives what that module allocated and kept (its
outputs). On CUDA, the caching allocator's peak counters (reset before the run) give the
peak, weights and inputs included, and what it reserved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from workbench.backends.base import Inputs, MemoryReport, StagedSession

if TYPE_CHECKING:
    import torch

_RANGE = "wbmem::"


class MeasuredSession(StagedSession, Protocol):
    """What the memory measurement needs of a torch session (`TorchSession` is one).

    Attributes:
        module: the module that runs (its weights are counted).
        device: the device string (``"cuda:N"`` reads the allocator's counters).
    """

    module: torch.nn.Module
    device: str

    def stage(self, inputs: Inputs) -> list[torch.Tensor]:
        """The inputs as tensors on the device, in input order."""
        ...

    def call(self, *tensors: torch.Tensor) -> Any:
        """One bare forward pass (no inference mode, no error mapping)."""
        ...


def torch_memory(session: MeasuredSession, inputs: Inputs) -> MemoryReport:
    """Measure one forward pass of ``session`` (CPU: torch.profiler; CUDA: allocator peaks).

    Args:
        session: a torch backend session (its thread settings applied by the caller).
        inputs: model inputs (dict or sequence of arrays).

    Returns:
        A `MemoryReport`; unavailable (with the reason) when torch's profiler cannot
        record memory here. The module is never changed (hooks are removed).
    """
    tensors = session.stage(inputs)
    weights = _weights_bytes(session.module)
    input_bytes = sum(int(t.nbytes) for t in tensors)
    if session.device.startswith("cuda"):
        import torch

        return cuda_memory(
            torch.cuda, session.device, lambda: session.run_staged(tensors), weights, input_bytes
        )
    try:
        return _cpu_memory(session, tensors, weights, input_bytes)
    except (AttributeError, RuntimeError) as exc:  # a torch without memory events
        return MemoryReport.unavailable(f"torch.profiler recorded no memory events: {exc}")


def cuda_memory(
    cuda: Any, device: str, run: Callable[[], Any], weights_bytes: int, input_bytes: int
) -> MemoryReport:
    """The allocator's peak over ``run()`` on a CUDA device, above what it held before.

    Args:
        cuda: the ``torch.cuda`` module (a stand-in in tests).
        device: ``"cuda:N"``.
        run: one inference (weights and inputs already on the device).
        weights_bytes: the module's parameters and buffers on the device.
        input_bytes: the staged inputs.

    Returns:
        ``activation_peak_bytes`` = ``max_memory_allocated`` after the run minus
        ``memory_allocated`` before it; ``reserved_bytes`` = ``max_memory_reserved``.
    """
    cuda.synchronize(device)
    cuda.reset_peak_memory_stats(device)
    before = int(cuda.memory_allocated(device))
    run()
    cuda.synchronize(device)
    return MemoryReport(
        source="torch.cuda allocator peak (max_memory_allocated after reset_peak_memory_stats)",
        activation_peak_bytes=max(0, int(cuda.max_memory_allocated(device)) - before),
        weights_bytes=weights_bytes,
        input_bytes=input_bytes,
        reserved_bytes=int(cuda.max_memory_reserved(device)),
        notes=("per-layer allocations on CUDA: use layer_method='torch.profiler'",),
    )


def _cpu_memory(
    session: MeasuredSession, tensors: list[Any], weights: int, input_bytes: int
) -> MemoryReport:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from workbench.backends.torch.trace import quiet_profiler

    module = session.module
    session.run_staged(tensors)  # warm-up: lazy buffers (mkldnn, caches) are not the model's run
    memory = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with quiet_profiler(), _leaf_ranges(module), memory as p, torch.inference_mode():
        session.call(*tensors)
    records = sorted(
        (e.start_ns(), int(e.nbytes()))
        for e in p.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    if not records:
        return MemoryReport.unavailable(
            "torch.profiler recorded no memory events: the profiler saw no allocation"
        )
    by_layer = {
        e.name[len(_RANGE) :]: max(0, int(e.cpu_memory_usage))
        for e in p.events()
        if e.name.startswith(_RANGE)
    }
    return MemoryReport(
        source="torch.profiler memory events (CPU, profile_memory=True)",
        activation_peak_bytes=_running_peak(nbytes for _, nbytes in records),
        weights_bytes=weights,
        input_bytes=input_bytes,
        by_layer_bytes=by_layer,
        notes=("views (Flatten, reshape) and in-place ops allocate nothing of their own",),
    )


def _running_peak(deltas: Iterator[int] | list[int]) -> int:
    """The highest running sum of allocation (+) and free (-) sizes, from zero."""
    total = peak = 0
    for delta in deltas:
        total += delta
        peak = max(peak, total)
    return peak


@contextmanager
def _leaf_ranges(module: torch.nn.Module) -> Iterator[None]:
    """A ``record_function`` range around every leaf module's call; hooks removed on exit."""
    from torch.profiler import record_function

    from workbench.backends.torch.layers import module_paths

    handles = []
    open_ranges: list[Any] = []

    def enter(path: str) -> None:
        open_ranges.append(record_function(_RANGE + path).__enter__())

    try:
        for path, sub in module_paths(module).items():
            if next(sub.children(), None) is not None:
                continue
            try:
                handles.append(sub.register_forward_pre_hook(lambda m, a, p=path: enter(p)))
                handles.append(
                    sub.register_forward_hook(
                        lambda m, a, o: open_ranges.pop().__exit__(None, None, None)
                    )
                )
            except RuntimeError:  # ScriptModules refuse hooks: the peak stands without layers
                break
        yield
    finally:
        for handle in handles:
            handle.remove()


def _weights_bytes(module: torch.nn.Module) -> int:
    """Parameters and buffers, each storage counted once (tied weights share one)."""
    seen: dict[int, int] = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        seen[tensor.untyped_storage().data_ptr()] = int(tensor.untyped_storage().nbytes())
    return sum(seen.values())
