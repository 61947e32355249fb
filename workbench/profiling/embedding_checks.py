"""Bad lookups as one clear line: ids outside a table, offsets that go back, weights that
do not match their ids.

Runtimes disagree on bad ids: torch raises an ``IndexError`` deep in a kernel, ONNX's
``Gather`` takes a negative id as counting from the end (a silent wrong row). `check_lookups`
says which table and which id before any runtime sees them. Empty bags (an offset
repeated) are valid: their sum is zeros, as in torch.

Example:
    >>> check_lookups(wb.samples.load("dlrm"), {"dense": d, "ids_0": ids, ...})
    InputError: table tables.0 (3 rows) got id 7 at [12, 1] of input ids_0; ids must be in [0, 3)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.errors import InputError

if TYPE_CHECKING:
    from workbench.model import Model

__all__ = ["check_ids", "check_lookups", "check_offsets"]


def check_ids(ids: np.ndarray, rows: int, table: str, source: str = "") -> None:
    """Raise `InputError` naming ``table`` and the first id outside ``[0, rows)``."""
    ids = np.asarray(ids)
    bad = np.flatnonzero((ids < 0) | (ids >= rows))
    if bad.size:
        where = list(np.unravel_index(int(bad[0]), ids.shape))
        of = f" of input {source}" if source else ""
        raise InputError(
            f"table {table} ({rows} rows) got id {int(ids.flat[bad[0]])} at "
            f"{[int(i) for i in where]}{of}; ids must be in [0, {rows})"
        )


def check_offsets(offsets: np.ndarray, ids: int, table: str) -> None:
    """Offsets into ``ids`` ids: start at 0, never decrease, stay within the ids."""
    offsets = np.asarray(offsets)
    if offsets.ndim != 1 or (offsets.size and offsets[0] != 0):
        raise InputError(
            f"offsets of table {table} must be 1-D and start at 0, got {offsets[:5].tolist()}..."
        )
    down = np.flatnonzero(np.diff(offsets) < 0)
    if down.size:
        i = int(down[0])
        raise InputError(
            f"offsets of table {table} decrease at position {i + 1} "
            f"({int(offsets[i])} then {int(offsets[i + 1])}); offsets must not decrease"
        )
    if offsets.size and offsets[-1] > ids:
        raise InputError(f"offsets of table {table} reach {int(offsets[-1])}, past its {ids} ids")


def check_lookups(model: Model, inputs: Mapping[str, np.ndarray]) -> None:
    """Check every table lookup ``model`` makes at ``inputs`` (see module docstring).

    A torch model: one forward pass whose pre-hooks check each ``nn.Embedding`` /
    ``nn.EmbeddingBag`` call (ids, offsets, per-sample weights) before the kernel runs.
    An ONNX model: each ``Gather`` of a 2-D initializer whose ids are a graph input.

    Raises:
        InputError: the first bad lookup, naming the table (its canonical layer).
    """
    if model.module is not None:
        _check_torch(model, inputs)
    elif model.proto is not None:
        _check_onnx(model, inputs)


def _check_torch(model: Model, inputs: Mapping[str, np.ndarray]) -> None:
    import torch

    from workbench.backends.torch.layers import module_paths
    from workbench.profiling.embeddings import is_table

    def check(path: str, table: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = args[0] if args else kwargs.get("input")
        offsets = args[1] if len(args) > 1 else kwargs.get("offsets")
        weights = args[2] if len(args) > 2 else kwargs.get("per_sample_weights")
        if not isinstance(ids, torch.Tensor):
            return
        check_ids(ids.numpy(), int(table.weight.shape[0]), path)
        if isinstance(offsets, torch.Tensor):
            check_offsets(offsets.numpy(), ids.numel(), path)
        if isinstance(weights, torch.Tensor) and weights.shape != ids.shape:
            raise InputError(
                f"per-sample weights of table {path} have shape {list(weights.shape)}; "
                f"its ids have {list(ids.shape)} (one weight per id)"
            )

    assert model.module is not None
    handles = [
        sub.register_forward_pre_hook(lambda m, a, k, p=path: check(p, m, a, k), with_kwargs=True)
        for path, sub in module_paths(model.module).items()
        if is_table(sub)
    ]
    try:
        with torch.inference_mode():
            model.module(*(torch.from_numpy(np.asarray(v)) for v in inputs.values()))
    finally:
        for handle in handles:
            handle.remove()


def _check_onnx(model: Model, inputs: Mapping[str, np.ndarray]) -> None:
    from workbench.loaders.onnx import canonical_layer_name

    assert model.proto is not None
    graph = model.proto.graph
    weights = {init.name: init for init in graph.initializer}
    for i, node in enumerate(graph.node):
        table = weights.get(node.input[0]) if node.op_type == "Gather" else None
        if table is not None and len(table.dims) == 2 and node.input[1] in inputs:
            name = canonical_layer_name(node, i)
            check_ids(inputs[node.input[1]], int(table.dims[0]), name, node.input[1])
