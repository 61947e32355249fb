"""Eager PyTorch on the CPU and on CUDA GPUs.

The package owns everything torch-specific: the session (`session`), per-module timing
with forward hooks or ``torch.profiler`` (`layers`) and the parsing of ``torch.profiler``
Chrome traces (`trace`). ONNX models run as a torch module built from their graph (`from_onnx`, with
the op kernels in `onnx_ops`), their layers named as ONNX Runtime names them. torch itself
is imported only when a model is compiled or availability is asked for.

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
    from workbench.backends.torch.decoder import TorchDecoder
    from workbench.model import Model

__all__ = ["TorchBackend", "TorchOptions", "TorchSession"]


@register("torch")
class TorchBackend:
    """Eager PyTorch: ``cpu`` and every visible ``cuda:N``; runs torch modules and ONNX graphs.

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
        """A torch module, or an ONNX graph whose every op has a torch kernel (`from_onnx`)."""
        if model.module is not None:
            return Support(True)
        if model.proto is None:
            return Support(False, (f"{model.name!r} has neither a torch module nor a graph",))
        availability = self.availability()
        if not availability.ok:
            return Support(False, (availability.reason,))
        from workbench.backends.torch.from_onnx import unsupported_reason

        reason = unsupported_reason(model)
        return Support(False, (reason,)) if reason else Support(True)

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> TorchSession:
        """Place ``model`` on ``device``; never changes ``model`` (a GPU gets a copy).

        An ONNX model is converted to a torch module first (`from_onnx.onnx_module`).

        Raises:
            BackendOptionError: an unknown option or a badly typed value.
            UnsupportedModelError: an ONNX model with ops the torch kernels lack.
            DeviceUnavailableError: ``device`` is not usable here.
        """
        config = parse_options(TorchOptions, self.name, options)
        check_supported(self, model)
        check_device(self, device)
        return TorchSession(model, device, config)

    def decoder(
        self, model: Any, device: str = "cpu", *, threads: int | None = None
    ) -> TorchDecoder:
        """Greedy generation of a ``transformers`` causal LM in torch eager, its
        ``DynamicCache`` kept between steps (`decoder.TorchDecoder`; CPU; ``threads``, or
        the backend's default, applies inside the decoder's ``settings()``)."""
        from workbench.backends.base import generation_device
        from workbench.backends.torch.decoder import TorchDecoder, causal_lm

        generation_device(self, device)
        causal_lm(model)  # refuses what is not a causal LM, in one line
        return TorchDecoder(model, threads)
