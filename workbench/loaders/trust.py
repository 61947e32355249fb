"""What a model file may do when it is loaded: untrusted files run no code.

A model file is untrusted unless the user says otherwise (``wb.load(path, trust=True)``,
``--trust`` on the command line). Untrusted:

- ONNX files load (they hold a graph and weights, never code);
- ``.pt2`` archives (``torch.export``) are inspected *before* torch sees them: every pickled
  entry must pass torch's weights-only unpickler, every graph node must call a plain
  operator, every symbolic-shape expression must be arithmetic, and entries that are code
  (AOTInductor libraries, TorchBind or opaque objects, guard code) are refused. torch's own
  loader would otherwise retry a failed weights-only load with full unpickling, and it
  evaluates shape expressions with ``sympy.sympify`` (which calls ``eval``);
- TorchScript archives and plain pickles are refused: loading them runs the author's code.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from workbench.errors import ModelLoadError, UnsafeModelError

#: largest model file loaded unless the caller raises the limit (``max_bytes=`` / ``--max-size``)
MAX_MODEL_BYTES = 4 * 2**30

#: what reading a damaged zip directory can raise (each found by fuzzing: tests/test_fuzz.py)
ZIP_ERRORS = (
    zipfile.BadZipFile,
    UnicodeDecodeError,
    NotImplementedError,
    ValueError,
    EOFError,
    OSError,
)

#: how a refusal tells the user to opt in
OPT_IN = "pass trust=True to wb.load (CLI: --trust) only if you trust its author"

# Graph targets an untrusted program may call. Operators outside these namespaces, and the
# two aten operators that touch the file system, are refused (a target such as
# ``torch.os.system`` would otherwise be resolved by attribute lookup and called).
_OP_NAMESPACES = {"aten", "prims", "quantized", "quantized_decomposed", "_quantized"}
_FILE_OPS = {"from_file", "save"}
_HIGHER_ORDER = {
    "cond",
    "while_loop",
    "map_impl",
    "scan",
    "invoke_subgraph",
    "wrap_with_set_grad_enabled",
    "wrap_with_autocast",
    "auto_functionalized",
    "auto_functionalized_v2",
}
_PYTHON_TARGETS = re.compile(
    r"_operator\.(add|sub|mul|truediv|floordiv|mod|pow|neg|pos|abs|eq|ne|lt|le|gt|ge|"
    r"and_|or_|not_|lshift|rshift|getitem)|math\.[a-z0-9_]+|torch\.sym_[a-z_]+|torch\._sym_sqrt"
)
# Names a symbolic-shape expression may use (sympy classes and torch's sympy functions);
# anything else (``eval``, ``open``, ``__import__``, attribute access) is refused.
_SYMPY_NAMES = {
    "Symbol",
    "Integer",
    "Rational",
    "Float",
    "Add",
    "Mul",
    "Pow",
    "Mod",
    "Max",
    "Min",
    "Abs",
    "Eq",
    "Ne",
    "Lt",
    "Le",
    "Gt",
    "Ge",
    "And",
    "Or",
    "Not",
    "Piecewise",
    "floor",
    "ceiling",
    "sqrt",
    "oo",
    "zoo",
    "nan",
    "pi",
    "E",
    "S",
    "True",
    "False",
    "positive",
    "negative",
    "nonnegative",
    "nonpositive",
    "integer",
    "real",
    "finite",
    "zero",
    "FloorDiv",
    "ModularIndexing",
    "Where",
    "PythonMod",
    "CleanDiv",
    "CeilToInt",
    "FloorToInt",
    "CeilDiv",
    "LShift",
    "RShift",
    "PowByNatural",
    "FloatPow",
    "FloatTrueDiv",
    "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat",
    "TruncToInt",
    "RoundToInt",
    "RoundDecimal",
    "ToFloat",
    "Identity",
}
_SYMBOL = re.compile(r"[a-z]+[0-9]+")
_SYMPY_OPS = {"+", "-", "*", "/", "//", "%", "**", "(", ")", ",", "=", "<", ">", "<=", ">="}
_SYMPY_OPS |= {"==", "!=", "&", "|", "~"}


def max_bytes_of(mib: float | None) -> int:
    """The byte limit for a ``--max-size`` given in MiB (None: the default limit)."""
    return MAX_MODEL_BYTES if mib is None else int(mib * 2**20)


def check_size(path: Path, max_bytes: int | None) -> None:
    """Refuse a file larger than ``max_bytes`` (None: no limit).

    Raises:
        ModelLoadError: the file is larger than the limit (the message says how to raise it).
    """
    if max_bytes is None:
        return
    if max_bytes <= 0:
        raise ModelLoadError(f"max_bytes must be a positive number of bytes, not {max_bytes}")
    size = path.stat().st_size
    if size > max_bytes:
        raise ModelLoadError(
            f"{path} is {_mib(size)}, over the {_mib(max_bytes)} limit; pass max_bytes= "
            "(CLI: --max-size MB) to load a larger file"
        )


def refuse_code(path: Path | str, what: str) -> UnsafeModelError:
    """The one-line refusal of a file whose loading would run code."""
    return UnsafeModelError(f"{path} {what}: loading it could run arbitrary code; {OPT_IN}")


def check_pt2(data: bytes, label: str) -> None:
    """Check an untrusted ``.pt2`` archive so that ``torch.export.load`` runs none of its code.

    Args:
        data: the archive's bytes (the caller then hands these same bytes to torch).
        label: the file's name, for messages.

    Raises:
        UnsafeModelError: an entry holds code, a non-weights pickle, an operator outside
            the allowed set, or a shape expression that is not arithmetic.
        ModelLoadError: the bytes are not a ``torch.export`` archive.
    """
    from torch.export.pt2_archive import _package as pt2

    _check_zip_names(data, label)
    try:
        reader = pt2.PT2ArchiveReader(io.BytesIO(data))
        names = list(reader.get_file_names())
    except Exception as exc:  # torch's reader raises bare RuntimeError/AssertionError
        raise ModelLoadError(f"{label} is not a torch.export (.pt2) archive") from exc

    def read(name: str) -> bytes:
        try:
            return bytes(reader.read_bytes(name))
        except Exception as exc:  # a damaged entry: torch's reader raises bare RuntimeError
            raise ModelLoadError(f"{label} has a corrupt entry {name}") from exc

    raw = _raw_payloads(read, names, label)
    for name in names:
        if name.startswith(("data/aotinductor/", "data/executorch/", "data/mtia")):
            raise refuse_code(label, f"holds compiled code ({name})")
        if name.startswith("xl_model_weights/") or "/custom_obj_" in name or "/opaque_obj_" in name:
            raise refuse_code(label, f"holds Python or TorchBind objects ({name})")
        if name.startswith("models/") and name.endswith(".json"):
            _check_program(read(name), label)
        elif name.startswith("data/") and not name.endswith(".json") and name not in raw:
            _check_weights_only(read(name), label, name)


def _check_zip_names(data: bytes, label: str) -> None:
    # torch reads the archive with its own (C++) zip reader and falls back to an older
    # format read with Python's: both must see one root folder and no repeated names,
    # so that what is checked here is what torch loads.
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except ZIP_ERRORS as exc:
        raise ModelLoadError(f"{label} is not a torch.export (.pt2) archive") from exc
    roots = {n.split("/", 1)[0] for n in names if "/" in n}
    repeated = [n for n, count in Counter(names).items() if count > 1]
    if len(roots) != 1 or any("/" not in n for n in names) or repeated:
        raise UnsafeModelError(
            f"{label} is a malformed torch.export archive (repeated or loose entries); {OPT_IN}"
        )


def _raw_payloads(read: Callable[[str], bytes], names: list[str], label: str) -> set[str]:
    """Entries that torch reads as raw tensor bytes (never unpickled)."""
    raw = set()
    for name in names:
        folder = name.rsplit("/", 1)[0] + "/"
        if not name.endswith(("_weights_config.json", "_constants_config.json")):
            continue
        try:
            config = json.loads(read(name))["config"]
            raw |= {folder + e["path_name"] for e in config.values() if not e.get("use_pickle")}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelLoadError(f"{label} has a corrupt payload table ({name})") from exc
    return raw


def _check_weights_only(payload: bytes, label: str, name: str) -> None:
    import pickle

    import torch

    # the same call torch makes first; it then retries without weights_only, which we forbid
    try:
        torch.load(io.BytesIO(payload), weights_only=True)
    except pickle.UnpicklingError as exc:
        raise refuse_code(label, f"holds a pickle that is more than weights ({name})") from exc
    except Exception as exc:
        raise ModelLoadError(
            f"{label} has an unreadable entry {name} ({type(exc).__name__})"
        ) from exc


def _check_program(payload: bytes, label: str) -> None:
    try:
        program = json.loads(payload)
    except ValueError as exc:
        raise ModelLoadError(f"{label} has a corrupt program (not JSON)") from exc
    if isinstance(program, dict) and program.get("guards_code"):
        raise refuse_code(label, "carries guard code")
    for key, value in _items(program):
        if key == "target" and isinstance(value, str) and not _allowed_target(value):
            raise refuse_code(label, f"calls {value!r}, which is not a plain operator")
        if key == "expr_str" and not (isinstance(value, str) and _arithmetic(value)):
            raise refuse_code(label, f"has a shape expression that is not arithmetic: {value!r}")


def _items(node: Any) -> Iterator[tuple[str, Any]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
            yield from item.items()
        elif isinstance(item, list):
            stack.extend(item)


def _allowed_target(target: str) -> bool:
    if _PYTHON_TARGETS.fullmatch(target):
        return True
    parts = target.split(".")
    if len(parts) not in (4, 5) or parts[:2] != ["torch", "ops"]:
        return False
    if parts[2] == "higher_order":
        return parts[3] in _HIGHER_ORDER
    return parts[2] in _OP_NAMESPACES and parts[3] not in _FILE_OPS


def _arithmetic(expr: str) -> bool:
    """True when ``expr`` uses only numbers, symbol names, sympy names and operators."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(expr).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    for token in tokens:
        if token.type == tokenize.NAME:
            ok = token.string in _SYMPY_NAMES or bool(_SYMBOL.fullmatch(token.string))
        elif token.type == tokenize.STRING:
            ok = bool(re.fullmatch(r"'[a-z]+[0-9]+'", token.string))
        elif token.type == tokenize.OP:
            ok = token.string in _SYMPY_OPS
        else:
            ok = token.type in (tokenize.NUMBER, tokenize.NEWLINE, tokenize.ENDMARKER)
        if not ok:
            return False
    return True


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size:,} bytes"
