"""Hostile model files for tests: each writes a marker file if any of its code runs.

Built at test time (never committed), each one attacks one way a loader could run code or
never return: a pickle torch would retry without ``weights_only``, pickled weights and
constants that torch unpickles with full pickle (listed twice, once raw and once pickled,
or named by an absolute or ``..`` path outside their folder), a graph that calls Python, a
shape expression ``sympy`` would ``eval`` or never finish computing, a symbol index torch
counts up to, weight and argument names that break out of the code torch generates for
the program,
an entry that inflates a thousand times, a TorchScript ``__setstate__`` and a plain pickle.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["HOSTILE_FILES", "build", "marker_pickle", "payload_item"]


class _Payload:
    """Pickles to a call of ``exec`` that writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.code = f"open({str(marker)!r}, 'w').write('ran')"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (self.code,))


def marker_pickle(marker: Path) -> bytes:
    """A ``torch.save`` file whose unpickling writes ``marker``."""
    import torch

    buffer = io.BytesIO()
    torch.save(_Payload(marker), buffer)
    return buffer.getvalue()


@cache
def _exported(dynamic: bool = False) -> bytes:
    import torch

    module = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    example = (torch.rand(4, 8),)
    shapes = ({0: torch.export.Dim("batch", min=2)},) if dynamic else None
    program = torch.export.export(module, example, dynamic_shapes=shapes)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def _rewrite(archive: bytes, change: Callable[[str, bytes], bytes]) -> bytes:
    """A copy of a zip archive with each entry passed through ``change(name, data)``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            local = info.filename.split("/", 1)[1]
            dst.writestr(info.filename, change(local, src.read(info)))
    return out.getvalue()


def _pt2_sample_inputs(marker: Path) -> bytes:
    evil = marker_pickle(marker)
    return _rewrite(_exported(), lambda n, d: evil if n.startswith("data/sample_inputs/") else d)


def _pt2_pickled_weight(marker: Path) -> bytes:
    evil = marker_pickle(marker)

    def change(name: str, data: bytes) -> bytes:
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        return evil if name == "data/weights/weight_0" else data

    return _rewrite(_exported(), change)


def payload_item(path_name: str, size: int, use_pickle: bool = False) -> dict[str, Any]:
    """A payload-table item of ``path_name``: pickled, or ``size`` raw bytes (uint8)."""
    return {
        "path_name": path_name,
        "is_param": False,
        "use_pickle": use_pickle,
        "tensor_meta": {
            "dtype": 1,  # uint8: any length is a whole number of elements
            "sizes": [{"as_int": size}],
            "requires_grad": False,
            "device": {"type": "cpu", "index": None},
            "strides": [{"as_int": 1}],
            "storage_offset": {"as_int": 0},
            "layout": 7,
        },
    }


def _with_payload(kind: str, items: dict[str, dict[str, Any]], entries: dict[str, bytes]) -> bytes:
    """The sample program with ``items`` added to its ``kind`` payload table and ``entries``
    added to the archive (names relative to the root folder)."""
    table = f"data/{kind}/model_{kind}_config.json"

    def change(name: str, data: bytes) -> bytes:
        if name != table:
            return data
        config = json.loads(data)
        config["config"].update(items)
        return json.dumps(config).encode()

    archive = _rewrite(_exported(), change)
    return _add_entries(archive, entries)


def _add_entries(archive: bytes, entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO(archive)
    with zipfile.ZipFile(out, "a") as dst:
        for name, data in entries.items():
            dst.writestr(f"archive/{name}", data)
    return out.getvalue()


def _pt2_listed_twice(kind: str, folder_file: str) -> Callable[[Path], bytes]:
    """A payload listed once raw (as bytes, so any length reads) and once pickled."""

    def build(marker: Path) -> bytes:
        evil = marker_pickle(marker)
        pickled = payload_item(folder_file, len(evil), use_pickle=True)
        items = {"as_bytes": payload_item(folder_file, len(evil)), "evil": pickled}
        return _with_payload(kind, items, {f"data/{kind}/{folder_file}": evil})

    return build


def _pt2_weight_outside(path_name: str, entry: str) -> Callable[[Path], bytes]:
    """A pickled weight whose path leaves ``data/weights/`` (torch joins it with os.path)."""

    def build(marker: Path) -> bytes:
        evil = marker_pickle(marker)
        items = {"evil": payload_item(path_name, len(evil), use_pickle=True)}
        return _with_payload("weights", items, {entry: evil})

    return build


def _program_edit(edit: Callable[[dict[str, Any]], None], dynamic: bool = True) -> bytes:
    def change(name: str, data: bytes) -> bytes:
        if not name.startswith("models/"):
            return data
        program = json.loads(data)
        edit(program)
        return json.dumps(program).encode()

    return _rewrite(_exported(dynamic=dynamic), change)


def _pt2_power_tower(marker: Path) -> bytes:
    """A symbolic size ``10**10**10``: sympy computes it exactly and never returns."""

    def edit(program: dict[str, Any]) -> None:
        text = json.dumps(program).replace(
            "Symbol('s31', positive=True, integer=True)", "10**10**10 + s31"
        )
        program.clear()
        program.update(json.loads(text))

    return _program_edit(edit)


def _pt2_symbol_index(marker: Path) -> bytes:
    """A range for unbacked symbol ``u99999999999``: torch counts up to it one by one."""
    return _program_edit(
        lambda p: p["range_constraints"].update({"u99999999999": {"min_val": 0, "max_val": 9}})
    )


@cache
def _inflating() -> bytes:
    """A .pt2 whose weight entry is deflated from 64 MiB of zeros to 64 KiB (the program
    reads 128 bytes of it); a 1.5 MB file with a 1.5 GiB entry is the same attack, slower
    to build."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(_exported())) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename.endswith("/data/weights/weight_0"):
                dst.writestr(info.filename, bytes(2**26), zipfile.ZIP_DEFLATED)
            else:
                dst.writestr(info, src.read(info))
    return out.getvalue()


