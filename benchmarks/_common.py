"""Shared helpers for benchmark scripts: machine description and result files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    from workbench.machine import describe_machine, library_versions

    return {
        "machine": describe_machine(),
        "versions": library_versions(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def write_results(name: str, data: dict[str, Any], table: str) -> None:
    """Write ``results/<name>.json`` and a Markdown ``results/<name>.md`` with ``table``."""
    RESULTS.mkdir(exist_ok=True)
    meta = machine()
    (RESULTS / f"{name}.json").write_text(json.dumps({**meta, **data}, indent=1))
    (RESULTS / f"{name}.md").write_text(
        f"# {name}\n\n{meta['date']} on {meta['machine']}\n\n{table}\n"
    )
