"""Errors raised by workbench.

Every error names the problem and what to do about it, so that neither a user in a
notebook nor the CLI ever has to read a traceback from deep inside a library.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of every error workbench raises on purpose."""


class ModelLoadError(WorkbenchError):
    """A model file or object could not be loaded (missing, corrupt, wrong format)."""


class UnsafeModelError(ModelLoadError):
    """A file would need unsafe unpickling, or points outside its folder."""


class InputError(WorkbenchError):
    """Inputs do not match the model's inputs (names, shapes or dtypes)."""


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
