"""Command line: ``workbench devices | profile | sweep | serve``.

Every `WorkbenchError`, bad argument, out-of-memory and runtime failure becomes a one-line
message on stderr and exit status 2 (never a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

from workbench.argtypes import (
    add_model_options,
    batch_int,
    check_input_bytes,
    duration_s,
    input_shape,
    positive_int,
    printable,
    threads_int,
)
from workbench.errors import InputError, WorkbenchError

Command = Callable[[argparse.Namespace], int]


def _devices(args: argparse.Namespace) -> int:
    from workbench.cluster import devices
    from workbench.machine import describe_machine
    from workbench.profiling.display import frame_text

    if args.cluster is None:
        print(describe_machine())
        print()
    print(frame_text(devices(args.cluster)))
    return 0


def _profile(args: argparse.Namespace) -> int:
    from workbench.loaders import load
    from workbench.loaders.trust import max_bytes_of
    from workbench.profiling.run import profile

    options = {"threads": args.threads} if args.threads else None
    model = load(args.model, trust=args.trust, max_bytes=max_bytes_of(args.max_size))
    result = profile(
        model,
        inputs=inputs_for(model, args.batch_size, args.shape),
        backend=args.backend,
        device=args.device,
        batch_size=args.batch_size,
        layers=not args.no_layers,
        budget_s=args.budget,
        options=options,
        layer_view=args.layer_view,
        layer_method=args.layer_method,
    )
    print(result.summary(top=args.top))
    if args.json:
        result.to_json(args.json)
        print(f"\nwrote {args.json}")
    return 0


def inputs_for(
    model: Any, batch_size: int, shapes: list[tuple[str, tuple[int, ...]]]
) -> dict[str, Any] | None:
    """Inputs with the ``--shape`` values given, or None when generated ones will do.

    Raises:
        InputError: an unknown input name, a shape of the wrong rank, or an input with
            symbolic dimensions beyond the batch and no ``--shape`` (names what to give).
    """
    from dataclasses import replace
    from types import SimpleNamespace

    import numpy as np

    given = dict(shapes)
    specs = {spec.name: spec for spec in model.inputs}
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise InputError(f"--shape names unknown input(s) {unknown}; inputs are {list(specs)}")
    missing = [
        f"{spec.name} {list(spec.shape)}"
        for spec in model.unsized_inputs()
        if spec.name not in given
    ]
    if missing:
        raise InputError(
            f"{model.name} has symbolic dimensions beyond the batch in {', '.join(missing)}; "
            "give each such input with --shape NAME=DIMxDIMx…"
        )
    if not given:
        return None
    for name, shape in given.items():
        if len(shape) != len(specs[name].shape):
            raise InputError(
                f"--shape {name} has {len(shape)} dimensions; {name} has "
                f"{len(specs[name].shape)} {list(specs[name].shape)}"
            )
    # every input counts, with the shape it will have, before anything is allocated
    check_input_bytes(model, batch_size)
    sized = [replace(spec, shape=given.get(spec.name, spec.shape)) for spec in model.inputs]
    check_input_bytes(SimpleNamespace(name=model.name, inputs=sized), batch_size)
    arrays = {n: a for n, a in model.example_inputs(batch_size).items() if n not in given}
    rng = np.random.default_rng(0)
    for name, shape in given.items():
        arrays[name] = rng.random(shape).astype(specs[name].dtype)
    return {spec.name: arrays[spec.name] for spec in model.inputs}


def _add_profile(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="profile a model file or sample on one backend/device")
    p.add_argument("model", help="a model file (.onnx, .pt2, TorchScript) or a sample name")
    p.add_argument("--backend", default="onnxruntime", help="backend name (default onnxruntime)")
    p.add_argument("--device", default="cpu", help="device, e.g. cpu or cuda:0 (default cpu)")
    p.add_argument("--batch-size", type=batch_int, default=1, help="batch size (default 1)")
    p.add_argument("--threads", type=threads_int, default=None, help="intra-op threads")
    p.add_argument("--budget", type=duration_s, default=2.0, help="timing budget in seconds")
    p.add_argument("--top", type=positive_int, default=10, help="layers to print (default 10)")
    p.add_argument(
        "--shape",
        type=input_shape,
        action="append",
        default=[],
        metavar="NAME=DIMxDIM…",
        help="an input's full shape (repeatable); needed for dimensions beyond the batch "
        "that the model leaves symbolic",
    )
    add_model_options(p)
    p.add_argument("--no-layers", action="store_true", help="end-to-end timing only")
    p.add_argument(
        "--layer-view",
        default="leaves",
        choices=["leaves", "containers"],
        help="torch models: leaf modules (default) or every module, inclusive",
    )
    p.add_argument(
        "--layer-method",
        default=None,
        help="per-layer timing method, e.g. torch.profiler (default: the backend's own)",
    )
    p.add_argument("--json", default=None, help="write the Profile as JSON to this path")
    p.set_defaults(func=_profile)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"workbench: error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="workbench", description="Profile ML inference across backends and devices."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    devices = sub.add_parser("devices", help="list backends x devices on this machine")
    devices.add_argument(
        "--cluster",
        default=None,
        metavar="ADDRESS",
        help="list every worker of this Dask scheduler instead, e.g. tcp://scheduler:8786",
    )
    devices.set_defaults(func=_devices)
    _add_profile(sub)
    for add in _EXTRA_COMMANDS:
        add(sub)
    return parser


def _extra_commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Subcommands that live next to the feature they drive (sweep, serve)."""
    adders = []
    for module_name in (
        "workbench.evaluation.sweep_cli",
        "workbench.dashboards.serve",
        "workbench.cli_scenarios",
        "workbench.cli_generate",
        "workbench.dashboards.report_cli",
        "workbench.cli_plan",
    ):
        try:
            module = __import__(module_name, fromlist=["add_command"])
        except ImportError as exc:
            if exc.name != module_name:  # a real bug inside the module, not its absence
                raise
            continue
        adders.append(module.add_command)
    return adders


_EXTRA_COMMANDS = _extra_commands()


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


if __name__ == "__main__":
    sys.exit(main())
