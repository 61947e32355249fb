"""Silence ONNX Runtime's quantizer for the length of a call, thread by thread.

ORT's quantizer prints progress to stdout (entropy and percentile calibration) and logs
advice through the root logger (module-level ``logging.warning`` in
``onnxruntime.quantization``), advice that workbench already follows. Raising the root
logger's level or swapping ``sys.stdout`` from a dashboard worker thread would silence
everything else the process says meanwhile, and two overlapping calls would restore each
other's state in the wrong order. Instead, while at least one thread is inside
`quiet_quantizer`, a filter on the root logger drops the quantizer's own records below
ERROR that those threads log, and ``sys.stdout`` is a proxy that drops only those
threads' writes. The last thread out removes both; the root logger's level is never
touched.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO, cast


class _QuietStdout:
    """Stands in for ``sys.stdout``: drops writes from quieted threads, forwards the rest."""

    def __init__(self, target: TextIO, threads: Counter[int]) -> None:
        self.target, self._threads = target, threads

    def write(self, text: str) -> int:
        if threading.get_ident() in self._threads:
            return len(text)
        return self.target.write(text)

    def __getattr__(self, name: str) -> Any:  # flush, encoding, isatty ... of the real stream
        return getattr(self.target, name)


class _QuantizerFilter(logging.Filter):
    """Drops records below ERROR logged from ORT's quantizer files by quieted threads."""

    def __init__(self, threads: Counter[int]) -> None:
        super().__init__()
        import onnxruntime.quantization

        self.folder = str(Path(onnxruntime.quantization.__file__).parent)
        self._threads = threads

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno < logging.ERROR
            and record.thread in self._threads
            and record.pathname.startswith(self.folder)
        )


#: the root logger, and the quantizer modules that log through a logger of their own (a
#: logger's filter sees only the records logged on it, not those its children propagate)
_LOGGERS = ("", "onnxruntime.quantization.matmul_nbits_quantizer")


class _Silencer:
    """The shared state of `quiet_quantizer`: quieted threads (with nesting depth)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.threads: Counter[int] = Counter()
        self.stdout: _QuietStdout | None = None
        self.filter: _QuantizerFilter | None = None

    def enter(self, ident: int) -> None:
        with self.lock:
            if not self.threads:
                self.filter = _QuantizerFilter(self.threads)
                for name in _LOGGERS:
                    logging.getLogger(name).addFilter(self.filter)
                self.stdout = _QuietStdout(sys.stdout, self.threads)
                sys.stdout = cast(TextIO, self.stdout)
            self.threads[ident] += 1

    def leave(self, ident: int) -> None:
        with self.lock:
            self.threads[ident] -= 1
            if self.threads[ident] == 0:
                del self.threads[ident]
            if self.threads or self.filter is None or self.stdout is None:
                return
            for name in _LOGGERS:
                logging.getLogger(name).removeFilter(self.filter)
            # someone who replaced sys.stdout meanwhile keeps their stream
            if sys.stdout is cast(TextIO, self.stdout):
                sys.stdout = self.stdout.target
            self.filter = self.stdout = None


_SILENCER = _Silencer()


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Hide ORT's quantizer output from this thread while the block runs; thread-safe.

    Only this thread's prints and the quantizer's own log records below ERROR are
    dropped; other threads, other loggers and the root logger's level are untouched,
    and everything is restored when the last quieted thread leaves.

    Example:
        >>> with quiet_quantizer():
        ...     quantize_static(source, out, reader)
    """
    ident = threading.get_ident()
    _SILENCER.enter(ident)
    try:
        yield
    finally:
        _SILENCER.leave(ident)
