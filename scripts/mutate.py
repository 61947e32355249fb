"""A small mutation check, run by hand outside CI: do the tests notice a wrong operator?

For each target module, every mutation site is listed (a comparison, boolean, arithmetic
or ``not`` operator, a True/False or number constant), a seeded sample of them is taken,
and for each one the module is rewritten with that single change and its tests are run:
a failing run *kills* the mutant, a passing one lets it *survive* (a behaviour no test
pins down, or an equivalent change). Results are printed as a table and written as JSON.

It works on a snapshot of ``HEAD`` (``git archive``) in a temporary folder, never on the
working tree, so it can run next to other work. Tests that already fail on the snapshot
are deselected first, so they cannot kill mutants. ``docs/testing.md`` records the last
run and what was done about the survivors.

    python scripts/mutate.py [--per-module 8] [--seed 0] [--timeout 600] [--only sweep]
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: module -> the tests that should notice a change in it
TARGETS = {
    "workbench/evaluation/sweep.py": ["tests/evaluation/test_sweep.py"],
    "workbench/optimize/sensitivity.py": ["tests/optimize/test_sensitivity.py"],
    "workbench/optimize/explain.py": [
        "tests/optimize/test_explain.py",
        "tests/profiling/test_compare.py",
    ],
    "workbench/profiling/layers.py": [
        "tests/profiling/test_layers.py",
        "tests/profiling/test_attribution.py",
    ],
}
_SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.And: ast.Or, ast.Or: ast.And,
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
}  # fmt: skip


@dataclass
class Mutant:
    """One single-site change: where, what, and what the tests made of it."""

    module: str
    index: int
    line: int
    change: str
    outcome: str = ""
    seconds: float = 0.0


class _Mutator(ast.NodeTransformer):
    """Counts mutation sites in visiting order; rewrites the ``target``-th (if any)."""

    def __init__(self, target: int = -1) -> None:
        self.target, self.count = target, 0
        self.sites: list[tuple[int, str]] = []

    def _site(self, node: ast.AST, change: str) -> bool:
        self.sites.append((getattr(node, "lineno", 0), change))
        self.count += 1
        return self.count - 1 == self.target

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        # annotations are not behaviour: only defaults, decorators and the body are mutated
        node.args.defaults = [self.visit(d) for d in node.args.defaults]
        node.args.kw_defaults = [d if d is None else self.visit(d) for d in node.args.kw_defaults]
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.body = [self.visit(statement) for statement in node.body]
        return node

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        return self.visit_FunctionDef(node)  # type: ignore[arg-type]

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        for i, op in enumerate(node.ops):
            swap = _SWAPS.get(type(op))
            if swap and self._site(node, f"{type(op).__name__} -> {swap.__name__}"):
                node.ops[i] = swap()
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        swap = _SWAPS[type(node.op)]
        if self._site(node, f"{type(node.op).__name__} -> {swap.__name__}"):
            node.op = swap()
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        swap = _SWAPS.get(type(node.op))
        if swap and self._site(node, f"{type(node.op).__name__} -> {swap.__name__}"):
            node.op = swap()
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and self._site(node, "drop `not`"):
            return node.operand
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if isinstance(value, bool):
            if self._site(node, f"{value} -> {not value}"):
                return ast.copy_location(ast.Constant(not value), node)
        elif isinstance(value, int | float) and self._site(node, f"{value!r} -> {value + 1!r}"):
            return ast.copy_location(ast.Constant(value + 1), node)
        return node


def sites(source: str) -> list[tuple[int, str]]:
    """(line, change) of every mutation site of a module, in the order `mutated` counts them."""
    finder = _Mutator()
    finder.visit(ast.parse(source))
    return finder.sites


def mutated(source: str, index: int) -> str:
    """``source`` with its ``index``-th mutation site changed."""
    tree = _Mutator(index).visit(copy.deepcopy(ast.parse(source)))
    return ast.unparse(ast.fix_missing_locations(tree))


def run_tests(repo: Path, tests: list[str], deselect: list[str], timeout: float) -> tuple[int, str]:
    """Exit status and output of pytest in ``repo`` (124 on timeout)."""
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    command += [arg for test in deselect for arg in ("--deselect", test)]
    try:
        done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "timeout"
    return done.returncode, done.stdout + done.stderr


def failing_already(repo: Path, tests: list[str], timeout: float) -> list[str]:
    """Node ids of the tests that fail on the unmutated snapshot."""
    command = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=timeout)
    return re.findall(r"^FAILED (\S+)", done.stdout, flags=re.MULTILINE)


def snapshot(folder: Path) -> Path:
    """``HEAD`` extracted into ``folder/repo``."""
    repo = folder / "repo"
    repo.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive.stdout, check=True)
    return repo


def check_module(
    repo: Path, module: str, per_module: int, seed: int, timeout: float
) -> tuple[list[Mutant], int, list[str]]:
    """Sampled mutants of ``module`` with their outcomes, the number of sites, deselected tests."""
    path = repo / module
    original = path.read_text()
    found = sites(original)
    chosen = sorted(random.Random(seed).sample(range(len(found)), min(per_module, len(found))))
    tests = TARGETS[module]
    deselect = failing_already(repo, tests, timeout * 2)
    results = []
    try:
        for index in chosen:
            mutant = Mutant(module, index, *found[index])
            path.write_text(mutated(original, index))
            start = time.perf_counter()
            code, _ = run_tests(repo, tests, deselect, timeout)
            mutant.seconds = round(time.perf_counter() - start, 1)
            mutant.outcome = {0: "survived", 124: "timeout (killed)"}.get(code, "killed")
            print(f"{module}:{mutant.line} {mutant.change}: {mutant.outcome}", flush=True)
            results.append(mutant)
    finally:
        path.write_text(original)
    return results, len(found), deselect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-module", type=int, default=8, help="mutants sampled per module")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per test run")
    parser.add_argument("--only", default="", help="modules whose path contains this")
    parser.add_argument("--out", type=Path, default=Path("mutation-results.json"))
    args = parser.parse_args()
    report: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wb-mutate-") as folder:
        repo = snapshot(Path(folder))
        for module in [m for m in TARGETS if args.only in m]:
            mutants, total, deselected = check_module(
                repo, module, args.per_module, args.seed, args.timeout
            )
            killed = sum(m.outcome != "survived" for m in mutants)
            report.append(
                {
                    "module": module,
                    "sites": total,
                    "sampled": len(mutants),
                    "killed": killed,
                    "survived": len(mutants) - killed,
                    "deselected_failing_tests": deselected,
                    "mutants": [asdict(m) for m in mutants],
                }
            )
    args.out.write_text(json.dumps(report, indent=1))
    print("\n| module | sites | sampled | killed | survived |\n|---|---|---|---|---|")
    for row in report:
        print(
            f"| {row['module']} | {row['sites']} | {row['sampled']} | {row['killed']} | "
            f"{row['survived']} |"
        )
    for row in report:
        for m in row["mutants"]:
            if m["outcome"] == "survived":
                print(f"survivor: {m['module']}:{m['line']} {m['change']}")


if __name__ == "__main__":
    main()
