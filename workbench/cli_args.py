"""Argument types and model options shared by the ``workbench`` subcommands.

Each type refuses a bad value with one line (argparse prints it as ``workbench: error: …``
and exits with status 2), so no subcommand ever starts on a negative budget or a
fractional batch.
"""

from __future__ import annotations

import argparse
from typing import Any

from workbench.errors import InputError


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


def load_model(args: argparse.Namespace) -> Any:
    """Load ``args.model`` with the ``--trust`` and ``--max-size`` the user gave."""
    from workbench.loaders import load
    from workbench.loaders.trust import MAX_MODEL_BYTES

    limit = MAX_MODEL_BYTES if args.max_size is None else int(args.max_size * 2**20)
    return load(args.model, trust=args.trust, max_bytes=limit)


def inputs_for(
    model: Any, batch_size: int, shapes: list[tuple[str, tuple[int, ...]]]
) -> dict[str, Any] | None:
    """Inputs with the ``--shape`` values given, or None when generated ones will do.

    Raises:
        InputError: an unknown input name, a shape of the wrong rank, or an input with
            symbolic dimensions beyond the batch and no ``--shape`` (names what to give).
    """
    import numpy as np

    given = dict(shapes)
    specs = {spec.name: spec for spec in model.inputs}
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise InputError(f"--shape names unknown input(s) {unknown}; inputs are {list(specs)}")
    missing = [
        f"{spec.name} {list(spec.shape)}"
        for spec in model.inputs
        if spec.name not in given and any(isinstance(d, str) for d in spec.shape[1:])
    ]
    if missing:
        raise InputError(
            f"{model.name} has symbolic dimensions beyond the batch in {', '.join(missing)}; "
            "give each such input with --shape NAME=DIMxDIMx…"
        )
    if not given:
        return None
    arrays = model.example_inputs(batch_size)
    rng = np.random.default_rng(0)
    for name, shape in given.items():
        spec = specs[name]
        if len(shape) != len(spec.shape):
            raise InputError(
                f"--shape {name} has {len(shape)} dimensions; {name} has {len(spec.shape)} "
                f"{list(spec.shape)}"
            )
        arrays[name] = rng.random(shape).astype(spec.dtype)
    return arrays
