"""Fuzz targets for the loaders and input checking, shared by tests and ``benchmarks/fuzz_long.py``.

Each target takes bytes (or a value) an attacker or a careless user could supply and
must end in a `Model`, outputs, or a `WorkbenchError`; anything else (another exception,
a crash, a marker file written, a load that never returns) is a bug. The targets count
the cases they ran.

Besides byte mutations, `mutate_pt2` edits a ``.pt2`` archive the way an attacker would:
its payload tables (paths absolute, ``..``, listed twice, raw or pickled, sizes and
strides), payloads (a pickle that writes a marker), shape expressions, graph targets,
symbol ranges, and compression (entries deflated or inflating to megabytes).
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
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
def sample_pt2(dynamic: bool = False) -> bytes:
    """A small real ``torch.export`` archive (the seed for mutations).

    Args:
        dynamic: export a symbolic batch dimension, so the program holds shape expressions.
    """
    import torch

    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    shapes = ({0: torch.export.Dim("batch", min=2)},) if dynamic else None
    buffer = io.BytesIO()
    torch.export.save(
        torch.export.export(module, (torch.rand(2, 4),), dynamic_shapes=shapes), buffer
    )
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


#: payload names a structured edit writes into a payload table: torch's own, names that
#: leave the folder (absolute, ``..``), names of other folders' entries, code prefixes
PT2_PATHS = (
    "weight_0",
    "weight_1",
    "weight_7",
    "tensor_0",
    "tensor_7",
    "/evil",
    "../../evil",
    "../weights/weight_0",
    "weight_0/../weight_1",
    "data/weights/weight_0",
    "custom_obj_0",
    "opaque_obj_0",
    "",
)

#: payload content that `mutate_pt2` replaces by a pickle that writes the marker file
MARKER_PICKLE = b"<marker pickle>"

#: what a structured edit may do to a .pt2 archive (the first field of each edit)
PT2_EDITS = (
    "item",  # change a field of a payload-table item
    "add_item",  # list a marker pickle under new names: raw, pickled or both
    "payload",  # write an entry of a payloads folder
    "expr",  # replace a shape expression
    "target",  # replace a graph node's target
    "range",  # add a range for a symbol name
    "rename",  # rename a weight, node or input everywhere ({open} writes the marker)
    "deflate",  # store an entry deflated
    "inflate",  # an entry that inflates to megabytes of zeros
    "drop",  # remove an entry
    "repeat",  # list an entry twice in the zip directory
)


def mutate_pt2(seed: bytes, edits: Sequence[tuple[str, int, Any]], marker: Path) -> bytes:
    """``seed`` (a ``.pt2`` archive) with structured ``edits`` applied in turn.

    Args:
        seed: a ``torch.export`` archive, e.g. `sample_pt2`.
        edits: ``(kind, index, value)`` each: ``kind`` one of `PT2_EDITS`, ``index`` picks
            the item, entry or expression (modulo their count), ``value`` what to write.
        marker: the file a pickled payload writes when anything unpickles it.

    Returns:
        The archive's bytes, entries under their original root folder.
    """
    with zipfile.ZipFile(io.BytesIO(seed)) as archive:
        root = archive.namelist()[0].split("/", 1)[0]
        entries = [(i.filename.split("/", 1)[1], archive.read(i)) for i in archive.infolist()]
    deflated: set[int] = set()
    for kind, index, value in edits:
        _PT2_EDITORS[kind](entries, index, value, marker, deflated)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zipped, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # repeated names are part of the attack
        for position, (name, data) in enumerate(entries):
            method = zipfile.ZIP_DEFLATED if position in deflated else zipfile.ZIP_STORED
            zipped.writestr(f"{root}/{name}", data, method)
    return out.getvalue()


_Entries = list[tuple[str, bytes]]


def _edit_json(entries: _Entries, suffix: str, change: Callable[[Any], None]) -> None:
    for position, (name, data) in enumerate(entries):
        if name.endswith(suffix):
            try:
                document = json.loads(data)
            except ValueError:  # an earlier edit replaced it
                continue
            change(document)
            entries[position] = (name, json.dumps(document).encode())


def _table(index: int) -> str:
    return ("weights", "constants")[index % 2]


def _edit_item(entries: _Entries, index: int, value: Any, marker: Path, _: set[int]) -> None:
    field, new = value

    def change(config: Any) -> None:
        items = list(config["config"].values())
        if items:
            items[index % len(items)][field] = new

    _edit_json(entries, f"{_table(index)}_config.json", change)


def _add_item(entries: _Entries, index: int, value: Any, marker: Path, _: set[int]) -> None:
    """List a marker pickle under new names: raw (bytes), pickled, or both at once."""
    from workbench.testing.hostile import marker_pickle, payload_item

    path_name, mode = value
    payload = marker_pickle(marker)
    items = {"raw": [False], "pickled": [True], "both": [False, True]}[mode]

    def change(config: Any) -> None:
        for use_pickle in items:
            name = f"added_{len(config['config'])}"
            config["config"][name] = payload_item(path_name, len(payload), use_pickle)

    _edit_json(entries, f"{_table(index)}_config.json", change)
    _write_payload(entries, index, (path_name, payload), marker, _)


def _write_payload(entries: _Entries, index: int, value: Any, marker: Path, _: set[int]) -> None:
    from workbench.testing.hostile import marker_pickle

    path_name, content = value
    data = marker_pickle(marker) if content == MARKER_PICKLE else content
    folder = f"data/{_table(index)}/"
    # the name torch reads: os.path.join(folder, path_name)
    name = path_name if path_name.startswith("/") else folder + path_name
    entries[:] = [(n, d) for n, d in entries if n != name] + [(name, data)]


def _edit_program(entries: _Entries, key: str, index: int, new: str) -> None:
    def change(program: Any) -> None:
        found = [node for node in _dicts(program) if key in node]
        if found:
            found[index % len(found)][key] = new

    _edit_json(entries, "models/model.json", change)


def _dicts(node: Any) -> list[dict[str, Any]]:
    found, stack = [], [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _add_range(entries: _Entries, index: int, value: Any, marker: Path, _: set[int]) -> None:
    bounds = {"min_val": 0, "max_val": index}
    _edit_json(
        entries,
        "models/model.json",
        lambda p: p.setdefault("range_constraints", {}).update({value: bounds}),
    )


def _inflate(entries: _Entries, index: int, value: Any, marker: Path, deflated: set[int]) -> None:
    position = index % len(entries)
    entries[position] = (entries[position][0], bytes(value))
    deflated.add(position)


def _rename(entries: _Entries, index: int, value: Any, marker: Path, _: set[int]) -> None:
    old, new = value
    opener = f'open(bytes({list(str(marker).encode())}), "w")'  # no dots: torch splits on them
    new = json.dumps(new.replace("{open}", opener)).encode()
    for position, (name, data) in enumerate(entries):
        if name.endswith(".json"):
            entries[position] = (name, data.replace(json.dumps(old).encode(), new))


def _drop(entries: _Entries, index: int, value: Any, marker: Path, _: set[int]) -> None:
    if len(entries) > 1:
        del entries[index % len(entries)]


_PT2_EDITORS: dict[str, Callable[[_Entries, int, Any, Path, set[int]], None]] = {
    "item": _edit_item,
    "add_item": _add_item,
    "payload": _write_payload,
    "expr": lambda e, i, v, m, d: _edit_program(e, "expr_str", i, v),
    "target": lambda e, i, v, m, d: _edit_program(e, "target", i, v),
    "range": _add_range,
    "rename": _rename,
    "deflate": lambda e, i, v, m, d: d.add(i % len(e)),
    "inflate": _inflate,
    "drop": _drop,
    "repeat": lambda e, i, v, m, d: e.append(e[i % len(e)]),
}


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
