"""ORT's quantizer is silenced per thread: the root logger's level, other threads' output
and sys.stdout are left as they were, however calls overlap."""

from __future__ import annotations

import io
import logging
import sys
import threading
from pathlib import Path

import onnxruntime.quantization
import pytest
import torch

import workbench as wb
from workbench.optimize.silence_ort import quiet_quantizer
from workbench.testing import toy_mlp

ORT_FILE = str(Path(onnxruntime.quantization.__file__).parent / "onnx_quantizer.py")


def _ort_warning(message: str) -> None:
    """Log a warning on the root logger as ORT's quantizer does (from its own file)."""
    root = logging.getLogger()
    record = root.makeRecord("root", logging.WARNING, ORT_FILE, 1, message, (), None)
    root.handle(record)


def test_quantizing_leaves_the_root_logger_and_stdout_as_they_were(caplog) -> None:
    caplog.set_level(logging.INFO)
    root, stdout = logging.getLogger(), sys.stdout
    filters, handlers = list(root.filters), list(root.handlers)
    batches = [(torch.rand(16, 8), torch.zeros(16)) for _ in range(2)]
    wb.quantize(toy_mlp(), "int8-static", batches, method="entropy")  # entropy prints
    assert root.level == logging.INFO
    assert root.filters == filters and root.handlers == handlers and sys.stdout is stdout


def test_only_the_quieted_threads_are_silenced_and_overlaps_restore(
    caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    levels_inside: list[int] = []

    def first() -> None:
        with quiet_quantizer():
            first_in.set()
            second_in.wait(5)
            print("hidden 1")
            _ort_warning("advice 1")
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with quiet_quantizer():
            second_in.set()
            first_out.wait(5)  # the first thread leaves while this one is still inside
            print("hidden 2")
            _ort_warning("advice 2")
            levels_inside.append(logging.getLogger().level)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    second_in.wait(5)
    print("shown")  # this thread is not quieted
    _ort_warning("kept advice")
    for thread in threads:
        thread.join(5)
    assert sys.stdout is stream and stream.getvalue() == "shown\n"
    assert [r.getMessage() for r in caplog.records] == ["kept advice"]
    assert levels_inside == [logging.INFO]
    assert logging.getLogger().level == logging.INFO and not logging.getLogger().filters


def test_errors_still_get_through() -> None:
    root = logging.getLogger()
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    root.addHandler(handler)
    try:
        with quiet_quantizer():
            record = root.makeRecord("root", logging.ERROR, ORT_FILE, 1, "broken", (), None)
            root.handle(record)
    finally:
        root.removeHandler(handler)
    assert seen == ["broken"]
