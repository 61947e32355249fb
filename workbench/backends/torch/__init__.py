"""Eager PyTorch on the CPU and on CUDA GPUs.

The package owns everything torch-specific: the session (`session`), per-module timing
with forward hooks or ``torch.profiler`` (`layers`) and the parsing of ``torch.profiler``
Chrome traces (`trace`). torch itself is imported only when a model is compiled or
availability is asked for.

Example:
    >>> import workbench as wb
    >>> m = wb.samples.load("digits-cnn")
    >>> session = wb.backend("torch").compile(m, "cpu", threads=2)
    >>> (logits,) = session.run(m.example_inputs(batch_size=8))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workbench.backends.base import (
    Availability,
    Support,
    check_device,
    check_supported,
    parse_options,
    register,
)
from workbench.backends.torch.session import TorchOptions, TorchSession

if TYPE_CHECKING:
    from workbench.model import Model

__all__ = ["TorchBackend", "TorchOptions", "TorchSession"]


@register("torch")
class TorchBackend:
    """Eager PyTorch: ``cpu`` and every visible ``cuda:N``.

    Options for `compile` are the fields of `TorchOptions`: ``threads`` (intra-op
    threads on the CPU, applied only while the session runs or is measured).
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
        """Place ``model`` on ``device``; never changes ``model`` (a GPU gets a copy).

        Raises:
            BackendOptionError: an unknown option or a badly typed value.
            UnsupportedModelError: ``model`` is not a torch module.
            DeviceUnavailableError: ``device`` is not usable here.
        """
        config = parse_options(TorchOptions, self.name, options)
        check_supported(self, model)
        check_device(self, device)
        return TorchSession(model, device, config)
