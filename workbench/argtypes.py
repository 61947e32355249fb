"""Argument types and model options shared by the ``workbench`` subcommands (stdlib only).

Each type refuses a bad value with one line (argparse prints it as ``workbench: error: …``
and exits with status 2), so no subcommand ever starts on a negative budget or a
fractional batch. Ground layer: every subcommand's module may use it.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An argparse type: a whole number greater than zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """An argparse type: ``name=1x3x224x224`` -> ``("name", (1, 3, 224, 224))``."""
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=DIMxDIMx… (e.g. x=1x3x224x224)")
    return name, shape


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--trust`` and ``--max-size``: how a model file may be loaded."""
    parser.add_argument(
        "--trust",
        action="store_true",
        help="trust the model file's author: TorchScript and pickled modules may load "
        "(they run code); see docs/security.md",
    )
    parser.add_argument(
        "--max-size",
        type=positive_float,
        default=None,
        metavar="MB",
        help="largest model file to load, in MiB (default 4096)",
    )
