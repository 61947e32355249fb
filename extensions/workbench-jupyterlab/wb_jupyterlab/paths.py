"""Which files "Open in workbench" may open, and the grants that say a user trusts one.

Trust never comes from a URL: a page on another site can make a logged-in browser GET
any URL of the Jupyter server. The user's "Trust and open" sends a POST that Jupyter
checks for its XSRF token (which a cross-site request cannot send), and the server
answers with a grant: a random, single-use name for that one file, valid for a short
while. The dashboard's kernel takes trust only from a grant it consumes.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from workbench.errors import ModelLoadError, UnsafeModelError

#: environment variable through which the server tells the app's kernel its root folder
ROOT_ENV = "WORKBENCH_JUPYTER_ROOT"
#: environment variable naming the folder of trust grants (the server's, private)
GRANTS_ENV = "WORKBENCH_JUPYTER_GRANTS"
#: model files the dashboard opens (a .pt2 is inspected before torch reads it, unless trusted)
SUFFIXES = (".onnx", ".pt2")
#: how long a grant stays usable, in seconds (the tab opens at once)
GRANT_TTL_S = 120.0


def model_path(root: str | Path, relative: str) -> Path:
    """The model file ``relative`` names under ``root``, checked.

    Args:
        root: the Jupyter server's root folder.
        relative: the path the file browser gives, relative to ``root`` ("/" separated).

    Returns:
        The resolved absolute path of the file.

    Raises:
        UnsafeModelError: the path leaves ``root`` (symbolic links included).
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
    return path


def grants_folder(runtime_dir: str | Path) -> Path:
    """The private folder (mode 0700) where the server keeps grants, under ``runtime_dir``."""
    folder = Path(runtime_dir) / "workbench-trust-grants"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def grant_trust(folder: str | Path, path: Path, *, now: float | None = None) -> str:
    """Record that the user trusts the file at ``path``; return the grant's name.

    Only the server calls this, on a POST carrying Jupyter's XSRF token.
    """
    grant = secrets.token_urlsafe(32)
    record = {"path": str(path), "created": time.time() if now is None else now}
    target = Path(folder) / grant
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(record, file)
    return grant


def granted(
    folder: str | Path | None,
    grant: str,
    path: Path,
    *,
    consume: bool = False,
    now: float | None = None,
) -> bool:
    """Whether ``grant`` is a live grant of trust in exactly ``path``.

    Args:
        folder: the grants folder (None: there are no grants, so nothing is trusted).
        grant: the grant's name, as the URL carries it.
        path: the resolved file the grant must name.
        consume: use the grant up (the kernel that loads the file does); a used, expired
            or unknown grant, or one for another file, grants nothing.
        now: the time, in seconds since the epoch (tests).
    """
    if folder is None or not grant or not grant.replace("-", "").replace("_", "").isalnum():
        return False
    target = Path(folder) / grant
    try:
        record = json.loads(target.read_text())
        if consume:
            target.unlink()  # whoever unlinks it first used it; a second use finds nothing
    except (OSError, ValueError):
        return False
    age = (time.time() if now is None else now) - float(record.get("created", 0))
    return record.get("path") == str(path) and 0 <= age <= GRANT_TTL_S