def _pt2_inflating(marker: Path) -> bytes:
    return _inflating()


def _pt2_module_path(marker: Path) -> bytes:
    """A weight whose name ends the string torch pastes it into: the forward torch
    generates for the program reads ``getattr(getattr(self, "0"), "training"); open(...)``."""
    opener = f'open(bytes({list(str(marker).encode())}), "w")'  # no dots: torch splits on them
    evil = f'0.training"); {opener}; ("'

    def change(name: str, data: bytes) -> bytes:
        if name.startswith("models/") or name.endswith("_weights_config.json"):
            return data.replace(b'"0.bias"', json.dumps(evil).encode())
        return data

    return _rewrite(_exported(), change)


def _pt2_argument_name(marker: Path) -> bytes:
    """A forward argument named ``x=open(...)``: torch pastes argument names into the
    ``def forward(self, ...)`` it generates and runs."""
    opener = f'open(bytes({list(str(marker).encode())}), "w")'

    def edit(program: dict[str, Any]) -> None:
        signature = program["graph_module"]["module_call_graph"][0]["signature"]
        signature["forward_arg_names"] = [f"x={opener}"]

    return _program_edit(edit, dynamic=False)


def pt2_python_call(marker: Path) -> bytes:
    """A ``.pt2`` whose graph calls ``torch.os.system`` (torch's verifier refuses it too)."""
    code = f"open({str(marker)!r}, 'w').write('ran')"

    def change(name: str, data: bytes) -> bytes:
        if not name.startswith("models/"):
            return data
        program = json.loads(data)
        node = program["graph_module"]["graph"]["nodes"][0]
        node["target"] = "torch.os.system"
        node["inputs"] = [{"name": "command", "arg": {"as_string": f'python -c "{code}"'}}]
        return json.dumps(program).encode()

    return _rewrite(_exported(), change)


def _pt2_shape_expression(marker: Path) -> bytes:
    code = f"open({str(marker)!r}, 'w').write('ran')"

    def change(name: str, data: bytes) -> bytes:
        if not name.startswith("models/"):
            return data
        text = data.decode()
        start = text.index('"expr_str": "') + len('"expr_str": "')
        end = text.index('"', start)
        return (text[:start] + json.dumps(f"exec({code!r}) or s0")[1:-1] + text[end:]).encode()

    return _rewrite(_exported(dynamic=True), change)


def _torchscript(marker: Path) -> bytes:
    import torch

    class FileWriter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.path = str(marker)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

        @torch.jit.export
        def __getstate__(self) -> tuple[str, bool]:
            return (self.path, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[str, bool]) -> None:
            self.path = state[0]
            # the result is used, so that TorchScript keeps the call
            self.training = (
                state[1] and torch.from_file(self.path, shared=True, size=16).numel() > 0
            )

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(FileWriter()), buffer)
    return buffer.getvalue()


def _legacy_tar(marker: Path) -> bytes:
    """torch's oldest save format: a tar whose members are pickles (each writes the marker)."""
    import pickle
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name in ("storages", "tensors", "pickle"):
            data = pickle.dumps(_Payload(marker))
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


#: file name -> builder of its bytes (given the marker path it must never create)
HOSTILE_FILES: dict[str, Callable[[Path], bytes]] = {
    "sample_inputs.pt2": _pt2_sample_inputs,
    "pickled_weight.pt2": _pt2_pickled_weight,
    "shape_expression.pt2": _pt2_shape_expression,
    "weight_listed_twice.pt2": _pt2_listed_twice("weights", "weight_9"),
    "constant_listed_twice.pt2": _pt2_listed_twice("constants", "tensor_9"),
    "weight_absolute_path.pt2": _pt2_weight_outside("/evil", "/evil"),
    "weight_dotdot_path.pt2": _pt2_weight_outside("../../evil", "data/weights/../../evil"),
    "power_tower.pt2": _pt2_power_tower,
    "symbol_index.pt2": _pt2_symbol_index,
    "module_path.pt2": _pt2_module_path,
    "argument_name.pt2": _pt2_argument_name,
    "inflating.pt2": _pt2_inflating,
    "setstate.pt": _torchscript,
    "setstate.ts": _torchscript,
    "legacy_tar.pt": _legacy_tar,
    "plain_pickle.pt": marker_pickle,
    "plain_pickle.pth": marker_pickle,
}


def build(name: str, folder: Path, marker: Path) -> Path:
    """Write the hostile file ``name`` (a key of `HOSTILE_FILES`) into ``folder``."""
    path = folder / name
    path.write_bytes(HOSTILE_FILES[name](marker))
    return path
