"""``openvino``, imported without the telemetry its model-conversion tools send on import.

``import openvino`` also imports ``openvino.tools.ovc`` (``convert_model``), whose import
sends a usage event to Google Analytics unless the user opted out beforehand, from a
process forked by a worker thread (beside Numba's TBB threads that fork prints "Numba:
Attempted to fork from a non-main thread"). The backend only reads ONNX and runs it, so it
imports the runtime with the tools held back; ``openvino.convert_model`` stays reachable,
imported (with its telemetry, OpenVINO's own behaviour) only when someone asks for it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

#: the tools package whose import sends telemetry
TOOLS = "openvino.tools.ovc"


def openvino() -> types.ModuleType:
    """The ``openvino`` module; its conversion tools load on first use of their names.

    Raises:
        ImportError: openvino is not installed.
    """
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    held_back = TOOLS not in sys.modules
    if held_back:
        sys.modules[TOOLS] = None  # type: ignore[assignment]  # makes its import fail
    try:
        module = importlib.import_module("openvino")
    finally:
        if held_back:
            del sys.modules[TOOLS]
    if held_back and "convert_model" not in vars(module):
        vars(module)["__getattr__"] = _tools_on_demand  # PEP 562: names not found
    return module


def _tools_on_demand(name: str) -> Any:
    """``openvino.convert_model`` (and the tools' other names), imported when first asked."""
    if name.startswith("__"):
        raise AttributeError(name)  # not a user error: Python's module attribute protocol
    tools = importlib.import_module(TOOLS)
    try:
        return getattr(tools, name)
    except AttributeError:
        raise AttributeError(f"module 'openvino' has no attribute {name!r}") from None
