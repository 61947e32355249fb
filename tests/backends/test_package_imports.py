"""No import circle inside a backend package or a plugin package under extensions/.

tests/test_architecture.py checks the imports that run. Here the imports under
``if TYPE_CHECKING:`` count too: a per-layer or memory module that names its session's
class in its annotations depends on that session as much as one that imports it. Such a
module takes the session through a small protocol instead, and only the session imports
its helpers (one direction).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: every package whose modules must not import one another in a circle
PACKAGES = sorted(
    [p for p in (ROOT / "workbench" / "backends").iterdir() if (p / "__init__.py").is_file()]
    + [
        init.parent
        for init in (ROOT / "extensions").glob("*/*/__init__.py")
        if init.parent.parent.name != "build"
    ]
)


def _module(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _base(package: Path) -> Path:
    """Where the package's dotted names start: the repository for ``workbench.backends.*``,
    the plugin's folder for a plugin (``wb_openvino``)."""
    return ROOT if package.parent.name == "backends" else package.parent


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Modules of ``known`` that ``source`` imports anywhere: in functions and under
    ``TYPE_CHECKING`` too, each resolved to the deepest known module."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
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
            # a submodule importing its own package (re-exports) is no circle
            if target and target != module and not module.startswith(target + "."):
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (type-only imports included)."""
    paths = {_module(p, _base(package)): p for p in package.rglob("*.py")}
    known = set(paths)
    return {
        module: imports_of(path.read_text(), module, path.name == "__init__.py", known)
        for module, path in paths.items()
    }


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_circle_in_the_package(package: Path) -> None:
    assert cycles(package_graph(package)) == []


def test_the_plugins_are_checked() -> None:
    assert {"wb_openvino", "wb_reference"} <= {p.name for p in PACKAGES}


def test_a_type_only_import_closes_a_circle() -> None:
    """What the check exists for: a helper naming its session's class for annotations."""
    known = {"pkg", "pkg.session", "pkg.layers"}
    layers = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.session import S\n"
    session = "def run_layers():\n    from pkg.layers import timings\n"
    graph = {
        "pkg": set(),
        "pkg.layers": imports_of(layers, "pkg.layers", False, known),
        "pkg.session": imports_of(session, "pkg.session", False, known),
    }
    assert cycles(graph) == [["pkg.layers", "pkg.session"]]
