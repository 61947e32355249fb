"""Command line: ``workbench devices | profile | sweep | scenario | slo | generate |
lm-sensitivity | report | serve | plan | import | serve-lm | lm-load`` (one module per
subcommand in this package).

Every `WorkbenchError`, bad argument, out-of-memory and runtime failure becomes a one-line
message on stderr and exit status 2 (never a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from workbench.argtypes import printable
from workbench.cli import (
    devices,
    generate,
    lm_load,
    lm_sensitivity,
    plan,
    profile,
    records,
    report,
    scenarios,
    serve,
    serve_lm,
    sweep,
)
from workbench.errors import WorkbenchError


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"workbench: error: {self.prog}: {message} (see {self.prog} --help)\n")


#: optional libraries a command may need, and the extra that installs each
_EXTRAS = {
    "panel": "dashboard",
    "bokeh": "dashboard",
    "plotly": "dashboard",
    "distributed": "cluster",
    "dask": "cluster",
    "transformers": "lab",
    "sklearn": "trees",
    "skl2onnx": "trees",
    "onnxmltools": "trees",
    "xgboost": "trees",
    "lightgbm": "trees",
}

#: every subcommand, in the order ``workbench --help`` lists them: a module each, with
#: ``add_command(subparsers)``; a module imports its feature (and its extra) only when run
COMMANDS = (
    devices, profile, sweep, scenarios, generate, lm_sensitivity, report, serve, plan, records,
    serve_lm, lm_load,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="workbench", description="Profile ML inference across backends and devices."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workbench`` command.

    Everything it prints passes through `printable`, so a name in a model file (a layer,
    an input, the model's own) cannot send escape sequences to the terminal.
    """
    with (
        contextlib.redirect_stdout(_Printable(sys.stdout)),
        contextlib.redirect_stderr(_Printable(sys.stderr)),
    ):
        return _run(argv)


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # a bad argument (one line printed) or --help
        return int(done.code or 0)
    try:
        return int(args.func(args))
    except WorkbenchError as exc:
        return _fail(str(exc))
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:  # not an optional library: a bug, keep its traceback
            raise
        return _fail(
            f"workbench {args.command} needs {exc.name}, which is not installed; "
            f"pip install 'inference-workbench[{extra}]'"
        )
    except MemoryError as exc:
        return _fail(f"out of memory ({exc or 'no detail'}); use a smaller --batch-size")
    except OSError as exc:  # a file named on the command line cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}")
    except Exception as exc:
        # a runtime's own error (e.g. onnxruntime's on a shape it cannot run) is the
        # user's to read in one line; anything else is a bug and keeps its traceback
        if not type(exc).__module__.startswith(("onnxruntime", "numba")):
            raise
        runtime = type(exc).__module__.split(".")[0]
        return _fail(f"{runtime} failed ({_first_line(exc)}); check --shape and --batch-size")
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    print(f"workbench: error: {_first_line(message)}", file=sys.stderr)
    return 2


def _first_line(text: object) -> str:
    return " ".join(printable(text).split())[:500]


class _Printable:
    """A text stream that escapes control characters before they reach the terminal.

    A carriage return is kept only at either end of a write: that is how a progress bar
    redraws its own line, while one inside a name could overwrite a printed line.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        body = text.strip("\r")
        if not body:
            return self._stream.write(text)
        start = text[: len(text) - len(text.lstrip("\r"))]
        end = text[len(text.rstrip("\r")) :]
        self._stream.write(start + printable(body) + end)
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, encoding, fileno ...
        return getattr(self._stream, name)
