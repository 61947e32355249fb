"""What a model file may do when it is loaded: untrusted files run no code.

A model file is untrusted unless the user says otherwise (``wb.load(path, trust=True)``,
``--trust`` on the command line). Untrusted:

- ONNX files load (they hold a graph and weights, never code);
- ``.pt2`` archives (``torch.export``) are read by `workbench.loaders.pt2`, never by torch's
  own loader (which unpickles weights and constants with full pickle and retries a failed
  weights-only load of the sample inputs without it): every pickled item goes through
  torch's weights-only unpickler, every graph node must call a plain operator, every
  symbolic-shape expression must fit a grammar that ``sympy.sympify`` (which calls
  ``eval``) parses quickly, and entries that are code (AOTInductor libraries, TorchBind or
  opaque objects, guard code) are refused;
- every zip archive is bounded before anything is inflated: its entries' declared sizes
  must fit the size limit together, and an untrusted entry may not expand like a
  decompression bomb;
- TorchScript archives and plain pickles are refused: loading them runs the author's code.
"""

from __future__ import annotations

import ast
import io
import json
import math
import re
import zipfile
from collections.abc import Iterator
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

#: most entries a zip archive may list (each costs memory before anything is read)
MAX_ZIP_ENTRIES = 50_000
_DIRECTORY_BYTES_PER_ENTRY = 128  # an entry's directory record and a name of 80 characters

#: largest JSON entry (program, payload tables) of an untrusted archive: parsing takes
#: several times its size in memory
MAX_JSON_BYTES = 128 * 2**20

#: an entry of an untrusted archive over this size may not expand more than `MAX_ZIP_RATIO`
#: times its compressed size (torch writes entries stored; a deflated run of zeros expands
#: about 1000 times, which is how a 1.5 MB file asks for 1.5 GiB)
RATIO_FLOOR_BYTES = 2**20
MAX_ZIP_RATIO = 100

# Graph targets an untrusted program may call. Operators outside these namespaces, and the
# two aten operators that touch the file system, are refused (a target such as
# ``torch.os.system`` would otherwise be resolved by attribute lookup and called).
# fmt: off
_OP_NAMESPACES = {"aten", "prims", "quantized", "quantized_decomposed", "_quantized"}
_FILE_OPS = {"from_file", "save"}
_HIGHER_ORDER = {
    "cond", "while_loop", "map_impl", "scan", "invoke_subgraph", "wrap_with_set_grad_enabled",
    "wrap_with_autocast", "auto_functionalized", "auto_functionalized_v2"
}
# fmt: on
_PYTHON_TARGETS = re.compile(
    r"_operator\.(add|sub|mul|truediv|floordiv|mod|pow|neg|pos|abs|eq|ne|lt|le|gt|ge|"
    r"and_|or_|not_|lshift|rshift|getitem)|math\.[a-z0-9_]+|torch\.sym_[a-z_]+|torch\._sym_sqrt"
)

# Names torch pastes into the Python it generates for ExportedProgram.module() and then
# runs with exec: a placeholder's name goes into ``def forward(self, <name>)`` and a module
# path into ``getattr(self, "<segment>")``, unescaped. Node and argument names must be
# identifiers (or empty), module paths identifier-like segments joined by dots.
_IDENTIFIER = re.compile(r"([A-Za-z_][A-Za-z0-9_]{0,255})?")
_MODULE_PATH = re.compile(r"([A-Za-z0-9_]{1,255}(\.[A-Za-z0-9_]{1,255}){0,63})?")

