"""Errors raised by workbench.

Every error names the problem and what to do about it, so that neither a user in a
notebook nor the CLI ever has to read a traceback from deep inside a library.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class WorkbenchError(Exception):
    """Base class of every error workbench raises on purpose."""


class ModelLoadError(WorkbenchError):
    """A model file or object could not be loaded (missing, corrupt, wrong format)."""


class UnsafeModelError(ModelLoadError):
    """A file would need unsafe unpickling, or points outside its folder."""


class InputError(WorkbenchError):
    """Inputs do not match the model's inputs (names, shapes or dtypes)."""


class ParameterError(InputError):
    """A numeric setting is of the wrong type or outside what can run (says the range)."""


class InvalidArgumentError(ParameterError, ValueError):
    """An argument is outside what it allows: a range, a set of choices, or another argument.

    Also a `ValueError`, which these arguments raised before, so ``except ValueError``
    in code written then still catches it.
    """


class NotFoundError(WorkbenchError, KeyError):
    """Something asked for by name is not there: a layer, a stored run or sweep.

    Also a `KeyError` (what a lookup raised before); printed as its message, without
    the quotes a `KeyError` adds.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StoreError(WorkbenchError):
    """A results store cannot be opened, or the file is not a workbench store."""


class UnknownBackendError(WorkbenchError):
    """No backend is registered under the requested name."""


class DeviceUnavailableError(WorkbenchError):
    """The requested device does not exist on this machine for this backend."""


class UnsupportedModelError(WorkbenchError):
    """The backend cannot run this model (for instance, unsupported ops)."""


class BackendError(WorkbenchError):
    """The backend failed while compiling or running a model."""


class BackendOptionError(BackendError):
    """A backend was given an option it does not know, or a value of the wrong kind."""


class TransformError(WorkbenchError):
    """A transform (quantization, pruning) could not be applied."""


class CancelledError(WorkbenchError):
    """Long work was cancelled through its cancellation token."""


def out_of_memory(where: str, model: str, inputs: Iterable[tuple[str, Any]]) -> BackendError:
    """The one-line error for running out of memory, saying how big the inputs were.

    Args:
        where: the device, e.g. ``"cpu"`` or ``"cuda:0"``.
        model: the model's name.
        inputs: ``(name, array or tensor)`` pairs (anything with ``shape`` and ``nbytes``).
    """
    pairs = list(inputs)
    total = sum(int(a.nbytes) for _, a in pairs)
    shapes = ", ".join(f"{n} {list(a.shape)}" for n, a in pairs)
    return BackendError(
        f"out of memory on {where} running {model!r} with inputs {shapes} "
        f"({total / 2**20:.1f} MiB); use a smaller batch size or free memory"
    )
