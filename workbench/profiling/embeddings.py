"""Embedding tables as layers: rows, width, table bytes, lookups and bytes touched per batch.

A lookup reads only the rows its ids name, so the bytes a table layer moves are its ids,
its output and the distinct rows touched (``unique_rows * width * itemsize``), not the
whole table (`workbench.profiling.cost` uses `touched_bytes` for that). A torch model's
tables are its ``nn.Embedding`` / ``nn.EmbeddingBag`` modules; an ONNX graph's are the
``Gather`` nodes reading a 2-D initializer (named by canonical layer). The ids are the
batch's own, so a Zipf batch (``model.example_inputs(ids="zipf")``) touches fewer rows
than a uniform one.

Example:
    >>> m = wb.samples.load("dlrm")
    >>> embedding_tables(m, m.example_inputs(2048, ids="zipf"))
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import onnx

    from workbench.model import Model

__all__ = [
    "TABLE_COLUMNS", "embedding_tables", "is_table", "table_columns", "table_flops",
    "touched_bytes", "untouched_bytes",
]  # fmt: skip

TABLE_COLUMNS = [
    "layer", "op_type", "rows", "width", "table_bytes", "lookups", "unique_rows",
    "bytes_touched",
]  # fmt: skip
_TABLE_MODULES = ("Embedding", "EmbeddingBag")


def is_table(module: Any) -> bool:
    """Whether a torch module is an embedding table (`nn.Embedding`, `nn.EmbeddingBag`)."""
    return type(module).__name__ in _TABLE_MODULES and hasattr(module, "weight")


def touched_bytes(ids: np.ndarray, width: int, itemsize: int) -> float:
    """Bytes of the distinct table rows that ``ids`` read."""
    return float(np.unique(np.asarray(ids)).size * width * itemsize)


def table_flops(module: Any, ids: Any) -> float:
    """FLOPs of a table: none for a lookup, one add per looked-up element for a bag
    (the multiply of per-sample weights is not counted)."""
    if type(module).__name__ != "EmbeddingBag":
        return 0.0
    return float(ids.numel() * module.embedding_dim)


def untouched_bytes(proto: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict[int, float]:
    """Per node index of a table ``Gather``: the table's bytes its ids do not read (what
    a node's byte count over all its inputs overstates)."""
    return {
        index: row["table_bytes"] - row["bytes_touched"]
        for index, row in zip(*_onnx_gathers(proto, inputs), strict=True)
        if not math.isnan(row["bytes_touched"])
    }


def embedding_tables(model: Model, inputs: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per embedding table of ``model`` at ``inputs``: `TABLE_COLUMNS`.

    ``lookups`` counts the ids the batch sends to the table, ``unique_rows`` the
    distinct rows among them, ``bytes_touched`` those rows' bytes (``table_bytes`` is
    the whole table). A torch model is read from one forward pass with hooks (removed
    afterwards); an ONNX model from one onnxruntime run that exposes the ids.
    """
    if model.module is not None:
        rows = _torch_tables(model, inputs)
    else:
        assert model.proto is not None
        rows = _onnx_tables(model.proto, inputs)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


#: the per-layer table's columns for table layers (`table_columns`), from `TABLE_COLUMNS`
LAYER_TABLE_COLUMNS = {
    "rows": "table_rows", "width": "table_width", "lookups": "lookups",
    "unique_rows": "unique_rows", "bytes_touched": "bytes_touched",
}  # fmt: skip


def table_columns(model: Model, inputs: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per-layer columns for a profile's table (column -> layer -> value), empty when the
    model has no embedding table (and then nothing runs)."""
    tables = embedding_tables(model, inputs)
    if tables.empty:
        return {}
    by_layer = tables.drop_duplicates("layer").set_index("layer")
    return {
        column: by_layer[source].astype(float).to_dict()
        for source, column in LAYER_TABLE_COLUMNS.items()
    }


def _torch_tables(model: Model, inputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    import torch

    from workbench.backends.torch.layers import module_paths

    module = model.module
    assert module is not None
    if not any(is_table(sub) for sub in module.modules()):  # no forward pass for nothing
        return []
    seen: dict[str, tuple[Any, np.ndarray]] = {}
    handles = []
    try:
        for path, sub in module_paths(module).items():
            if is_table(sub):

                def hook(m: Any, args: Any, out: Any, p: str = path) -> None:
                    seen.setdefault(p, (m, args[0].detach().cpu().numpy()))

                handles.append(sub.register_forward_hook(hook))
        with torch.inference_mode():
            module(*(torch.from_numpy(a) for a in inputs.values()))
    finally:
        for handle in handles:
            handle.remove()
    return [
        _row(path, type(sub).__name__, sub.weight.shape, sub.weight.element_size(), ids)
        for path, (sub, ids) in seen.items()
    ]


def _onnx_tables(proto: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    return _onnx_gathers(proto, inputs)[1]


def _onnx_gathers(
    proto: onnx.ModelProto, inputs: dict[str, np.ndarray]
) -> tuple[list[int], list[dict[str, Any]]]:
    """Node indices of the table Gathers and their rows."""
    from onnx import numpy_helper

    from workbench.loaders.onnx import canonical_layer_name

    weights = {init.name: init for init in proto.graph.initializer}
    gathers = [
        (i, node)
        for i, node in enumerate(proto.graph.node)
        if node.op_type == "Gather"
        and node.input[0] in weights
        and len(weights[node.input[0]].dims) == 2
    ]
    if not gathers:
        return [], []
    ids = _values(proto, inputs, [node.input[1] for _, node in gathers])
    out = []
    for i, node in gathers:
        table = weights[node.input[0]]
        itemsize = numpy_helper.to_array(table).dtype.itemsize
        shape = tuple(int(d) for d in table.dims)
        layer = canonical_layer_name(node, i)
        out.append(_row(layer, "Gather", shape, itemsize, ids.get(node.input[1])))
    return [i for i, _ in gathers], out


def _values(
    proto: onnx.ModelProto, inputs: dict[str, np.ndarray], names: list[str]
) -> dict[str, np.ndarray]:
    """The named tensors at ``inputs``: graph inputs directly, others from one ORT run."""
    import onnx

    from workbench.backends.onnxruntime.plain import run_plain

    found = {n: inputs[n] for n in names if n in inputs}
    missing = [n for n in dict.fromkeys(names) if n not in found]
    if not missing:
        return found
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    known = {o.name for o in copy.graph.output}
    copy.graph.output.extend(onnx.ValueInfoProto(name=n) for n in missing if n not in known)
    values = run_plain(copy, inputs, missing, optimization="disabled")
    found.update(zip(missing, values, strict=True))
    return found


def _row(
    layer: str, op_type: str, shape: Any, itemsize: int, ids: np.ndarray | None
) -> dict[str, Any]:
    rows, width = int(shape[0]), int(shape[1])
    unique = math.nan if ids is None else float(np.unique(ids).size)
    return {
        "layer": layer,
        "op_type": op_type,
        "rows": rows,
        "width": width,
        "table_bytes": rows * width * itemsize,
        "lookups": math.nan if ids is None else float(np.asarray(ids).size),
        "unique_rows": unique,
        "bytes_touched": unique * width * itemsize,
    }
