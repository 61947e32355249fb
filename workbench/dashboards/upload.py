"""Model files uploaded to a served dashboard: bounded while they arrive, loaded once, untrusted.

The browser sends a file in chunks. `UploadBuffer` counts the bytes of each chunk as it
arrives and drops the upload as soon as it passes the limit, so no upload is ever held in
memory beyond it; uploads that stop arriving expire; a finished upload is handed on once.
Only formats that load without running code are accepted (ONNX and checked ``.pt2``).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import ModelLoadError, WorkbenchError
from workbench.model import Model

#: largest upload accepted, in bytes
MAX_UPLOAD_BYTES = 200 * 2**20
#: bytes per chunk the browser sends (the server also caps a websocket message)
CHUNK_BYTES = 2 * 2**20
#: an upload with no new chunk for this long is dropped, in seconds
UPLOAD_TIMEOUT_S = 120.0
#: uploads a session may have in flight at once
MAX_PENDING = 2
#: longest file name kept from the browser (file systems refuse names past 255 bytes)
MAX_NAME_CHARS = 100
#: file types a user may upload, and what each is
SUFFIXES = {".onnx": "ONNX", ".pt2": "torch.export"}
#: file types refused because loading them runs code (they need ``trust=True`` locally)
CODE_SUFFIXES = {".pt": "TorchScript or pickle", ".pth": "pickle", ".ts": "TorchScript"}


def safe_name(filename: str) -> str:
    """The client's file name reduced to a safe base name: no folders, no odd characters,
    at most `MAX_NAME_CHARS` characters (a long stem is cut, the suffix is kept)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename.replace("\\", "/")).name) or "upload"
    if len(name) <= MAX_NAME_CHARS:
        return name
    suffix = Path(name).suffix[:16]
    return name[: MAX_NAME_CHARS - len(suffix)] + suffix


def check_name(filename: str) -> str:
    """The safe name of an upload whose type is accepted.

    Raises:
        ModelLoadError: the type is unknown, or needs trust (TorchScript, pickles).
    """
    name = safe_name(filename)
    suffix = Path(name).suffix.lower()
    if suffix in CODE_SUFFIXES:
        raise ModelLoadError(
            f"{name}: {CODE_SUFFIXES[suffix]} files run code when loaded, so the dashboard "
            "does not accept them; upload an ONNX or torch.export (.pt2) file instead"
        )
    if suffix not in SUFFIXES:
        kinds = ", ".join(f"{s} ({k})" for s, k in SUFFIXES.items())
        raise ModelLoadError(f"{name}: unsupported file type {suffix or '(none)'}; upload {kinds}")
    return name


def too_large(name: str, size: int, limit: int) -> ModelLoadError:
    """The one-line refusal of an upload past the limit."""
    return ModelLoadError(f"{name} is over the {limit / 2**20:.0f} MiB upload limit ({size} bytes)")


