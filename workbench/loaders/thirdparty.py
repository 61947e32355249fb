"""Model libraries imported so that a torchvision built for another torch cannot break them.

PyPI's torchvision wheels are CUDA builds. Beside PyTorch's CPU build their compiled
operators (``nms``, ``roi_align``, ...) do not load, and ``import torchvision`` stops in
its fake-kernel registrations (``RuntimeError: operator torchvision::nms does not
exist``). transformers imports torchvision whenever it is installed, so with such a
torchvision ``from transformers import BertModel`` fails too, although BERT needs no
torchvision at all.

The model definitions need none of those operators. `torchvision` imports torchvision
normally and, only when that fails, again without its operator registrations;
`transformers` does that first and, if torchvision still does not import, hides it, so
that transformers runs as if it were not installed. workbench code imports both through
here. The build to install is the one matching torch from PyTorch's CPU index
(docs/backends.md, "torchvision and transformers").

Example:
    >>> from workbench.loaders.thirdparty import torchvision
    >>> net = torchvision().models.mobilenet_v3_small()
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

from workbench.errors import ModelLoadError

#: the torchvision module that registers fake kernels for its compiled operators
_REGISTRATIONS = "torchvision._meta_registrations"
_HINT = (
    "install the torchvision that matches torch from PyTorch's CPU index: "
    "pip install torchvision --index-url https://download.pytorch.org/whl/cpu"
)


def torchvision() -> types.ModuleType:
    """The ``torchvision`` module, imported even where its compiled operators cannot load.

    Raises:
        ModelLoadError: torchvision is not installed, or does not import at all.
    """
    if "torchvision" in sys.modules and sys.modules["torchvision"] is not None:
        return sys.modules["torchvision"]
    if importlib.util.find_spec("torchvision") is None:
        raise ModelLoadError(f"torchvision is not installed; {_HINT}")
    try:
        return importlib.import_module("torchvision")
    except Exception as first:  # a build for another torch fails in its own ways
        _forget("torchvision")
        sys.modules[_REGISTRATIONS] = types.ModuleType(_REGISTRATIONS)
        try:
            return importlib.import_module("torchvision")
        except Exception:
            _forget("torchvision")
            raise ModelLoadError(
                f"torchvision does not import beside this torch ({type(first).__name__}: "
                f"{first}); {_HINT}"
            ) from first


def transformers() -> types.ModuleType:
    """The ``transformers`` module, imported so that a broken torchvision cannot stop it.

    Raises:
        ModelLoadError: transformers is not installed.
    """
    if "transformers" not in sys.modules and importlib.util.find_spec("torchvision"):
        try:
            torchvision()
        except ModelLoadError:
            # transformers asks importlib.util.find_spec, which answers None for this entry
            sys.modules["torchvision"] = None  # type: ignore[assignment]
    try:
        return importlib.import_module("transformers")
    except ImportError as exc:
        raise ModelLoadError(
            'transformers is not installed; pip install transformers (or the "lab" extra)'
        ) from exc


def _forget(package: str) -> None:
    """Drop ``package`` and its submodules from ``sys.modules`` after a failed import."""
    for name in [n for n in sys.modules if n == package or n.startswith(f"{package}.")]:
        del sys.modules[name]
