"""The import contract of docs/architecture.md: layers import one way, backends stay apart.

Imports inside functions count (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` do not (they never run). The layer table mirrors the diagram in
docs/architecture.md: a module may import from its own layer or any layer below it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"

#: lowest layer first; a module's layer is that of its first component under workbench/
LAYERS: list[set[str]] = [
    {"errors", "progress", "argtypes", "units"},
    {"model"},
    {"loaders", "data", "tolerances", "numerics"},
    {"backends"},
    {"machine"},
    {"profiling"},
    {"optimize", "evaluation", "store", "scenarios", "cluster", "planning"},
    {"viz", "reports"},
    {"dashboards", "notebook", "magics", "cli", "testing", "__init__"},
]
#: runtime packages under backends/ that must not import one another
BACKEND_PACKAGES = ("torch", "onnxruntime", "numba")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"
    for index, names in enumerate(LAYERS):
        if head in names:
            return index
    raise AssertionError(f"{module} is in no layer: add its top-level name to LAYERS")


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return skipped


def _imports(path: Path, known: set[str]) -> set[str]:
    """workbench modules imported by ``path``, resolved to the deepest known module."""
    return _imports_in(path.read_text(), _module_name(path), path.name == "__init__.py", known)


def _imports_in(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    tree = ast.parse(source)
    skipped = _type_checking_nodes(tree)
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = package[: len(package) - node.level + 1]
                base = ".".join([*prefix, *([node.module] if node.module else [])])
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module and target.startswith("workbench"):
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(paths)
    return {module: _imports(path, known) for module, path in paths.items()}


GRAPH = _graph()


def _is_ancestor_package(importer: str, target: str) -> bool:
    """A submodule importing its own package's __init__ (re-exports) is not a dependency loop."""
    return importer.startswith(target + ".")


def test_every_import_goes_down_the_layers() -> None:
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _layer(target) > _layer(module)
    )
    assert upward == []


def test_no_import_cycles() -> None:
    from tests.backends.test_package_imports import cycles

    graph = {m: {t for t in ts if not _is_ancestor_package(m, t)} for m, ts in GRAPH.items()}
    assert cycles(graph) == []


@pytest.mark.parametrize("runtime", BACKEND_PACKAGES)
def test_backend_packages_are_independent(runtime: str) -> None:
    own = f"workbench.backends.{runtime}"
    others = [f"workbench.backends.{name}" for name in BACKEND_PACKAGES if name != runtime]
    crossing = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if module == own or module.startswith(own + ".")
        for target in targets
        if any(target == other or target.startswith(other + ".") for other in others)
    )
    assert crossing == []


def test_the_checker_sees_imports_inside_functions() -> None:
    """The contract would be toothless if lazy imports were missed: check the parser itself."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import workbench.viz\n"
        "def f():\n    from ..dashboards import app\n"
    )
    known = {"workbench.viz", "workbench.dashboards", "workbench.dashboards.app"}
    found = _imports_in(source, "workbench.profiling.probe", False, known)
    assert found == {"workbench.dashboards", "workbench.dashboards.app"}


def test_a_bare_builtin_raise_is_rare_and_says_why_it_is_no_user_error() -> None:
    """A mistake a user can make is a `WorkbenchError` (one line saying what to do); a
    bare builtin is raised only where no user is addressed (a protocol such as a module's
    ``__getattr__``, an internal invariant), with a comment on or above it saying why."""
    import re

    bare = re.compile(
        r"^\s*raise (ValueError|TypeError|RuntimeError|KeyError|IndexError|"
        r"NotImplementedError|AttributeError|OSError|FileNotFoundError)\b"
    )
    found, unexplained = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if not bare.match(line):
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{number + 1}"
            found.append(where)
            commented_above = number > 0 and lines[number - 1].lstrip().startswith("#")
            if "#" not in line and not commented_above:
                unexplained.append(where)
    assert len(found) <= 3, f"bare builtin raises (a WorkbenchError subclass is due): {found}"
    assert unexplained == [], f"say in a comment why these are no user error: {unexplained}"


#: third-party private names workbench reaches on purpose, each for a reason it documents
#: where it does (a type for annotations, a zip reader's end-of-archive record, Panel and
#: Bokeh internals the served app configures)
THIRD_PARTY_PRIVATE = {"argparse", "zipfile", "Syncable", "server", "doc", "torch", "np", "sys"}


#: a NamedTuple's public methods, underscored only to keep out of its fields' way
NAMEDTUPLE_API = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})


def _private_reaches(path: Path) -> list[str]:
    """``_names`` of other modules that ``path`` imports or reaches through an attribute."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("workbench"):
            found += [
                f"{path.name}:{node.lineno} imports {node.module}.{alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            ]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not node.attr.startswith("_repr_")  # IPython's display protocol
            and node.attr not in NAMEDTUPLE_API
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            and not (isinstance(node.value, ast.Call) and ast.unparse(node.value) == "super()")
            and ast.unparse(node.value).split(".")[0] not in THIRD_PARTY_PRIVATE
        ):
            found.append(f"{path.name}:{node.lineno} reaches {ast.unparse(node)}")
    return found


def test_no_module_reaches_into_another_modules_private_names() -> None:
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _private_reaches(path)]
    assert found == []


def test_the_private_name_check_sees_imports_and_attributes() -> None:
    source = "from workbench.x import _y\n\ndef f(session):\n    return session._stage(1)\n"
    probe = PACKAGE.parent / "build" / "probe_private.py"
    probe.parent.mkdir(exist_ok=True)
    probe.write_text(source)
    try:
        assert [hit.split(" ", 1)[1] for hit in _private_reaches(probe)] == [
            "imports workbench.x._y",
            "reaches session._stage",
        ]
    finally:
        probe.unlink()


def test_figures_and_commands_are_packages() -> None:
    assert (PACKAGE / "viz" / "__init__.py").exists() and (PACKAGE / "cli" / "__init__.py").exists()
    assert sorted(p.name for p in PACKAGE.glob("viz_*.py")) == []
    assert sorted(p.name for p in PACKAGE.glob("cli_*.py")) == []


def test_docs_architecture_tree_names_every_room() -> None:
    """docs/architecture.md's tree stays the true picture: every package and module is named."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    tree = text.split("## The tree", 1)[1].split("```", 2)[1]
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", tree.replace("/", " ").replace(".py", " ")))
    rooms = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if p.is_dir()
    }
    rooms |= {
        p.stem
        for sub in ("profiling", "loaders", "viz", "cli", "scenarios")
        for p in (PACKAGE / sub).glob("*.py")
    }
    rooms -= {"__init__", "__main__", "__pycache__"}
    assert sorted(rooms - words) == []