def load_upload(
    filename: str, data: bytes, folder: str | Path, *, limit: int = MAX_UPLOAD_BYTES
) -> Model:
    """Write an uploaded file into ``folder`` (only there) and load it, untrusted, as a `Model`.

    The client's file name is reduced to a safe base name, so no upload can write
    outside ``folder``; formats that need trust are refused before anything is written.

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
    name = check_name(filename)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ModelLoadError(f"{name} is corrupt or not a valid {_kind(name)} model (no bytes)")
    if len(data) > limit:
        raise too_large(name, len(data), limit)
    if not data:
        raise ModelLoadError(f"{name} is empty")
    path = Path(folder) / name
    try:
        path.write_bytes(data)
    except OSError as exc:  # the message names the server's folder: say only what failed
        raise ModelLoadError(f"{name} could not be stored for loading ({exc.strerror})") from exc
    from workbench.loaders import load

    try:
        return load(path, trust=False, max_bytes=limit)
    except WorkbenchError as exc:
        # say which file in the user's words, without the server's temporary path
        text = str(exc).replace(str(path), name)
        raise ModelLoadError(text if name in text else f"{name}: {text}") from exc
    except Exception as exc:  # a corrupt file can fail deep inside a parser
        raise ModelLoadError(
            f"{name} is corrupt or not a valid {_kind(name)} model ({type(exc).__name__})"
        ) from exc


def _kind(name: str) -> str:
    return SUFFIXES.get(Path(name).suffix.lower(), "model")


@dataclass
class _Pending:
    chunks: list[bytes]
    size: int
    next_chunk: int
    last_s: float


@dataclass
class UploadBuffer:
    """Assembles chunked uploads with the size counted per chunk (no UI library needed).

    Args:
        limit: largest upload, in bytes.
        timeout_s: an unfinished upload with no chunk for this long is dropped.
        clock: seconds, monotonic (injectable for tests).
    """

    limit: int = MAX_UPLOAD_BYTES
    timeout_s: float = UPLOAD_TIMEOUT_S
    clock: Callable[[], float] = time.monotonic
    _pending: dict[str, _Pending] = field(default_factory=dict)

    def add(self, filename: str, chunk: int, total: int, data: Any) -> tuple[str, bytes] | None:
        """Take one chunk (numbered from 1); return ``(name, bytes)`` once the file is complete.

        Raises:
            ModelLoadError: wrong type, past the limit, out of order, not bytes, or too many
                uploads at once; the upload is dropped (later chunks of it are ignored).
        """
        self.expire()
        if chunk == 1:
            self._pending.pop(filename, None)
            name = check_name(filename)
            if len(self._pending) >= MAX_PENDING:
                raise ModelLoadError(f"{name}: wait for the other uploads to finish first")
            self._pending[filename] = _Pending([], 0, 1, self.clock())
        entry = self._pending.get(filename)
        if entry is None:
            return None  # the rest of an upload already refused or expired
        name = safe_name(filename)
        if not isinstance(data, bytes | bytearray | memoryview) or chunk != entry.next_chunk:
            del self._pending[filename]
            raise ModelLoadError(f"{name} is corrupt or not a valid {_kind(name)} model")
        entry.size += len(data)
        if entry.size > self.limit:
            del self._pending[filename]
            raise too_large(name, entry.size, self.limit)
        entry.chunks.append(bytes(data))
        entry.next_chunk += 1
        entry.last_s = self.clock()
        if chunk < total:
            return None
        del self._pending[filename]
        return filename, b"".join(entry.chunks)

    def expire(self) -> list[str]:
        """Drop unfinished uploads idle for longer than the timeout; return their names."""
        now = self.clock()
        stale = [n for n, e in self._pending.items() if now - e.last_s > self.timeout_s]
        for name in stale:
            del self._pending[name]
        return stale

    def clear(self) -> None:
        """Drop every unfinished upload (the session is closing)."""
        self._pending.clear()

    @property
    def pending_bytes(self) -> int:
        """Bytes held for unfinished uploads."""
        return sum(e.size for e in self._pending.values())


def bounded_dropper(
    on_file: Callable[[str, bytes], None],
    on_error: Callable[[str], None],
    *,
    limit: int = MAX_UPLOAD_BYTES,
    **params: Any,
) -> Any:
    """A Panel ``FileDropper`` that counts chunks through an `UploadBuffer`.

    Each finished file goes to ``on_file(name, data)`` once and is not kept in the widget's
    ``value`` (so one upload never makes earlier ones load again); each refusal goes to
    ``on_error(message)``.
    """
    dropper = _dropper_class()(
        max_file_size=f"{limit // 2**20}MB", chunk_size=CHUNK_BYTES, multiple=False, **params
    )
    dropper.buffer = UploadBuffer(limit=limit)
    dropper.on_file, dropper.on_error = on_file, on_error
    return dropper


@functools.cache
def _dropper_class() -> Any:
    """The bounded drop zone's class, made once: Panel caches per class (its design's
    modifiers), so a class made per session would keep every session alive."""
    import panel as pn

    class BoundedFileDropper(pn.widgets.FileDropper):
        buffer: UploadBuffer
        on_file: Callable[[str, bytes], None]
        on_error: Callable[[str], None]

        def _process_event(self, event: Any) -> None:
            data = event.data if isinstance(event.data, dict) else {}
            if event.event_name != "upload_event":
                return  # a removed file: nothing is kept, so nothing to forget
            try:
                chunk, total = int(data.get("chunk", 0)), int(data.get("total_chunks", 0))
            except (TypeError, ValueError):
                self.on_error("bad upload message")
                return
            self.receive(str(data.get("name", "")), chunk, total, data.get("data"))

        def receive(self, name: str, chunk: int, total: int, data: Any) -> None:
            """Take one chunk as the browser sends it (numbered from 1 of ``total``)."""
            try:
                done = self.buffer.add(name, chunk, total, data)
            except ModelLoadError as exc:
                self.on_error(str(exc))
                return
            if done is not None:
                self.on_file(*done)

    return BoundedFileDropper
