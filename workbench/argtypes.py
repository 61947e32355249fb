"""The command line's boundary, shared with the public API (ground layer: stdlib imports only).

- Validators (`whole`, `number`, `seconds`, `batch_size`, `check_input_bytes`) check a
  parameter where it enters the public API and raise `ParameterError` with one line
  naming the parameter, the value and what is allowed. The argparse types below wrap the
  same checks, so ``workbench profile --budget -1`` and ``wb.profile(m, budget_s=-1)``
  refuse in the same words, and no run starts on a NaN budget or a fractional batch.
- `printable` escapes control characters (terminal escape sequences, carriage returns)
  in text the command line prints, so a model's or layer's name cannot drive the terminal.
- `add_model_options`: ``--trust`` and ``--max-size`` of every subcommand that loads a model.
"""

from __future__ import annotations

import argparse
import math
import numbers
import operator
import os
import re
from collections.abc import Callable
from typing import Any

from workbench.errors import ParameterError

#: largest batch size any entry point accepts
MAX_BATCH = 2**24
#: longest duration any timing budget or minimum may ask for, in seconds (a day)
MAX_SECONDS = 24 * 3600
#: most repeats (warm-up calls, instrumented runs) a timing call may ask for
MAX_REPEATS = 100_000
#: most intra-op threads a run may ask a runtime for (more only spawns idle threads)
MAX_THREADS = 1024
#: most fine-tuning epochs a transform may ask for
MAX_EPOCHS = 1000
#: largest generated input batch, in bytes, unless ``$WORKBENCH_MAX_INPUT_MB`` says otherwise
MAX_INPUT_BYTES = 4 * 2**30
#: environment variable raising (or lowering) `MAX_INPUT_BYTES`, in MiB
INPUT_LIMIT_ENV = "WORKBENCH_MAX_INPUT_MB"


# ---- validators for the public API -----------------------------------------------------
def whole(name: str, value: Any, *, minimum: int | None = 1, maximum: int | None = None) -> int:
    """``value`` as an int, refused unless it is a whole number within the bounds.

    Floats are refused even when integral (``2.0``), as are bools and strings: a setting
    that counts things is given as a count.

    Raises:
        ParameterError: e.g. "finetune_epochs must be a whole number, got 2.5 (float)".
    """
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ParameterError(
            f"{name} must be a whole number, got {value!r} ({type(value).__name__})"
        )
    count = operator.index(value)
    _within(name, count, minimum, maximum)
    return count


