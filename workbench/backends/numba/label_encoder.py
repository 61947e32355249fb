"""``ai.onnx.ml.LabelEncoder`` on the CPU, for numeric keys and values.

Converted IsolationForests map each tree's leaf id to the leaf's sample count and path
length with it (one pair a tree), and converted pipelines map category codes. The keys
are sorted once when the plan is made; a run looks every input up by binary search
(`numpy.searchsorted`) and writes the default where a key is absent, as the spec says.
Float keys match NaN to NaN (opset 4). String keys or values stay refused: the executor
holds numeric arrays only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import numpy_helper

from workbench.backends.numba.graph import Node
from workbench.errors import UnsupportedModelError

Arrays = list[Any]

#: LabelEncoder's default for an absent key, by the values' kind, as ONNX specifies.
DEFAULTS = {"int64s": ("default_int64", -1), "floats": ("default_float", -0.0)}


def _attr(node: Node, side: str) -> tuple[np.ndarray, str]:
    """``side`` (``keys`` / ``values``) as an array, and the attribute kind holding it."""
    for kind, dtype in (("int64s", np.int64), ("floats", np.float32)):
        if f"{side}_{kind}" in node.attrs:
            return np.asarray(node.attrs[f"{side}_{kind}"], dtype=dtype), kind
    tensor = node.attrs.get(f"{side}_tensor")
    if tensor is not None:
        array = numpy_helper.to_array(tensor)
        if array.dtype.kind in "if":
            return array.reshape(-1), "int64s" if array.dtype.kind == "i" else "floats"
    raise UnsupportedModelError(
        f"LabelEncoder {node.name!r}: only numeric keys and values run on Numba "
        f"(this one maps {'strings' if f'{side}_strings' in node.attrs else 'other types'}); "
        "run it on onnxruntime"
    )


def _default(node: Node, kind: str, dtype: Any) -> Any:
    tensor = node.attrs.get("default_tensor")
    if tensor is not None:
        return numpy_helper.to_array(tensor).reshape(-1)[0].astype(dtype)
    name, value = DEFAULTS[kind]
    return np.asarray(node.attrs.get(name, value), dtype=dtype)


def bind_label_encoder(node: Node, ins: Arrays, outs: Arrays | None) -> tuple[Any, Arrays]:
    """LabelEncoder: ``ins[0]`` mapped key by key to ``values``, the default elsewhere."""
    keys, _ = _attr(node, "keys")
    values, kind = _attr(node, "values")
    if len(keys) != len(values):
        raise UnsupportedModelError(
            f"LabelEncoder {node.name!r}: {len(keys)} keys but {len(values)} values"
        )
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    default = _default(node, kind, values.dtype)
    x = ins[0]
    out = outs[0] if outs is not None else np.empty(x.shape, dtype=values.dtype)
    nan_value = values[np.isnan(keys)][:1] if keys.dtype.kind == "f" else values[:0]
    size = len(keys)

    def run() -> None:
        flat = x.reshape(-1)
        at = np.minimum(np.searchsorted(keys, flat), max(size - 1, 0))
        found = keys[at] == flat if size else np.zeros(flat.shape, bool)
        result = np.where(found, values[at] if size else default, default)
        if len(nan_value):  # NaN never equals itself: a NaN key matches NaN inputs
            result = np.where(np.isnan(flat), nan_value[0], result)
        np.copyto(out.reshape(-1), result, casting="unsafe")

    return run, [out]
