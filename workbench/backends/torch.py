"""Eager PyTorch on the CPU and on CUDA GPUs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.backends.base import (
    Availability,
    Inputs,
    LayerTiming,
    Support,
    check_device,
    check_supported,
    register,
)
from workbench.errors import BackendError, InputError

if TYPE_CHECKING:
    import torch

    from workbench.model import Model


@register("torch")
class TorchBackend:
    """Eager PyTorch: ``cpu`` and every visible ``cuda:N``.

    Options for `compile`: ``threads`` (intra-op threads on the CPU; set process-wide,
    as torch has no per-session setting).
    """

    name = "torch"

    def availability(self) -> Availability:
        try:
            import torch
        except ImportError:
            return Availability(False, "PyTorch is not installed: pip install torch")
        details = {"cpu": f"{torch.get_num_threads()} threads"}
        for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            props = torch.cuda.get_device_properties(i)
            details[f"cuda:{i}"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
        return Availability(True, version=torch.__version__, details=details)

    def devices(self) -> list[str]:
        availability = self.availability()
        return list(availability.details) if availability.ok else []

    def supports(self, model: Model) -> Support:
        if model.framework != "torch" or model.module is None:
            return Support(
                False,
                (
                    f"{model.name!r} is an ONNX model; the torch backend runs torch modules "
                    "(use onnxruntime or numba for ONNX)",
                ),
            )
        return Support(True)

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> TorchSession:
        check_supported(self, model)
        check_device(self, device)
        return TorchSession(model, device, threads=options.pop("threads", None), **options)


class TorchSession:
    """A torch module placed on one device, run under ``torch.inference_mode``."""

    backend = "torch"

    def __init__(self, model: Model, device: str, threads: int | None = None, **options: Any):
        import torch

        if options:
            raise BackendError(
                f"unknown torch backend option(s): {sorted(options)}; known: threads"
            )
        self.model = model
        self.device = device
        if threads:
            torch.set_num_threads(threads)
        assert model.module is not None
        # moving a module to a GPU changes it in place: move a copy, never the user's model
        self.module = model.module if device == "cpu" else copy.deepcopy(model.module).to(device)
        self._torch_device = torch.device(device)

    def _stage(self, inputs: Inputs) -> list[torch.Tensor]:
        import torch

        arrays = self.model.check_inputs(inputs)
        return [torch.from_numpy(a).to(self._torch_device) for a in arrays.values()]

    def _forward(self, tensors: list[torch.Tensor]) -> Any:
        import torch

        try:
            with torch.inference_mode():
                return self.module(*tensors)
        except torch.cuda.OutOfMemoryError as exc:
            raise BackendError(
                f"out of GPU memory on {self.device} running {self.model.name!r}: "
                "use a smaller batch size or free GPU memory"
            ) from exc
        except RuntimeError as exc:
            raise InputError(f"torch failed to run {self.model.name!r}: {exc}") from exc

    def synchronize(self) -> None:
        """Wait for the device to finish queued work (no-op on the CPU)."""
        import torch

        if self._torch_device.type == "cuda":
            torch.cuda.synchronize(self._torch_device)

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        outputs = self._forward(self._stage(inputs))
        flat = outputs if isinstance(outputs, list | tuple) else (outputs,)
        return [o.detach().cpu().numpy() for o in flat]

    def runner(self, inputs: Inputs) -> Callable[[], Any]:
        tensors = self._stage(inputs)

        def run_once() -> Any:
            out = self._forward(tensors)
            self.synchronize()
            return out

        return run_once

    def run_layers(self, inputs: Inputs, repeats: int = 10) -> list[LayerTiming]:
        from workbench.profiling.layers import torch_layer_timings

        return torch_layer_timings(self, inputs, repeats)

    def close(self) -> None:
        self.module = None  # type: ignore[assignment]
