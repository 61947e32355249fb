"""Which files "Open in workbench" may open: model files under the Jupyter root only."""

from __future__ import annotations

from pathlib import Path

from workbench.errors import ModelLoadError, UnsafeModelError

#: environment variable through which the server tells the app's kernel its root folder
ROOT_ENV = "WORKBENCH_JUPYTER_ROOT"
#: suffixes the dashboard opens, and whether opening one needs the user's trust
SUFFIXES = {".onnx": False, ".pt2": True}


def model_path(root: str | Path, relative: str, trust: bool = False) -> Path:
    """The model file ``relative`` names under ``root``, checked.

    Args:
        root: the Jupyter server's root folder.
        relative: the path the file browser gives, relative to ``root`` ("/" separated).
        trust: the user confirmed they trust the file (needed for ``.pt2``).

    Returns:
        The resolved absolute path of the file.

    Raises:
        UnsafeModelError: the path leaves ``root`` (symbolic links included), or names a
            ``.pt2`` file without ``trust``.
        ModelLoadError: not a file, or not an ``.onnx`` / ``.pt2`` file.
    """
    base = Path(root).expanduser().resolve()
    path = (base / relative.lstrip("/")).resolve()
    if not path.is_relative_to(base):
        raise UnsafeModelError(f"{relative!r} is outside the Jupyter root; open files under it")
    if path.suffix not in SUFFIXES:
        raise ModelLoadError(f"{relative!r} is not an .onnx or .pt2 file; export the model first")
    if not path.is_file():
        raise ModelLoadError(f"{relative!r} is not a file under the Jupyter root")
    if SUFFIXES[path.suffix] and not trust:
        raise UnsafeModelError(f"{relative!r} may run code when loaded; open it as trusted")
    return path
