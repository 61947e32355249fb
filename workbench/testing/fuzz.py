"""Fuzz targets for the loaders and input checking, shared by tests and ``benchmarks/fuzz_long.py``.

Each target takes bytes (or a value) an attacker or a careless user could supply and
must end in a `Model`, outputs, or a `WorkbenchError`; anything else (another exception,
a crash, a marker file written) is a bug. The targets count the cases they ran.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError

#: cases run per target in this process
CASES: Counter[str] = Counter()

#: entry names a .pt2 archive may hold (so random archives reach torch's reader)
PT2_NAMES = (
    "archive_format",
    "archive_version",
    "byteorder",
    ".data/version",
    "models/model.json",
    "data/sample_inputs/model.pt",
    "data/weights/model_weights_config.json",
    "data/weights/weight_0",
    "data/constants/model_constants_config.json",
    "extra/module_info.json",
)


@cache
def sample_onnx() -> bytes:
    """A real, trained sample model's ONNX bytes (the seed for mutations)."""
    from workbench.loaders import samples

    return samples.load("digits-mlp").onnx_bytes


@cache
def sample_pt2() -> bytes:
    """A small real ``torch.export`` archive (the seed for mutations)."""
    import torch

    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(module, (torch.rand(2, 4),)), buffer)
    return buffer.getvalue()


def mutate(seed: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """``seed`` with each ``(position, delete, insert)`` edit applied in turn."""
    data = bytearray(seed)
    for position, delete, insert in edits:
        at = position % (len(data) + 1)
        data[at : at + delete] = insert
    return bytes(data)


def archive(entries: list[tuple[str, bytes]], root: str = "model") -> bytes:
    """A zip archive of ``entries`` under ``root/`` (the layout torch writes)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zipped, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # repeated names are part of the attack
        for name, data in entries:
            zipped.writestr(f"{root}/{name}" if root else name, data)
    return out.getvalue()


def load_bytes(data: bytes, suffix: str, folder: Path) -> Any:
    """Load ``data`` as a file with ``suffix``, untrusted; None when refused cleanly."""
    from workbench.loaders import load

    CASES[f"load{suffix}"] += 1
    path = folder / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        return load(path)
    except WorkbenchError:
        return None


def run_inputs(session: Any, inputs: Any) -> list[np.ndarray] | None:
    """``session.run(inputs)``; None when refused with a `WorkbenchError`."""
    CASES["session.run"] += 1
    try:
        return list(session.run(inputs))
    except WorkbenchError:
        return None
