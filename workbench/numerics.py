"""The reference runtime for numeric checks made below the backends, wired from the top.

A converted tree ensemble is checked at load time against its library's own predict,
with the converted graph run by ONNX Runtime. The loaders (layer 2) cannot import the
ONNX Runtime package (`workbench.backends.onnxruntime`, layer 3), so the package root
registers it here by its dotted name, as it registers the figures of the result
classes: nothing here imports a layer above, and ``import workbench`` imports no runtime.

Example:
    >>> from workbench.numerics import reference_outputs
    >>> reference_outputs(model.onnx_bytes, {"input": rows})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from workbench.errors import BackendError

__all__ = ["reference_outputs", "register_reference"]

#: ``"module:function"`` of the runner: ``function(graph, feeds) -> list of arrays``
_reference: list[str] = []


def register_reference(dotted: str) -> None:
    """Make ``dotted`` (``"package.module:function"``) the runner of reference outputs."""
    _reference[:] = [dotted]


def reference_outputs(graph: bytes, feeds: Mapping[str, Any]) -> list[Any]:
    """The outputs of the ONNX ``graph`` on ``feeds``, from the registered reference runtime.

    Raises:
        BackendError: nothing registered; importing ``workbench`` registers ONNX Runtime,
            so only code that bypassed the package root meets this.
    """
    if not _reference:
        raise BackendError("no reference runtime is registered; import workbench first")
    module, _, name = _reference[0].partition(":")
    runner: Callable[..., list[Any]] = getattr(importlib.import_module(module), name)
    return runner(graph, feeds)
