"""Shared helpers for benchmark scripts: machine description, load, and result files."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """Machine, library versions, date and the load average at the time of writing."""
    from workbench.machine import describe_machine, library_versions

    return {
        "machine": describe_machine(),
        "versions": library_versions(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average": list(os.getloadavg()),
    }


def write_results(name: str, data: dict[str, Any], table: str, quick: bool = False) -> None:
    """Write ``results/<name>.json`` and a Markdown ``results/<name>.md`` with ``table``.

    A ``quick`` run (a smoke test of the script, not a measurement) goes to
    ``results/<name>.quick.*`` so it never replaces real results.
    """
    RESULTS.mkdir(exist_ok=True)
    meta = machine()
    stem = f"{name}.quick" if quick else name
    load = ", ".join(f"{x:.1f}" for x in meta["load_average"])
    header = (
        f"{meta['date']} on {meta['machine']}\n\nLoad average (1, 5, 15 min) when written: {load}"
    )
    if quick:
        header += "\n\n**Quick smoke run (`--quick`): tiny budgets, not a measurement.**"
    (RESULTS / f"{stem}.json").write_text(json.dumps({**meta, **data}, indent=1))
    (RESULTS / f"{stem}.md").write_text(f"# {name}\n\n{header}\n\n{table}\n")