# Shape expressions are parsed here with `ast` (which evaluates nothing) against a grammar
# of what torch writes: numbers, symbols, arithmetic, comparisons and calls of sympy's and
# torch's sympy functions. torch hands the string to ``sympy.sympify``, which calls
# ``eval`` and computes constant powers exactly (``10**10**10`` never returns), so every
# exponent must be a small number and the size of the numbers an expression can reach is
# bounded (a symbol, a tensor size, counts as 64 bits).
# torch writes expressions with sympy's srepr: Mul(Integer(4), Symbol('s0', positive=True,
# integer=True)), Pow(Symbol(...), Integer(2)), Equality(...), ExprCondPair(...), true
_SYMBOL = re.compile(r"[a-z]+[0-9]{1,7}")
# sympy's constants, and torch's int_oo (which sympify reads as a symbol)
_CONSTANTS = {"oo", "zoo", "nan", "pi", "E", "true", "false", "int_oo"}
# fmt: off
# functions whose result is about as large as their largest argument
_ADDITIVE = {
    "Add", "Max", "Min", "Abs", "Mod", "PythonMod", "ModularIndexing", "Where", "Eq", "Ne",
    "Lt", "Le", "Gt", "Ge", "Equality", "Unequality", "StrictLessThan", "LessThan",
    "StrictGreaterThan", "GreaterThan", "And", "Or", "Not", "Piecewise", "ExprCondPair",
    "floor", "ceiling", "sqrt", "Integer", "CeilToInt", "FloorToInt", "RShift", "TruncToFloat",
    "TruncToInt", "RoundToInt", "ToFloat", "Identity", "IsNonOverlappingAndDenseIndicator"
}
# functions whose result can need their arguments' sizes added up
_MULTIPLICATIVE = {
    "Mul", "Rational", "FloorDiv", "CleanDiv", "CeilDiv", "FloatTrueDiv", "IntTrueDiv"
}
# fmt: on
# functions whose second argument is an exponent (or a shift, or a count of digits)
_POWERS = {"Pow", "PowByNatural", "FloatPow", "LShift", "RoundDecimal"}
# a Float's digits as srepr writes them: Float('0.5', precision=53)
_FLOAT_TEXT = re.compile(r"[-+]?[0-9]{1,40}(\.[0-9]{0,40})?(e[-+]?[0-9]{1,3})?")
_MAX_FLOAT_PRECISION = 256
# sympy compares these functions' arguments pair by pair, with assumptions: a Max of 16
# sums costs it a second
_COMPARED = {"Max", "Min", "Piecewise", "And", "Or"}
_MAX_COMPARED_ARGS = 8
_COMPARE_COST = 16
# torch parses every occurrence of an expression again (sympify costs 1 to 150 ms), so a
# program's expressions are bounded in number and in cost together: about half a minute
# of sympy at worst (a 4-layer transformer with dynamic batch and length has 459, costing
# 9,000)
_MAX_PROGRAM_EXPRESSIONS = 20_000
_MAX_PROGRAM_EXPR_COST = 300_000
_MAX_EXPR_CHARS = 4096
_MAX_EXPR_NODES = 1024
_MAX_EXPR_DEPTH = 64
_MAX_CALL_ARGS = 32
_MAX_EXPONENT = 64
_MAX_EXPR_BITS = 4096
_SYMBOL_BITS = 64


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


def check_data_folder(folder: Path, suffixes: tuple[str, ...], reader: str, opt_in: str) -> None:
    """Refuse a model folder loaded untrusted that holds a file whose name does not end
    in one of ``suffixes`` (the data ``reader`` reads: JSON, ONNX, tokenizer files): a
    runtime never loads such a file from a clean folder, so its presence is a sign of code.

    Raises:
        UnsafeModelError: one line naming the file and how to opt in (``opt_in``).
    """
    for file in sorted(folder.rglob("*")):
        if file.is_file() and not file.name.endswith(suffixes):
            raise UnsafeModelError(
                f"{file} is not a file {reader} reads as data (JSON, ONNX, tokenizer files): "
                f"a folder holding it may carry code; {opt_in}"
            )


def refuse_code(path: Path | str, what: str) -> UnsafeModelError:
    """The one-line refusal of a file whose loading would run code."""
    return UnsafeModelError(f"{path} {what}: loading it could run arbitrary code; {OPT_IN}")


