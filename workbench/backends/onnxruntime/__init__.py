"""ONNX Runtime, one device per available execution provider.

The package owns everything ORT-specific: the session (`session`), the one builder of
``SessionOptions`` and the typed compile options (`options`), per-layer timing with ORT's
node profiler (`layers`) and the parsing of ORT profiling traces, mapped back through
ORT's fusions to canonical layers (`trace`). onnxruntime itself is imported only when a
model is compiled or availability is asked for.

Example:
    >>> import workbench as wb
    >>> m = wb.samples.load("digits-cnn")
    >>> session = wb.backend("onnxruntime").compile(m, "cpu", threads=1)
    >>> (logits,) = session.run(m.example_inputs(batch_size=8))
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from workbench.backends.base import (
    Availability,
    Support,
    check_device,
    once,
    parse_options,
    register,
)
from workbench.backends.onnxruntime.options import OrtOptions
from workbench.backends.onnxruntime.session import (
    PROVIDER_DEVICES,
    OnnxRuntimeSession,
    provider_for,
)

if TYPE_CHECKING:
    from workbench.backends.onnxruntime.decoder import OrtDecoder
    from workbench.model import Model

__all__ = [
    "PROVIDER_DEVICES",
    "OnnxRuntimeBackend",
    "OnnxRuntimeSession",
    "OrtOptions",
    "provider_for",
]


def _import_onnxruntime() -> None:
    # not installed: `compile` says so in its own words
    with contextlib.suppress(ImportError):
        import onnxruntime  # noqa: F401


_start = once(_import_onnxruntime)


@register("onnxruntime")
class OnnxRuntimeBackend:
    """ONNX Runtime with each available execution provider as a device.

    Options for `compile` are the fields of `OrtOptions`: ``threads`` (intra-op
    threads), ``optimization`` (``"disabled" | "basic" | "extended" | "all"``, default
    ``"all"``), ``provider`` (another execution provider of this build for the device),
    ``profiling`` (enable ORT's node profiler), ``spinning`` (False: idle intra-op threads
    sleep instead of spin-waiting).
    """

    name = "onnxruntime"

    def availability(self) -> Availability:
        try:
            import onnxruntime as ort
        except ImportError:
            return Availability(False, "onnxruntime is not installed: pip install onnxruntime")
        providers = ort.get_available_providers()
        details = {PROVIDER_DEVICES[p]: p for p in providers if p in PROVIDER_DEVICES}
        return Availability(True, version=ort.__version__, details=details)

    def devices(self) -> list[str]:
        availability = self.availability()
        return list(availability.details) if availability.ok else []

    def supports(self, model: Model) -> Support:
        return Support(True)

    def start(self) -> float:
        """Import onnxruntime, once per process (see `Backend`); seconds, 0.0 after."""
        return _start()

    def half_precision_fallback(self) -> str:
        """How ORT runs a half-precision op without a half kernel for it on this CPU."""
        return "inserts Cast nodes to float32 and back around ops without a half kernel"

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> OnnxRuntimeSession:
        """Load ``model`` into an ORT session on ``device``; never changes ``model``.

        Raises:
            BackendOptionError: an unknown option or a badly typed value.
            DeviceUnavailableError: no execution provider for ``device`` here.
            BackendError: ORT could not load the model.
        """
        config = parse_options(OrtOptions, self.name, options)
        check_device(self, device)
        return OnnxRuntimeSession(model, device, config)

    def decoder(self, model: Any, device: str = "cpu", *, threads: int | None = None) -> OrtDecoder:
        """Greedy generation of a ``transformers`` causal LM exported with its KV cache,
        the cache kept bound inside ORT between steps (`decoder.exported_decoder`; CPU)."""
        from workbench.backends.base import generation_device
        from workbench.backends.onnxruntime.decoder import exported_decoder

        generation_device(self, device)
        return exported_decoder(model, threads)