def number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> float:
    """``value`` as a float, refused unless it is a finite real number within the bounds.

    Args:
        name: the parameter, as the user spells it.
        value: what was given.
        minimum: smallest value allowed (inclusive).
        maximum: largest value allowed (inclusive).
        above: the value must be strictly greater than this.

    Raises:
        ParameterError: a string (``"1"``), a bool, NaN, infinity, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    result = float(value)
    if not math.isfinite(result):
        raise ParameterError(f"{name} must be a finite number, got {value!r}")
    if above is not None and not result > above:
        raise ParameterError(f"{name} must be greater than {above:g}, got {value!r}")
    _within(name, result, minimum, maximum)
    return result


def seconds(name: str, value: Any, *, maximum: float = MAX_SECONDS) -> float:
    """A duration in seconds: greater than 0 and at most ``maximum`` (a day by default)."""
    return number(name, value, above=0.0, maximum=maximum)


def batch_size(value: Any, name: str = "batch_size") -> int:
    """A batch size: a whole number from 1 to `MAX_BATCH`."""
    return whole(name, value, minimum=1, maximum=MAX_BATCH)


def input_limit() -> int:
    """The most bytes generated inputs may take: ``$WORKBENCH_MAX_INPUT_MB`` if set, else
    `MAX_INPUT_BYTES` or a quarter of this machine's memory, whichever is less.

    Raises:
        ParameterError: the environment variable is not a positive number.
    """
    configured = os.environ.get(INPUT_LIMIT_ENV)
    if not configured:
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # not POSIX: the fixed limit
            return MAX_INPUT_BYTES
        return min(MAX_INPUT_BYTES, memory // 4) if memory > 0 else MAX_INPUT_BYTES
    try:
        mib = float(configured)
    except ValueError:
        mib = math.nan
    if not 0 < mib < math.inf:
        raise ParameterError(
            f"${INPUT_LIMIT_ENV} must be a positive number of MiB, got {configured!r}"
        )
    return int(mib * 2**20)


def check_input_bytes(model: Any, batch: int) -> int:
    """The bytes ``model``'s generated inputs take at batch size ``batch``, refused above the limit.

    Checked before anything is allocated, so an absurd batch is refused in one line
    instead of exhausting memory.

    Args:
        model: a `Model` (anything with ``name`` and ``inputs`` of `TensorSpec`).
        batch: the batch size (see `batch_size`).

    Returns:
        The total bytes.

    Raises:
        ParameterError: an input with a negative dimension, or more bytes than
            `input_limit` (the message gives the number and what to do).
    """
    import numpy as np

    total = 0
    for spec in model.inputs:
        dims = spec.concrete_shape(batch)
        if any(d < 0 for d in dims):
            raise ParameterError(
                f"input {printable(spec.name)!r} of {printable(model.name)} has a negative "
                f"dimension in {list(spec.shape)}; give its real shape (--shape, or inputs=) "
                "or re-export it with a named dynamic dimension"
            )
        try:
            itemsize = np.dtype(spec.dtype).itemsize
        except TypeError:  # a type numpy lacks (bfloat16, float8): counted as the widest
            itemsize = 8
        total += math.prod(dims) * itemsize
    limit = input_limit()
    if total > limit:
        raise ParameterError(
            f"inputs of {printable(model.name)} at batch size {batch:,} need "
            f"{total / 2**30:,.1f} GiB, over the {limit / 2**30:,.1f} GiB limit for generated "
            f"inputs; use a smaller batch size, or set {INPUT_LIMIT_ENV} (MiB) to allow more"
        )
    return total


def _within(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ParameterError(f"{name} must be at least {_shown(minimum)}, got {_shown(value)}")
    if maximum is not None and value > maximum:
        raise ParameterError(f"{name} must be at most {_shown(maximum)}, got {_shown(value)}")


def _shown(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


# ---- text the command line prints ------------------------------------------------------
# C0 controls but tab and newline, DEL and C1 controls, and the Unicode marks that reorder
# or break lines (bidirectional overrides, line and paragraph separators)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\r``); tab and newline stay.

    Example:
        >>> printable("conv\\x1b[2J")
        'conv\\\\x1b[2J'
    """
    return _CONTROL.sub(_escaped, str(text))


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# ---- argparse types: the validators above, in argparse's terms -------------------------
def _argtype(name: str, parse: Callable[[str], Any], check: Callable[[Any], Any]) -> Any:
    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        try:
            return check(value)
        except ParameterError as exc:
            # argparse names the option itself
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value ")) from None

    convert.__name__ = name.replace(" ", "_")
    return convert


#: an argparse type: a whole number greater than zero
positive_int = _argtype("a whole number", int, lambda v: whole("value", v, minimum=1))
#: an argparse type: a whole number of zero or more
count_int = _argtype("a whole number", int, lambda v: whole("value", v, minimum=0))
#: an argparse type: a batch size (1 to `MAX_BATCH`)
batch_int = _argtype("a whole number", int, lambda v: batch_size(v, "value"))
#: an argparse type: a thread count (1 to `MAX_THREADS`)
threads_int = _argtype(
    "a whole number", int, lambda v: whole("value", v, minimum=1, maximum=MAX_THREADS)
)
#: an argparse type: a TCP port (1 to 65535)
port_int = _argtype("a whole number", int, lambda v: whole("value", v, minimum=1, maximum=65535))
#: an argparse type: a finite number greater than zero
positive_float = _argtype("a number", float, lambda v: number("value", v, above=0.0))
#: an argparse type: a finite number of zero or more
nonnegative_float = _argtype("a number", float, lambda v: number("value", v, minimum=0.0))
#: an argparse type: seconds, greater than zero and at most a day
duration_s = _argtype("a number", float, lambda v: seconds("value", v))


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
