"""IPython magics: ``%load_ext workbench``, then profile from a line or a cell.

``%wbprofile digits-cnn --backend onnxruntime`` profiles a sample or a model file;
``%%wbprofile --batch-size 8`` profiles the model the cell's last expression returns;
``--compare torch`` profiles on a second backend too and shows the layer-by-layer
comparison; ``%wbdevices`` shows the backends and devices of this machine.

Example:
    >>> %load_ext workbench
    >>> %wbprofile digits-cnn --backend onnxruntime --batch-size 32
"""

from __future__ import annotations

import argparse
import ast
import shlex
from typing import Any

from workbench.errors import WorkbenchError

__all__ = ["load_ipython_extension", "profile_magic", "run_profile"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="%wbprofile", add_help=False, exit_on_error=False)
    parser.add_argument("model", nargs="?", help="a sample name or a model file")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--compare", default=None, help="a second backend to compare with")
    parser.add_argument("--no-layers", action="store_true", help="end to end only")
    return parser


def _arguments(line: str) -> argparse.Namespace:
    try:
        return _parser().parse_args(shlex.split(line))
    except (argparse.ArgumentError, ValueError) as exc:
        usage = _parser().format_usage().strip()
        raise WorkbenchError(f"%wbprofile: {exc}; {usage}") from None


def run_profile(model: Any, line: str) -> Any:
    """Profile ``model`` (a `Model`, module, sample name or path) as ``line``'s options say.

    Returns:
        The `Profile`, or with ``--compare`` the `Comparison` of both backends.
    """
    from workbench.loaders import load
    from workbench.profiling.compare import compare
    from workbench.profiling.run import profile

    args = _arguments(line)
    if args.compare and args.no_layers:
        raise WorkbenchError("%wbprofile: --compare aligns layers; drop --no-layers")
    if isinstance(model, str):
        model = load(model)  # a sample name or a path, loaded once for both backends
    backends = [args.backend] + ([args.compare] if args.compare else [])
    profiles = [
        profile(
            model,
            backend=backend,
            device=args.device,
            batch_size=args.batch_size,
            budget_s=args.budget,
            layers=not args.no_layers,
        )
        for backend in backends
    ]
    return compare(profiles) if args.compare else profiles[0]


def profile_magic(line: str, cell: str | None = None, shell: Any = None) -> Any:
    """``%wbprofile MODEL [options]`` or ``%%wbprofile [options]`` over a cell.

    In the cell form, the cell runs in the notebook's namespace and its last expression
    is the model to profile.
    """
    if cell is None:
        model = _arguments(line).model
        if not model:
            raise WorkbenchError("%wbprofile: name a sample or a model file, e.g. digits-cnn")
        return run_profile(model, line)
    model = _run_cell(cell, shell)
    if model is None:
        raise WorkbenchError(
            "%%wbprofile: the cell's last line must be an expression giving the model"
        )
    return run_profile(model, line)


def _run_cell(cell: str, shell: Any) -> Any:
    """Run ``cell`` in the user's namespace; the value of its last expression, or None."""
    tree = ast.parse(cell)
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        tree.body.pop()
    else:
        last = None
    namespace = shell.user_ns
    exec(compile(tree, "<%%wbprofile>", "exec"), namespace)  # the user's own cell
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), "<%%wbprofile>", "eval"), namespace)


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%wbprofile``, ``%%wbprofile`` and ``%wbdevices`` (``%load_ext workbench``)."""
    from workbench.machine import devices

    def wbprofile(line: str, cell: str | None = None) -> Any:
        return profile_magic(line, cell, ipython)

    ipython.register_magic_function(wbprofile, "line_cell", "wbprofile")
    ipython.register_magic_function(wbprofile, "line_cell", "wb_profile")
    ipython.register_magic_function(lambda line: devices(), "line", "wbdevices")
