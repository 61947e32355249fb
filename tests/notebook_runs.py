"""Executing a guided notebook top to bottom as a person would (nbclient, a fresh kernel, a
throw-away results store), as a job for the background lane."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import background_lane

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def execute(path: Path) -> Any:
    """The notebook at ``path`` with its outputs, run in a fresh kernel in a temporary folder."""
    import nbclient
    import nbformat

    folder = Path(tempfile.mkdtemp(prefix=f"wb-{path.stem}-"))
    try:
        notebook = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": folder}}
        )
        # ipykernel forwards what C code writes on stderr (a library's warning) to the
        # notebook, except under pytest (PYTEST_CURRENT_TEST): the kernel runs as a person's
        # would; the results store stays out of the user's home
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        # its own event loop, closed at the end (nbclient's sync wrapper would leave one open
        # in this thread, with its sockets)
        store = {"WORKBENCH_STORE": str(folder / "runs.sqlite")}
        asyncio.run(client.async_execute(env={**env, **store}))
        return notebook
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def queued(path: Path) -> Any:
    """The future of `execute` (path), queued on the background lane if it is not yet."""
    return background_lane.queue(f"notebook {path.stem}", lambda: execute(path))
