"""Model files uploaded to a served dashboard: size limit, type check, temporary folder only."""

from __future__ import annotations

import re
from pathlib import Path

from workbench.errors import ModelLoadError, WorkbenchError
from workbench.model import Model

#: largest upload accepted, in bytes
MAX_UPLOAD_BYTES = 200 * 2**20
#: file types a user may upload, and what each is
SUFFIXES = {".onnx": "ONNX", ".pt2": "torch.export", ".pt": "TorchScript", ".ts": "TorchScript"}


def load_upload(
    filename: str, data: bytes, folder: str | Path, *, limit: int = MAX_UPLOAD_BYTES
) -> Model:
    """Write an uploaded file into ``folder`` (only there) and load it as a `Model`.

    The client's file name is reduced to a safe base name, so no upload can write
    outside ``folder``; pickled modules are refused by the loader.

    Args:
        filename: the name the browser sent.
        data: the file's bytes.
        folder: a temporary folder owned by the session.
        limit: largest size accepted, in bytes.

    Returns:
        The loaded model.

    Raises:
        ModelLoadError: wrong type, too large, empty, corrupt, or unsafe (one line, no
            traceback), e.g. "model.txt: unsupported file type .txt; upload .onnx, …".
    """
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename.replace("\\", "/")).name) or "upload"
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        kinds = ", ".join(f"{s} ({k})" for s, k in SUFFIXES.items())
        raise ModelLoadError(f"{name}: unsupported file type {suffix or '(none)'}; upload {kinds}")
    if len(data) > limit:
        raise ModelLoadError(
            f"{name} is {len(data) / 2**20:.0f} MiB; the limit is {limit / 2**20:.0f} MiB"
        )
    if not data:
        raise ModelLoadError(f"{name} is empty")
    path = Path(folder) / name
    path.write_bytes(data)
    from workbench.loaders import load

    try:
        return load(path)
    except WorkbenchError as exc:
        # say which file in the user's words, without the server's temporary path
        text = str(exc).replace(str(path), name)
        raise ModelLoadError(text if name in text else f"{name}: {text}") from exc
    except Exception as exc:  # a corrupt file can fail deep inside a parser
        raise ModelLoadError(
            f"{name} is corrupt or not a valid {SUFFIXES[suffix]} model ({type(exc).__name__})"
        ) from exc
