"""``workbench report MODEL_OR_RUN --out report.html``: a report from the command line.

Kept apart from `workbench.reports` so the ``workbench`` command starts without importing
plotly and pandas; they load when the command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.profiling.profile import Profile


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report`` to the ``workbench`` command line."""
    from workbench.argtypes import add_model_options, batch_int, duration_s

    p = subparsers.add_parser(
        "report", help="write a self-contained HTML report of a model, a stored run or a sweep"
    )
    p.add_argument(
        "target",
        metavar="MODEL_OR_RUN",
        help="a stored run id or sweep id (wb.runs()), a JSON file from `workbench profile "
        "--json` or `workbench sweep --json`, or a model file / sample name to profile now",
    )
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--store", default=None, help="results database (default $WORKBENCH_STORE)")
    p.add_argument("--backend", default="onnxruntime", help="backend when profiling a model")
    p.add_argument("--device", default="cpu", help="device when profiling a model")
    p.add_argument("--batch-size", type=batch_int, default=1, help="batch size (default 1)")
    p.add_argument("--budget", type=duration_s, default=1.0, help="timing budget in seconds")
    add_model_options(p)
    p.set_defaults(func=_report_command)


def _report_command(args: argparse.Namespace) -> int:
    subject = _resolve(args)
    from workbench.reports import report

    path = report(subject).save(args.out)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _resolve(args: argparse.Namespace) -> Any:
    """A Profile or sweep-table JSON file, a stored profile or sweep by id, else a model
    profiled now."""
    from workbench.errors import ModelLoadError
    from workbench.evaluation.sweep import load_sweep
    from workbench.store import Store

    target = str(args.target)
    if target.endswith(".json") and Path(target).is_file():
        return _from_json_file(Path(target))
    store = Store(args.store)
    try:
        return store.load_profile(target)
    except KeyError:
        pass
    try:
        return load_sweep(target, store)
    except KeyError:
        pass
    try:
        return _profile_now(args)
    except ModelLoadError as exc:
        raise ModelLoadError(
            f"{target} is no run or sweep id in {store.path} and no Profile JSON file; "
            f"as a model: {exc}"
        ) from exc


def _from_json_file(path: Path) -> Any:
    """A Profile (``workbench profile --json``) or a sweep table (``workbench sweep --json``).

    Raises:
        InputError: the file is neither (one line saying what is accepted).
    """
    from workbench.errors import InputError
    from workbench.evaluation.sweep import table_from_rows
    from workbench.profiling.profile import Profile

    accepted = "a Profile JSON (workbench profile --json) or a sweep table (workbench sweep --json)"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not readable JSON ({exc}); give {accepted}") from exc
    if isinstance(data, dict) and isinstance(data.get("rows"), list) and "metric" in data:
        try:
            table = table_from_rows(
                data["rows"],
                str(data["metric"]),
                bool(data.get("higher_is_better", True)),
                str(data.get("sweep_id") or path.stem),
                dict(data.get("meta") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path} is not {accepted}: its rows are malformed ({exc})") from exc
        return table
    if isinstance(data, dict) and "latency_ms" in data:
        return Profile.from_dict(data)
    raise InputError(f"{path} is not {accepted}")


def _profile_now(args: argparse.Namespace) -> Profile:
    from workbench.loaders import load
    from workbench.loaders.trust import max_bytes_of
    from workbench.profiling.run import profile

    model = load(args.target, trust=args.trust, max_bytes=max_bytes_of(args.max_size))
    return profile(
        model,
        backend=args.backend,
        device=args.device,
        batch_size=args.batch_size,
        budget_s=args.budget,
    )