def open_zip(data: bytes, label: str, max_bytes: int | None, *, untrusted: bool) -> zipfile.ZipFile:
    """Open a zip archive once its entries are known to expand within the limits.

    Nothing is inflated: the sizes counted are the uncompressed sizes the archive's
    directory declares, by which a reader allocates, and `read_entry` never returns more
    than its entry declares.

    Args:
        data: the archive's bytes.
        label: the file's name, for messages.
        max_bytes: most bytes all entries together may expand to (None: no limit).
        untrusted: also refuse an entry that expands more than `MAX_ZIP_RATIO` times.

    Returns:
        The open archive (over ``data`` in memory).

    Raises:
        ModelLoadError: not a readable zip archive, too many entries, or over the limit.
        UnsafeModelError: an untrusted entry that expands like a decompression bomb.
    """
    try:
        archive = zipfile.ZipFile(_counted(data, label))
    except ZIP_ERRORS as exc:
        raise ModelLoadError(f"{label} is not a readable zip archive") from exc
    total = 0
    for info in archive.infolist():
        total += info.file_size
        if max_bytes is not None and total > max_bytes:
            raise ModelLoadError(
                f"{label} expands to more than the {_mib(max_bytes)} limit when unpacked "
                f"(at {info.filename[:80]!r}); pass max_bytes= (CLI: --max-size MB) to allow more"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if untrusted and info.file_size > RATIO_FLOOR_BYTES and ratio > MAX_ZIP_RATIO:
            raise UnsafeModelError(
                f"{label} has an entry that expands {ratio:,.0f} times ({info.filename[:80]!r}: "
                f"{_mib(info.compress_size)} to {_mib(info.file_size)}), a decompression "
                f"bomb; {OPT_IN}"
            )
    return archive


def _counted(data: bytes, label: str) -> io.BytesIO:
    """``data`` as a file, once its directory is known to list at most `MAX_ZIP_ENTRIES`.

    zipfile reads as many entries as the directory's size holds, whatever count the end
    record gives, so both are bounded (an entry takes at least 46 bytes there).
    """
    stream = io.BytesIO(data)
    end = zipfile._EndRecData(stream)  # type: ignore[attr-defined]
    if end is not None:
        count = end[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore[attr-defined]
        size = end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
        if count > MAX_ZIP_ENTRIES or size > MAX_ZIP_ENTRIES * _DIRECTORY_BYTES_PER_ENTRY:
            raise ModelLoadError(
                f"{label} lists {max(count, size // 46):,} entries or more, over the "
                f"{MAX_ZIP_ENTRIES:,} a model archive may hold"
            )
    return stream


def read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> bytes:
    """One entry's bytes, never more than its declared size (`open_zip` bounded those).

    Raises:
        ModelLoadError: the entry is damaged (bad data, CRC or header).
    """
    try:
        with archive.open(info) as stream:
            return stream.read(info.file_size)
    except (*ZIP_ERRORS, RuntimeError) as exc:  # zlib.error is neither; RuntimeError: encrypted
        raise ModelLoadError(f"{label} has a corrupt entry {info.filename[:80]!r}") from exc


def check_program(payload: bytes, label: str) -> Any:
    """Parse an exported program's JSON and check that deserializing it runs none of its code.

    Args:
        payload: the program's JSON (``models/<name>.json`` in a ``.pt2`` archive).
        label: the file's name, for messages.

    Returns:
        The parsed JSON.

    Raises:
        UnsafeModelError: guard code, a node calling something that is not a plain
            operator, a shape expression outside the grammar, a symbol name torch would
            count up to, or a name torch would paste into the code it generates.
        ModelLoadError: the payload is not JSON.
    """
    try:
        program = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise ModelLoadError(f"{label} has a corrupt program (not JSON)") from exc
    if not isinstance(program, dict):
        raise ModelLoadError(f"{label} has a corrupt program (not a JSON object)")
    if program.get("guards_code"):
        raise refuse_code(label, "carries guard code")
    # torch counts unbacked symbols up to the largest index named here, one by one
    ranges = program.get("range_constraints")
    for symbol in ranges if isinstance(ranges, dict) else ():
        if not _SYMBOL.fullmatch(symbol):
            raise UnsafeModelError(
                f"{label} has a range for {symbol[:40]!r}, which is not a symbol torch writes "
                f"(torch counts up to a symbol's number one by one); {OPT_IN}"
            )
    costs: dict[str, int] = {}
    count = total = 0
    for key, value in _items(program):
        # a node's target, and an operator passed to a higher-order op, are both resolved
        # by attribute lookup from torch, operator or math
        if (
            key in ("target", "as_operator")
            and isinstance(value, str)
            and not _allowed_target(value)
        ):
            raise refuse_code(label, f"calls {value[:80]!r}, which is not a plain operator")
        if isinstance(value, str) and not _safe_name(key, value):
            raise UnsafeModelError(
                f"{label} names {value[:60]!r} ({key}), which torch would paste into the code "
                f"it generates and runs; {OPT_IN}"
            )
        if key != "expr_str":
            continue
        try:
            cost = costs.get(value) if isinstance(value, str) else None
            if cost is None:
                cost = costs[value] = _expression_cost(value)
        except _Refused as exc:
            raise UnsafeModelError(
                f"{label} has a shape expression {str(value)[:60]!r} that {exc} (sympy "
                f"evaluates these while loading: it could run code or never finish); {OPT_IN}"
            ) from exc
        count, total = count + 1, total + cost
        if count > _MAX_PROGRAM_EXPRESSIONS or total > _MAX_PROGRAM_EXPR_COST:
            raise UnsafeModelError(
                f"{label} has more shape expressions than torch parses in reasonable time "
                f"(over {count:,}, costing {total:,}; at most {_MAX_PROGRAM_EXPRESSIONS:,} "
                f"costing {_MAX_PROGRAM_EXPR_COST:,}); {OPT_IN}"
            )
    return program


def _safe_name(key: str, value: str) -> bool:
    """Whether a name at ``key`` in a program is safe to paste into generated Python."""
    if key == "name":
        return bool(_IDENTIFIER.fullmatch(value))
    if key == "fqn" or key.endswith("_name"):
        return bool(_MODULE_PATH.fullmatch(value))
    return True


def is_module_path(fqn: object) -> bool:
    """Whether ``fqn`` (a weight's or constant's name) is safe as a module path."""
    return isinstance(fqn, str) and bool(_MODULE_PATH.fullmatch(fqn))


def is_identifier(name: object) -> bool:
    """Whether ``name`` (an input's) is safe as a parameter of a generated function."""
    return isinstance(name, str) and bool(name) and bool(_IDENTIFIER.fullmatch(name))


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


class _Refused(Exception):
    """Why a shape expression is outside the grammar (caught by `expression_problem`)."""


def expression_problem(expr: object) -> str | None:
    """Why ``sympy.sympify(expr)`` could run code or not return (None: it is safe to parse).

    Args:
        expr: a symbolic-shape expression as torch writes it, e.g. ``"s0*s1 + 1"``.

    Returns:
        None for an expression inside the grammar, else a short reason.
    """
    try:
        _expression_cost(expr)
    except _Refused as exc:
        return str(exc)
    return None


def _expression_cost(expr: object) -> int:
    """What sympy's parse of ``expr`` costs, in about syntax nodes; `_Refused` if unsafe."""
    if not isinstance(expr, str):
        raise _Refused("is not a string")
    if len(expr) > _MAX_EXPR_CHARS:
        raise _Refused(f"is longer than {_MAX_EXPR_CHARS:,} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise _Refused("is not an expression") from exc
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    nodes = cost = 0
    while stack:  # without recursion: the tree's size and depth are not known yet
        node, depth = stack.pop()
        nodes += 1
        if depth > _MAX_EXPR_DEPTH or nodes > _MAX_EXPR_NODES:
            raise _Refused("is nested too deeply or too long")
        cost += 1
        if isinstance(node, ast.Call) and _name(node) in _COMPARED:
            cost += _COMPARE_COST * len(node.args) ** 2  # sympy compares them pair by pair
        family = _chain_op(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.operator | ast.cmpop | ast.unaryop | ast.expr_context):
                continue  # part of its parent
            # a chain a + b + c nests to the left: as deep as it is long, yet flat to sympy
            chained = family and child is getattr(node, "left", None) and _chain_op(child) == family
            stack.append((child, depth if chained else depth + 1))
    try:
        bits = _bits(tree)
    except RecursionError as exc:
        raise _Refused("is nested too deeply or too long") from exc
    if bits > _MAX_EXPR_BITS:
        raise _Refused("reaches numbers too large for a shape")
    return cost


def _name(node: ast.Call) -> str:
    return node.func.id if isinstance(node.func, ast.Name) else ""


def _chain_op(node: ast.AST) -> str | None:
    """The family of a binary operation sympy flattens (``+ -`` or ``* / //``), if it is one."""
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Add | ast.Sub):
            return "add"
        if isinstance(node.op, ast.Mult | ast.Div | ast.FloorDiv):
            return "mul"
    return None


def _bits(node: ast.AST) -> int:
    """An upper bound of the bits the value of ``node`` needs; `_Refused` outside the grammar."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            return 1
        if isinstance(value, int):
            return max(value.bit_length(), 1)
        if isinstance(value, float):
            return 64
        raise _Refused(f"holds {type(value).__name__} {value!r:.20}")
    if isinstance(node, ast.Name):
        if _SYMBOL.fullmatch(node.id):
            return _SYMBOL_BITS
        if node.id in _CONSTANTS:
            return 1
        raise _Refused(f"names {node.id[:40]!r}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd | ast.Invert):
        return _bits(node.operand)
    if family := _chain_op(node):
        operands = []
        while isinstance(node, ast.BinOp) and _chain_op(node) == family:  # not by recursion
            operands.append(node.right)
            node = node.left
        sizes = [_bits(n) for n in (node, *operands)]
        return sum(sizes) if family == "mul" else max(sizes) + len(sizes)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Pow):
            return _bits(node.left) * _exponent(node.right)
        if isinstance(node.op, ast.Mod | ast.BitAnd | ast.BitOr):
            return max(_bits(node.left), _bits(node.right)) + 1
    if isinstance(node, ast.Compare) and all(isinstance(op, _COMPARISONS) for op in node.ops):
        return max(_bits(n) for n in (node.left, *node.comparators)) + 1
    if isinstance(node, ast.Tuple):  # Piecewise's (value, condition) pairs
        return max((_bits(n) for n in node.elts), default=1)
    if isinstance(node, ast.Call):
        return _call_bits(node)
    raise _Refused(f"is not arithmetic ({type(node).__name__})")


_COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _call_bits(node: ast.Call) -> int:
    name = _name(node)
    if name == "Symbol":  # Symbol('s0', positive=True, integer=True)
        symbol = node.args[0] if len(node.args) == 1 else None
        if not (
            isinstance(symbol, ast.Constant)
            and isinstance(symbol.value, str)
            and _SYMBOL.fullmatch(symbol.value)
            and all(_is_flag(k) for k in node.keywords)
        ):
            raise _Refused("declares a symbol torch does not write")
        return _SYMBOL_BITS
    if name == "Float":  # Float('0.5', precision=53)
        _float_value(node)
        return 64
    most = _MAX_COMPARED_ARGS if name in _COMPARED else _MAX_CALL_ARGS
    if node.keywords or len(node.args) > most or not node.args:
        raise _Refused(f"calls {name or 'something'} with arguments torch does not write")
    if any(isinstance(arg, ast.Starred) for arg in node.args):
        raise _Refused("unpacks arguments")
    if name in _POWERS and len(node.args) == 2:
        base, exponent = _bits(node.args[0]), _exponent(node.args[1])
        return base + exponent if name == "LShift" else base * exponent
    if name in _MULTIPLICATIVE:
        return sum(_bits(arg) for arg in node.args)
    if name in _ADDITIVE:
        return max(_bits(arg) for arg in node.args) + 1
    raise _Refused(f"calls {name[:40] or 'something'!r}")


def _is_flag(keyword: ast.keyword) -> bool:
    """An assumption such as ``positive=True``."""
    value = keyword.value
    return keyword.arg is not None and isinstance(value, ast.Constant) and type(value.value) is bool


def _float_value(node: ast.Call) -> float:
    """The value of ``Float('0.5', precision=53)``; `_Refused` for any other form."""
    text = node.args[0] if len(node.args) == 1 else None
    precision = [k.value for k in node.keywords if k.arg == "precision"]
    if (
        isinstance(text, ast.Constant)
        and isinstance(text.value, str)
        and _FLOAT_TEXT.fullmatch(text.value)
        and len(precision) == len(node.keywords) <= 1
        and all(
            isinstance(p, ast.Constant)
            and type(p.value) is int
            and 0 < p.value <= _MAX_FLOAT_PRECISION
            for p in precision
        )
    ):
        return float(text.value)
    raise _Refused("writes a Float torch does not write")


def _exponent(node: ast.AST) -> int:
    """A small number (an exponent, a shift), as srepr or str writes one: ``2``, ``-2``,
    ``Integer(2)``, ``Rational(1, 2)``, ``1/2``, ``Float('0.5', precision=53)``."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return _exponent(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return max(_exponent(node.left), _exponent(node.right))
    if (
        isinstance(node, ast.Call)
        and _name(node) in ("Integer", "Rational")
        and not node.keywords
        and 1 <= len(node.args) <= 2
    ):
        return max(_exponent(arg) for arg in node.args)
    value: Any = node.value if isinstance(node, ast.Constant) else None
    if isinstance(node, ast.Call) and _name(node) == "Float":
        value = _float_value(node)
    if isinstance(value, int | float) and type(value) is not bool and abs(value) <= _MAX_EXPONENT:
        return max(math.ceil(abs(value)), 1)
    raise _Refused(f"has an exponent that is not a number up to {_MAX_EXPONENT}")


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size:,} bytes"
