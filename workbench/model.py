"""`Model`: one handle over PyTorch and ONNX models.

A `Model` knows its inputs, its canonical layers and how it was derived (its
`recipe`). Canonical layer names are what lets one layer be compared across backends
and variants: a torch model's layers are its module paths (``features.0``); the ONNX
export of a torch model maps each node back to that path (stored in the node's
``workbench.layer`` metadata so the mapping survives a round trip through a file);
a plain ONNX model uses node names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from workbench.errors import InputError, ModelLoadError, NotFoundError

if TYPE_CHECKING:
    import onnx
    import torch

Framework = Literal["torch", "onnx"]
IdDistribution = Literal["uniform", "zipf"]

#: exponent of the Zipf law generated ids follow with ``ids="zipf"``
ZIPF_EXPONENT = 1.1
#: ONNX ops an index passes through unchanged on its way to a Gather (index input first)
_INDEX_PASS_OPS = frozenset(
    {"Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Expand", "Clip"}
)

#: ONNX node metadata key holding the canonical layer a node belongs to.
LAYER_KEY = "workbench.layer"

#: Turns a torch `Model` into its ONNX `Model`. `workbench.loaders` registers it on import
#: (see `register_exporter`): loaders sit above this module, so it cannot import them.
_exporter: Callable[[Model], Model] | None = None

_ONNX_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
}


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output.

    Args:
        name: the input name as the model knows it.
        shape: dimensions; a string marks a symbolic dimension (``"batch"``).
        dtype: a numpy dtype name such as ``"float32"``.
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    def concrete_shape(
        self, batch_size: int, sizes: Mapping[str, int] | None = None
    ) -> tuple[int, ...]:
        """The shape with the first symbolic dimension set to ``batch_size``, the others
        to their size in ``sizes`` (by dimension name, e.g. ``{"seq": 128}``), else 1."""
        dims: list[int] = []
        for i, d in enumerate(self.shape):
            if isinstance(d, int):
                dims.append(d)
            else:
                dims.append(batch_size if i == 0 else int((sizes or {}).get(d, 1)))
        return tuple(dims)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class Layer:
    """One canonical layer.

    Args:
        name: canonical name (module path for torch, node name for plain ONNX).
        op_type: the layer's kind (``Conv2d``, ``Linear`` for torch; ``Conv``, ``Gemm`` for ONNX).
        params: number of parameters the layer owns.
        params_bytes: bytes of those parameters.
        nodes: for ONNX models, the graph nodes that make up the layer.
    """

    name: str
    op_type: str
    params: int = 0
    params_bytes: int = 0
    nodes: tuple[str, ...] = ()


@dataclass
class Model:
    """A loaded model: a torch module or an ONNX graph, with its inputs and layers.

    Build one with `workbench.load`; transforms return new `Model` objects and never
    change the one they are given.

    Attributes:
        framework: ``"torch"`` or ``"onnx"``.
        name: a short display name.
        inputs: the model's inputs (the first dimension is the batch).
        outputs: the model's outputs (names known for ONNX; ``output_i`` for torch).
        layers: canonical layers in execution order.
        recipe: how it was derived (a serialised transform config); None when loaded.
        parent: the model it was derived from, if any.
        module: the torch module (torch models only), in eval mode.
        proto: the ONNX graph (ONNX models only).
        source: where it came from (a path, ``sample:digits-cnn``, ``nn.Module``).
        metadata: free-form facts (e.g. a sample's recorded accuracy).
    """

    framework: Framework
    name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    layers: list[Layer]
    recipe: dict[str, Any] | None = None
    parent: Model | None = None
    module: torch.nn.Module | None = None
    proto: onnx.ModelProto | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    onnx_path: Path | None = None
    _onnx: Model | None = field(default=None, repr=False)
    _onnx_bytes: bytes | None = field(default=None, repr=False)
    _bounds: dict[str, int] | None = field(default=None, repr=False)

    # ---- facts -------------------------------------------------------------------
    @property
    def params(self) -> int:
        """Total parameter count."""
        return sum(layer.params for layer in self.layers)

    @property
    def params_bytes(self) -> int:
        """Total bytes of parameters."""
        return sum(layer.params_bytes for layer in self.layers)

    @property
    def recipe_name(self) -> str:
        """A short label for the recipe: ``"baseline"`` for a loaded model."""
        return recipe_label(self.recipe)

    @property
    def onnx_bytes(self) -> bytes:
        """The serialised ONNX graph (ONNX models only; see `to_onnx`)."""
        if self.framework != "onnx" or self.proto is None:
            return self.to_onnx().onnx_bytes
        if self._onnx_bytes is None:
            self._onnx_bytes = self.proto.SerializeToString()
        return self._onnx_bytes

    @property
    def has_onnx(self) -> bool:
        """Whether `to_onnx` needs no export: an ONNX model, a cached or a ready export file."""
        if self.framework == "onnx" or self._onnx is not None:
            return True
        return self.onnx_path is not None and self.onnx_path.is_file()

    @property
    def size_bytes(self) -> int:
        """Size of the model as deployed: the ONNX file for ONNX models, parameters for torch."""
        return len(self.onnx_bytes) if self.framework == "onnx" else self.params_bytes

    def fingerprint(self) -> str:
        """A short hash of the weights and graph, stable across processes."""
        digest = hashlib.sha256()
        if self.framework == "onnx":
            digest.update(self.onnx_bytes)
        else:
            assert self.module is not None
            for key, value in self.module.state_dict().items():
                digest.update(key.encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        digest.update(repr(self.recipe).encode())
        return digest.hexdigest()[:16]

    def layer(self, name: str) -> Layer:
        """The canonical layer called ``name``.

        Raises:
            NotFoundError: no such layer (also a `KeyError`); the message lists some.
        """
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise NotFoundError(
            f"{self.name} has no layer named {name!r}; its layers include "
            f"{[x.name for x in self.layers][:20]}"
        )

    # ---- inputs ------------------------------------------------------------------
    def unsized_inputs(self) -> list[TensorSpec]:
        """Inputs whose symbolic dimensions beyond the batch generated inputs cannot size.

        `example_inputs` sets such dimensions to 1, which times a different model than
        the user means (a sequence of one token); callers ask for real shapes instead.

        Returns:
            The specs of such inputs, in input order (empty when none).
        """
        return [spec for spec in self.inputs if any(isinstance(d, str) for d in spec.shape[1:])]

    def example_inputs(
        self,
        batch_size: int = 1,
        seed: int = 0,
        ids: IdDistribution = "uniform",
        sizes: Mapping[str, int] | None = None,
    ) -> dict[str, np.ndarray]:
        """Random inputs of the right names, shapes and dtypes, and of the right meaning.

        Floats are uniform in [0, 1) (the range of the sample models' data). Integer
        inputs follow what they are for, by name and by what the graph does with them:
        an attention mask (a name holding ``mask``) is ones, ``token_type_ids`` (or a
        ``segment`` name) zeros, position ids count along the last axis, booleans are
        True; an input that indexes a table (an embedding, a ``Gather`` on a weight:
        token ids, categorical features) gets ids spread over that table's rows
        (`index_bounds`), never all zeros, which would send every lookup to one row and
        time a cache-hot model. Integers indexing nothing found stay zeros.

        Args:
            batch_size: size of the first (batch) dimension.
            seed: random seed, so repeated calls give the same inputs.
            ids: how ids are drawn over a table's rows: ``"uniform"``, or ``"zipf"``
                (row ``r`` with weight ``1 / (r + 1) ** 1.1``: a few hot rows, a long
                tail, as word frequencies and item popularity are).
            sizes: sizes of symbolic dimensions beyond the batch, by name (a sequence
                length declared with ``dynamic_axes``: ``{"seq": 128}``); unnamed ones
                are 1.

        Returns:
            A dict of input name to numpy array.

        Raises:
            InputError: a batch size below 1 or an unknown ``ids`` distribution.
        """
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        if ids not in ("uniform", "zipf"):
            raise InputError(f"ids must be 'uniform' or 'zipf', got {ids!r}")
        bounds = self.index_bounds()
        return _generated(self.inputs, batch_size, seed, bounds, ids, sizes)

    def index_bounds(self) -> dict[str, int]:
        """Rows of the table each integer input indexes, for the inputs where one is found.

        An ONNX graph: the first dimension of the weight a ``Gather`` reads with the
        input (through casts and reshapes), the smallest if several. A torch module:
        ``num_embeddings`` of the ``nn.Embedding`` / ``nn.EmbeddingBag`` that receives
        the input, found by one forward pass with hooks (done once, then cached).

        Returns:
            A dict of input name to rows (ids must be below it).
        """
        if self._bounds is None:
            if self.proto is not None:
                self._bounds = _onnx_bounds(self.proto, self.inputs)
            elif self.module is not None:
                self._bounds = _torch_bounds(self)
            else:
                self._bounds = {}
        return dict(self._bounds)

    def check_inputs(
        self, inputs: Mapping[str, Any] | Sequence[Any] | np.ndarray
    ) -> dict[str, np.ndarray]:
        """Validate inputs against `inputs` and return them as a dict of numpy arrays.

        Accepts a dict keyed by input name, a sequence in input order, or a single
        array for a single-input model. Torch tensors are converted to numpy.

        Raises:
            InputError: a missing or unexpected input, or a wrong rank, shape or dtype.
        """
        if isinstance(inputs, Mapping):
            unknown = set(inputs) - {s.name for s in self.inputs}
            if unknown:
                raise InputError(
                    f"unexpected input(s) {sorted(unknown)}; {self.name} takes "
                    f"{[s.name for s in self.inputs]}"
                )
            missing = [s.name for s in self.inputs if s.name not in inputs]
            if missing:
                raise InputError(f"missing input(s) {missing} for {self.name}")
            values = [inputs[s.name] for s in self.inputs]
        else:
            values = [inputs] if is_array(inputs) else list(inputs)
            if len(values) != len(self.inputs):
                raise InputError(
                    f"{self.name} takes {len(self.inputs)} input(s) "
                    f"{[s.name for s in self.inputs]}, got {len(values)}"
                )
        checked: dict[str, np.ndarray] = {}
        for spec, value in zip(self.inputs, values, strict=True):
            checked[spec.name] = _check_one(spec, to_numpy(value))
        return checked

    # ---- conversion --------------------------------------------------------------
    def to_onnx(self, path: str | Path | None = None) -> Model:
        """This model as an ONNX `Model` whose nodes map to this model's layers.

        For an ONNX model, returns itself. For a torch model, exports it once with the
        torch.export-based exporter (falling back to the TorchScript exporter) and
        caches the result; each node records its torch module path so per-layer
        results line up across backends. Never changes this model.

        Args:
            path: if given, also write the ONNX file there.

        Returns:
            An ONNX `Model` with the same name, recipe and inputs.
        """
        if self.framework == "onnx":
            onnx_model = self
        else:
            if self._onnx is None:
                if _exporter is None:
                    raise ModelLoadError(
                        f"no ONNX exporter is registered to export {self.name!r}; "
                        "import workbench.loaders (or load the model with wb.load) first"
                    )
                self._onnx = _exporter(self)
            onnx_model = self._onnx
        if path is not None:
            Path(path).write_bytes(onnx_model.onnx_bytes)
        return onnx_model

    def derive(self, **changes: Any) -> Model:
        """A new `Model` like this one with ``changes`` applied and this one as parent.

        Cached exports are dropped: a derived model has other weights or another graph,
        so it must never reuse its parent's ONNX file.
        """
        base: dict[str, Any] = {
            "parent": self,
            "metadata": dict(self.metadata),
            "onnx_path": None,
            "_onnx": None,
            "_onnx_bytes": None,
            "_bounds": None,
        }
        return dataclasses.replace(self, **{**base, **changes})

    # ---- display -----------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Headline facts as plain data."""
        return {
            "name": self.name,
            "framework": self.framework,
            "recipe": self.recipe_name,
            "inputs": [s.to_dict() for s in self.inputs],
            "layers": len(self.layers),
            "params": self.params,
            "params_bytes": self.params_bytes,
            "source": self.source,
        }

    def __repr__(self) -> str:
        from workbench.units import format_bytes

        shapes = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in self.inputs)
        return (
            f"Model({self.name!r}, {self.framework}, recipe={self.recipe_name}, "
            f"inputs=[{shapes}], layers={len(self.layers)}, params={self.params:,} "
            f"({format_bytes(self.params_bytes)}))"
        )

    def _repr_html_(self) -> str:
        from workbench.units import format_bytes

        shapes = ", ".join(f"{s.name}{list(s.shape)} {s.dtype}" for s in self.inputs)
        facts = [
            ("framework", self.framework),
            ("recipe", self.recipe_name),
            ("inputs", shapes),
            ("layers", f"{len(self.layers):,}"),
            ("parameters", f"{self.params:,} ({format_bytes(self.params_bytes)})"),
        ]
        cell = "<td style='text-align:left;padding:2px 10px'>{}</td>"
        summary = "".join(cell.format(html.escape(f"{k}: {v}")) for k, v in facts)
        rows = "".join(
            f"<tr>{cell.format(html.escape(x.name))}{cell.format(html.escape(x.op_type))}"
            f"<td style='text-align:right;padding:2px 10px'>{x.params:,}</td>"
            f"<td style='text-align:right;padding:2px 10px'>{format_bytes(x.params_bytes)}</td>"
            "</tr>"
            for x in self.layers[:50]
        )
        more = f"<p>… and {len(self.layers) - 50} more layers</p>" if len(self.layers) > 50 else ""
        return (
            f"<b>{html.escape(self.name)}</b><table><tr>{summary}</tr></table>"
            "<table><tr><th>layer</th><th>op type</th><th>params</th><th>bytes</th></tr>"
            f"{rows}</table>{more}"
        )


def register_exporter(exporter: Callable[[Model], Model]) -> None:
    """Set the function `Model.to_onnx` uses to export torch models.

    Args:
        exporter: takes a torch `Model` and returns its ONNX `Model`.
    """
    global _exporter
    _exporter = exporter


#: recipe key listing the earlier steps of a chained recipe, oldest first
RECIPE_CHAIN = "chain"


def recipe_label(recipe: Mapping[str, Any] | None) -> str:
    """Display label of a recipe: each step's ``label`` (else ``name``), oldest first.

    Example:
        >>> recipe_label(wb.quantize(wb.prune(m, structured=True), "int8-static").recipe)
        'prune-channels(50%) → int8-static(entropy)'
        >>> recipe_label(None)
        'baseline'
    """
    if not recipe:
        return "baseline"
    steps = [*recipe.get(RECIPE_CHAIN, ()), recipe]
    return " → ".join(str(step.get("label") or step.get("name", "custom")) for step in steps)


def onnx_dtype_name(elem_type: int) -> str:
    """Numpy dtype name of an ONNX tensor element type."""
    return _ONNX_DTYPES.get(elem_type, f"onnx-type-{elem_type}")


#: bytes per element of each fixed-width ONNX element type (``TensorProto.DataType``):
#: float8 types take one byte; 4-bit types pack two to a byte and count as one (an upper
#: bound, as for a tensor of odd length)
_ONNX_ITEMSIZES = {
    1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16,
    16: 2, 17: 1, 18: 1, 19: 1, 20: 1, 21: 1, 22: 1, 23: 1,
}  # fmt: skip


def onnx_itemsize(elem_type: int) -> int:
    """Bytes of one element of an ONNX tensor element type (``TensorProto.DataType``).

    The one answer for every byte count of an ONNX graph (parameter bytes, bytes moved,
    activation memory). A type without a fixed width (strings) or unknown here counts as
    4 bytes, as a float32 would: a count stays an estimate of the right size, never 0.

    Example:
        >>> onnx_itemsize(1), onnx_itemsize(16)  # float32, bfloat16
        (4, 2)
    """
    return _ONNX_ITEMSIZES.get(elem_type, 4)


def set_layer_name(node: onnx.NodeProto, layer: str) -> None:
    """Record ``layer`` as ``node``'s canonical layer in its ``workbench.layer`` metadata.

    Replaces an existing entry, so a node never carries two competing labels.

    Args:
        node: the ONNX node to label (changed in place).
        layer: the canonical layer name.
    """
    for entry in node.metadata_props:
        if entry.key == LAYER_KEY:
            entry.value = layer
            return
    entry = node.metadata_props.add()
    entry.key, entry.value = LAYER_KEY, layer


def _role(name: str) -> str:
    """What an integer input is for, from its name: mask, type, position or ids."""
    lowered = name.lower()
    if "mask" in lowered:
        return "mask"
    if "token_type" in lowered or "segment" in lowered:
        return "type"
    if "position" in lowered:
        return "position"
    return "ids"


def _generated(
    specs: Sequence[TensorSpec],
    batch_size: int,
    seed: int,
    bounds: Mapping[str, int],
    ids: IdDistribution = "uniform",
    sizes: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = spec.concrete_shape(batch_size, sizes)
        dtype = np.dtype(spec.dtype)
        role, rows = _role(spec.name), bounds.get(spec.name)
        if np.issubdtype(dtype, np.floating):
            arrays[spec.name] = rng.random(shape, dtype=np.float32).astype(dtype)
        elif dtype == np.bool_ or role == "mask":
            arrays[spec.name] = np.ones(shape, dtype=dtype)
        elif role == "position" and shape:
            count = np.arange(shape[-1]) % (rows or shape[-1])
            arrays[spec.name] = np.broadcast_to(count, shape).astype(dtype)
        elif role == "ids" and rows:
            arrays[spec.name] = _ids(rng, shape, min(rows, np.iinfo(dtype).max + 1), ids)
            arrays[spec.name] = arrays[spec.name].astype(dtype)
        else:  # token types, and integers whose meaning the graph does not show
            arrays[spec.name] = np.zeros(shape, dtype=dtype)
    return arrays


def _ids(
    rng: np.random.Generator, shape: tuple[int, ...], rows: int, ids: IdDistribution
) -> np.ndarray:
    if ids == "uniform":
        return rng.integers(0, rows, size=shape)
    weights = 1.0 / np.arange(1, rows + 1, dtype=np.float64) ** ZIPF_EXPONENT
    return rng.choice(rows, size=shape, p=weights / weights.sum())


def _onnx_bounds(proto: onnx.ModelProto, inputs: Sequence[TensorSpec]) -> dict[str, int]:
    """Rows of the initializer each integer graph input indexes through a Gather."""
    graph = proto.graph
    rows = {t.name: int(t.dims[0]) for t in graph.initializer if len(t.dims) >= 1}
    for node in graph.node:  # weights held by Constant nodes count too
        if node.op_type == "Constant" and node.attribute and node.attribute[0].t.dims:
            rows[node.output[0]] = int(node.attribute[0].t.dims[0])
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    found: dict[str, int] = {}
    for spec in inputs:
        if np.issubdtype(np.dtype(spec.dtype), np.floating) or spec.dtype.startswith("onnx"):
            continue
        pending, seen = [spec.name], set()
        while pending:
            value = pending.pop()
            seen.add(value)
            for node in readers.get(value, []):
                if node.op_type in _INDEX_PASS_OPS and node.input[0] == value:
                    pending.extend(o for o in node.output if o not in seen)
                elif node.op_type == "Gather" and list(node.input[1:2]) == [value]:
                    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                    if axis == 0 and node.input[0] in rows:
                        table = rows[node.input[0]]
                        found[spec.name] = min(found.get(spec.name, table), table)
    return found


def _torch_bounds(model: Model) -> dict[str, int]:
    """``num_embeddings`` of the embedding each input reaches, seen by forward hooks."""
    import torch

    assert model.module is not None
    tables = [
        m
        for m in model.module.modules()
        if isinstance(m, torch.nn.Embedding | torch.nn.EmbeddingBag)
    ]
    integer = [s for s in model.inputs if not np.issubdtype(np.dtype(s.dtype), np.floating)]
    if not tables or not integer:
        return {}
    probe = {k: torch.from_numpy(v) for k, v in _generated(model.inputs, 2, 0, {}).items()}
    found: dict[str, int] = {}

    def seen(table: Any, args: tuple[Any, ...]) -> None:
        index = args[0] if args else None
        if not isinstance(index, torch.Tensor) or index.numel() == 0:
            return
        for spec in integer:
            given = probe[spec.name]
            # the input itself or a view of it (a reshape): the same memory
            if given.numel() and index.data_ptr() == given.data_ptr():
                rows = int(table.num_embeddings)
                found[spec.name] = min(found.get(spec.name, rows), rows)

    hooks = [t.register_forward_pre_hook(seen) for t in tables]
    try:
        with torch.inference_mode():
            model.module(*probe.values())
    except Exception:  # a module that fails on the probe: no bounds, zeros as before
        return {}
    finally:
        for hook in hooks:
            hook.remove()
    return found


def named_outputs(value: Any) -> list[tuple[str, Any]]:
    """The arrays a model's forward returned, with names, in order.

    A tensor is ``output_0``; a tuple or list is flattened in order (``output_i``, the
    i-th array found); a mapping, such as a Hugging Face ``ModelOutput``, gives its
    keys (``logits``), nested ones joined by dots (``hidden_states.0``). What holds no
    array (None, a KV cache object) is not an output.

    Example:
        >>> [name for name, _ in named_outputs(gpt2(ids))]
        ['logits']
    """
    found: list[tuple[tuple[str, ...], Any]] = []

    def walk(item: Any, path: tuple[str, ...]) -> None:
        if is_array(item):
            found.append((path, item))
        elif isinstance(item, Mapping):
            for key, inner in item.items():
                walk(inner, (*path, str(key)))
        elif isinstance(item, list | tuple):
            for index, inner in enumerate(item):  # inside a mapping: key.0, key.1 ...
                walk(inner, (*path, str(index)) if path else path)

    walk(value, ())
    return [
        (".".join(path) if path else f"output_{i}", array) for i, (path, array) in enumerate(found)
    ]


def map_arrays(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``value`` with ``fn`` applied to every array in it (tuples, lists, mappings and
    Hugging Face ``ModelOutput`` objects keep their type); anything else is kept."""
    if is_array(value):
        return fn(value)
    if isinstance(value, Mapping):
        mapped = {key: map_arrays(inner, fn) for key, inner in value.items()}
        try:
            return type(value)(**mapped)  # a dataclass-like ModelOutput, or a dict
        except TypeError:
            return mapped
    if isinstance(value, list | tuple) and type(value) in (list, tuple):
        return type(value)(map_arrays(inner, fn) for inner in value)
    return value


def is_array(value: Any) -> bool:
    """Whether ``value`` is a numpy array or a torch tensor (checked without importing torch).

    Tensor subclasses count (the fake and functional tensors torch.export traces with):
    a tensor exists only where torch is already imported.
    """
    if isinstance(value, np.ndarray):
        return True
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def to_numpy(value: Any) -> np.ndarray:
    """A numpy array from a numpy array, a torch tensor (any device) or a nested list.

    Args:
        value: the array-like; a torch tensor is detached and copied to the CPU.

    Returns:
        The numpy array (``value`` itself when it already is one).
    """
    if type(value).__name__ == "Tensor":  # torch, without importing it
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _check_one(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    if array.ndim != len(spec.shape):
        raise InputError(
            f"input {spec.name!r} should have {len(spec.shape)} dimensions "
            f"{list(spec.shape)}, got shape {list(array.shape)}"
        )
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
        if isinstance(want, int) and want != got:
            raise InputError(
                f"input {spec.name!r} has size {got} on axis {axis}, expected {want} "
                f"(expected shape {list(spec.shape)}, got {list(array.shape)})"
            )
    if array.dtype != np.dtype(spec.dtype):
        if (
            np.can_cast(array.dtype, spec.dtype, casting="same_kind")
            and array.dtype.kind == np.dtype(spec.dtype).kind
        ):
            return array.astype(spec.dtype)
        raise InputError(
            f"input {spec.name!r} should be {spec.dtype}, got {array.dtype}; "
            f"convert it with .astype({spec.dtype!r})"
        )
    return np.ascontiguousarray(array)
