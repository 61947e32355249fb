"""Hostile model files for tests: each writes a marker file if any of its code runs.

Built at test time (never committed), each one attacks one way a loader could run code:
a pickle torch would retry without ``weights_only``, a graph that calls Python, a shape
expression ``sympy`` would ``eval``, a TorchScript ``__setstate__`` and a plain pickle.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["HOSTILE_FILES", "build"]


class _Payload:
    """Pickles to a call of ``exec`` that writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.code = f"open({str(marker)!r}, 'w').write('ran')"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (self.code,))


def _pickle(marker: Path) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(_Payload(marker), buffer)
    return buffer.getvalue()


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
    evil = _pickle(marker)
    return _rewrite(_exported(), lambda n, d: evil if n.startswith("data/sample_inputs/") else d)


def _pt2_pickled_weight(marker: Path) -> bytes:
    evil = _pickle(marker)

    def change(name: str, data: bytes) -> bytes:
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        return evil if name == "data/weights/weight_0" else data

    return _rewrite(_exported(), change)


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


#: file name -> builder of its bytes (given the marker path it must never create)
HOSTILE_FILES: dict[str, Callable[[Path], bytes]] = {
    "sample_inputs.pt2": _pt2_sample_inputs,
    "pickled_weight.pt2": _pt2_pickled_weight,
    "shape_expression.pt2": _pt2_shape_expression,
    "setstate.pt": _torchscript,
    "setstate.ts": _torchscript,
    "plain_pickle.pt": _pickle,
    "plain_pickle.pth": _pickle,
}


def build(name: str, folder: Path, marker: Path) -> Path:
    """Write the hostile file ``name`` (a key of `HOSTILE_FILES`) into ``folder``."""
    path = folder / name
    path.write_bytes(HOSTILE_FILES[name](marker))
    return path
