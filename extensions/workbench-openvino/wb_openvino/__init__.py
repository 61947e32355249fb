"""OpenVINO as a workbench backend, registered through the ``workbench.backends`` entry point.

Devices are OpenVINO's (``Core.available_devices``) under workbench names: ``CPU`` is
``"cpu"``, ``GPU.0`` (or a lone ``GPU``) is ``"gpu:0"``, ``NPU`` is ``"npu"``. Models are
read by OpenVINO's ONNX frontend (a torch model through its ONNX export); INT8 models from
``wb.quantize`` (QDQ) run OpenVINO's own int8 kernels through its low-precision
transformations. openvino is imported only when availability is asked or a model compiled.

Example:
    >>> import workbench as wb
    >>> m = wb.samples.load("digits-cnn")
    >>> session = wb.backend("openvino").compile(m, "cpu", hint="latency", threads=2)
    >>> (logits,) = session.run(m.example_inputs(batch_size=8))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wb_openvino.options import OpenVinoOptions
from wb_openvino.session import OpenVinoSession, read_onnx
from workbench.backends.base import Availability, Support, check_device, parse_options
from workbench.errors import BackendError, BackendOptionError

if TYPE_CHECKING:
    import openvino

    from workbench.model import Model

__all__ = ["OpenVinoBackend", "OpenVinoOptions", "OpenVinoSession", "device_name"]

#: precision option -> the capability a device lists for it (``OPTIMIZATION_CAPABILITIES``)
_CAPABILITY = {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}


def device_name(ov_device: str) -> str:
    """The workbench name of an OpenVINO device: ``"GPU.1"`` -> ``"gpu:1"``, ``"CPU"`` -> ``"cpu"``.

    A lone ``GPU`` is ``gpu:0``, as OpenVINO aliases it to ``GPU.0``.
    """
    kind, _, index = ov_device.partition(".")
    if kind == "GPU":
        return f"gpu:{index or 0}"
    return kind.lower() + (f":{index}" if index else "")


class OpenVinoBackend:
    """OpenVINO with each device ``Core.available_devices`` lists.

    Options for `compile` are the fields of `OpenVinoOptions`: ``hint`` (``"latency"`` or
    ``"throughput"``), ``threads`` (CPU inference threads), ``precision`` (``"f32"``,
    ``"bf16"``, ``"f16"``; default f32) and ``profiling``.
    """

    name = "openvino"

    def __init__(self) -> None:
        self._core_: openvino.Core | None = None

    def _core(self) -> openvino.Core:
        if self._core_ is None:
            from wb_openvino.runtime import openvino as runtime

            self._core_ = runtime().Core()
        return self._core_

    def _ov_devices(self) -> dict[str, str]:
        """Workbench device name -> OpenVINO device name, for the devices present."""
        return {device_name(d): d for d in self._core().available_devices}

    def availability(self) -> Availability:
        from wb_openvino.runtime import openvino as runtime

        try:
            ov = runtime()
        except ImportError:
            return Availability(False, "openvino is not installed: pip install openvino")
        core = self._core()
        details = {
            name: f"{core.get_property(ov_name, 'FULL_DEVICE_NAME')} "
            f"({', '.join(core.get_property(ov_name, 'OPTIMIZATION_CAPABILITIES'))})"
            for name, ov_name in self._ov_devices().items()
        }
        if not details:
            return Availability(False, "OpenVINO found no device", version=ov.__version__)
        return Availability(True, version=ov.__version__, details=details)

    def devices(self) -> list[str]:
        availability = self.availability()
        return list(availability.details) if availability.ok else []

    def supports(self, model: Model) -> Support:
        """Whether OpenVINO's ONNX frontend converts ``model`` (reasons name the ops it cannot)."""
        availability = self.availability()
        if not availability.ok:
            return Support(False, (availability.reason,))
        try:
            read_onnx(self._core(), model)
        except BackendError as exc:
            return Support(False, (str(exc),))
        return Support(True)

    def option_sets(self, device: str) -> dict[str, dict[str, Any]]:
        """The option sets `wb.compare_backends` measures on ``device``, by label.

        OpenVINO's defaults, its throughput hint, and bf16 inference where the device
        has bf16 units (OpenVINO's own default precision there).
        """
        sets: dict[str, dict[str, Any]] = {"defaults": {}, "throughput": {"hint": "throughput"}}
        ov_device = self._ov_devices().get(device)
        if ov_device and "BF16" in self._core().get_property(
            ov_device, "OPTIMIZATION_CAPABILITIES"
        ):
            sets["bf16"] = {"precision": "bf16"}
        return sets

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> OpenVinoSession:
        """Read ``model`` with OpenVINO's ONNX frontend and compile it for ``device``.

        Never changes ``model``.

        Raises:
            BackendOptionError: an unknown option, a badly typed value, or a precision
                the device does not offer.
            DeviceUnavailableError: no such OpenVINO device here.
            BackendError: OpenVINO could not read or compile the model.
        """
        config = parse_options(OpenVinoOptions, self.name, options)
        check_device(self, device)
        ov_device = self._ov_devices()[device]
        offered = self._core().get_property(ov_device, "OPTIMIZATION_CAPABILITIES")
        if _CAPABILITY[config.precision] not in offered:
            raise BackendOptionError(
                f"openvino device {device} has no {config.precision} inference "
                f"(it offers {', '.join(offered)}); pick another precision"
            )
        if config.threads and ov_device != "CPU":
            raise BackendOptionError(f"openvino option threads applies to cpu only, not {device}")
        return OpenVinoSession(model, device, ov_device, config, self._core())
