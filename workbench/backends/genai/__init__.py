"""``genai``: token-by-token generation in onnxruntime-genai (an optional extra).

onnxruntime-genai runs a decoder exported by its own model builder (an onnxruntime-genai
model folder: `workbench.loaders.genai`) with its own generation loop: the KV cache is a
buffer of the full length allocated once (``past_present_share_buffer``) and written in
place by GroupQueryAttention, so no step copies or grows the cache. This backend has no
forward sessions (``compile`` refuses, saying so); it generates through the `Decoder`
protocol (`GenaiDecoder`), so ``wb.generate_profile(m, backend="genai")``, the CLI's
``workbench generate --backend genai`` and ``workbench devices`` (its ``generates``
column) reach it like every runtime.

Unavailable, with the reason, without ``pip install 'inference-workbench[genai]'``.

Example:
    >>> m = wb.genai_build("my-llama", "my-llama-genai")
    >>> d = wb.backend("genai").decoder(m)
    >>> token = d.prefill(prompt_ids)
"""

from __future__ import annotations

from typing import Any

from workbench.backends.base import Availability, Support, register
from workbench.errors import UnsupportedModelError
from workbench.model import Model

__all__ = ["GenaiBackend"]

#: why a forward model is not this backend's
FORWARD_REFUSAL = (
    "onnxruntime-genai generates from its own model folders and runs no forward models: "
    "time generation with wb.generate_profile(wb.load_genai(folder), backend='genai')"
)


@register("genai")
class GenaiBackend:
    """onnxruntime-genai's generation loop on its model folders (CPU)."""

    name = "genai"

    def availability(self) -> Availability:
        """Available when onnxruntime-genai imports."""
        from workbench.loaders.genai import genai_unavailable

        why = genai_unavailable()
        if why is not None:
            return Availability(False, why)
        import onnxruntime_genai

        version = f"onnxruntime-genai {onnxruntime_genai.__version__}"
        return Availability(True, version=version, details={"cpu": "generation only"})

    def devices(self) -> list[str]:
        """``["cpu"]`` when available, else none."""
        return ["cpu"] if self.availability().ok else []

    def supports(self, model: Model) -> Support:
        """Never a forward model: this backend only generates (`decoder`)."""
        return Support(False, (FORWARD_REFUSAL,))

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> Any:
        """Refused: onnxruntime-genai runs no forward models.

        Raises:
            UnsupportedModelError: always, saying how to use this backend.
        """
        raise UnsupportedModelError(FORWARD_REFUSAL)

    def decoder(self, model: Any, device: str = "cpu", *, threads: int | None = None) -> Any:
        """A `GenaiDecoder` of ``model``: an onnxruntime-genai folder (`GenaiModel`), or a
        ``transformers`` causal LM, built first with the model builder (fp32) into a
        temporary folder the decoder removes when closed; never changes ``model``.

        Raises:
            DeviceUnavailableError: not the CPU, or onnxruntime-genai is not installed.
            UnsupportedModelError: ``model`` is neither (`genai_build`'s refusals).
            BackendError: the builder failed.
        """
        from workbench.backends.base import check_device, generation_device
        from workbench.backends.genai.decoder import genai_decoder

        generation_device(self, device)
        check_device(self, device)
        return genai_decoder(model, threads)
