"""Compression of embedding tables: row-wise int8 / int4, fp16, pruning rare rows.

Each transform builds a NEW torch `Model` in which every ``nn.EmbeddingBag`` (``sum`` or
``mean``, no ``padding_idx``) becomes a `CompressedBag` at the same module path, so the
canonical layer names (``tables.3``) stay; the given model is never changed. The first
three also take an ONNX model: each ``Gather`` of a 2-D float32 initializer nothing else
reads becomes the lookup a torch model's export would write (`_compress_onnx`).

- ``table-int8`` (`TableInt8`): each row as uint8 with its own float32 scale and bias
  (FBGEMM's row-wise layout: ``d + 8`` bytes a row).
- ``table-int4`` (`TableInt4`): each row as 4-bit values packed two per byte (the even
  element in the low nibble) with a float16 scale and bias (``d / 2 + 4`` bytes a row).
- ``table-fp16`` (`TableFp16`): rows as float16 (``2 d`` bytes a row).
- ``table-prune`` (`TablePrune`): keep each table's most used rows, counted on the
  training ids; the others share one fallback row (their mean, weighted by use) through
  an int32 remap of every original id (4 bytes a row).

Two forms of the same arrays: eager torch runs FBGEMM's quantized embedding-bag CPU ops
(``torch.ops.quantized.embedding_bag_byte_rowwise_offsets`` /
``embedding_bag_4bit_rowwise_offsets``; ``F.embedding_bag`` for fp16 and pruned float
tables), while the ONNX export (``Model.to_onnx``, run by ONNX Runtime and the other ONNX
backends) is written with plain ops: a ``Gather`` of the stored rows (and of the remap),
int4 bytes unpacked by a ``Gather`` of their two nibbles from a 256-entry table, a
``Cast``, the per-row scale and bias as ``Mul`` / ``Add`` (DequantizeLinear per row),
then the bag's reduction. A layer's
``params_bytes`` is its stored bytes, so ``Model.params_bytes`` and a sweep's
``size_bytes`` show the compression. Transforms chain: ``["table-prune", "table-int8"]``
quantizes the kept rows and the fallback row.

Example:
    >>> q = wb.transform(wb.samples.load("dlrm"), "table-int8")
    >>> table_bytes(q) / table_bytes(q.parent)
    0.5
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from workbench.errors import TransformError
from workbench.model import Layer, Model
from workbench.optimize.base import Transform, config_to_dict, register

if TYPE_CHECKING:
    import torch

__all__ = ["TableFp16", "TableInt4", "TableInt8", "TablePrune", "table_bytes"]

#: samples per forward pass while counting the training ids
_COUNT_CHUNK = 8192
#: the ``mode`` of a compressed ``nn.Embedding``: rows looked up, no bag reduction
LOOKUP = "lookup"
#: how a compressed table stores its rows
Storage = Literal["fp32", "fp16", "int8", "int4"]


@dataclasses.dataclass(frozen=True)
class _StoredTables(Transform):
    """Every table stored in `storage` (int8, int4, fp16 differ only in that)."""

    storage: ClassVar[Storage]
    exclude: tuple[str, ...] = ()

    def apply(self, model: Model, data: Any = None) -> Model:
        if model.framework == "onnx":
            return _compress_onnx(model, self, self.storage)
        return _compress(model, self, lambda bag, _counts: _requantized(bag, self.storage))


@register("table-int8")
@dataclasses.dataclass(frozen=True)
class TableInt8(_StoredTables):
    """Row-wise int8 embedding tables: uint8 values, a float32 scale and bias per row.

    Attributes:
        exclude: canonical table layers kept as they are.

    Example:
        >>> q = wb.transform(m, "table-int8")
    """

    storage: ClassVar[Storage] = "int8"


@register("table-int4")
@dataclasses.dataclass(frozen=True)
class TableInt4(_StoredTables):
    """Row-wise int4 embedding tables: two values a byte, a float16 scale and bias per row.

    Attributes:
        exclude: canonical table layers kept as they are.

    Example:
        >>> q = wb.transform(m, "table-int4")
    """

    storage: ClassVar[Storage] = "int4"


@register("table-fp16")
@dataclasses.dataclass(frozen=True)
class TableFp16(_StoredTables):
    """float16 embedding tables (the rest of the model stays float32).

    Attributes:
        exclude: canonical table layers kept as they are.

    Example:
        >>> h = wb.transform(m, "table-fp16")
    """

    storage: ClassVar[Storage] = "fp16"


@register("table-prune")
@dataclasses.dataclass(frozen=True)
class TablePrune(Transform):
    """Keep each table's most used rows; the rest share one fallback row.

    Rows are ranked by how often the training ids look them up (``data``, or a sample's
    training split); ties keep the lower row. A table whose rows are all looked up
    equally often (a retrieval item tower reads every row once a call) is kept whole:
    its counts rank nothing. The recipe's ``tables`` lists the tables pruned. The
    fallback row is the mean of the pruned rows weighted by their counts plus one, so
    rows never seen still count.

    Attributes:
        keep: share of each table's rows kept, in (0, 1].
        min_rows: tables with fewer rows are kept whole (the 4-byte remap of every row
            would cost more than pruning saves).
        exclude: canonical table layers kept as they are.

    Example:
        >>> p = wb.transform(m, "table-prune", keep=0.25)
    """

    keep: float = 0.5
    min_rows: int = 1000
    exclude: tuple[str, ...] = ()

    def label(self) -> str:
        return f"table-prune({self.keep:.0%})"

    def apply(self, model: Model, data: Any = None) -> Model:
        if not 0 < self.keep <= 1 or self.min_rows < 1:
            raise TransformError(
                f"table-prune keeps a share in (0, 1] of tables of at least 1 row, got "
                f"keep={self.keep}, min_rows={self.min_rows}"
            )

        def prune(bag: Any, counts: np.ndarray | None) -> Any:
            rows = _stored_rows(bag)
            assert counts is not None
            # equal counts rank nothing (an item tower looks every row up once a call)
            if rows < self.min_rows or counts.min() == counts.max():
                return None
            return _pruned(bag, counts, max(1, round(self.keep * rows)))

        return _compress(model, self, prune, count_ids=data if data is not None else True)


def table_bytes(model: Model) -> int:
    """Bytes of a torch model's embedding tables as stored (remaps and scales included).

    Example:
        >>> table_bytes(wb.transform(m, "table-int4")) / table_bytes(m)
    """
    if model.module is None:
        raise TransformError(f"table_bytes reads a torch model's tables; {model.name!r} is ONNX")
    return sum(_bag_bytes(bag) for _path, bag in _tables(model.module))


# ---- the compressed bag -------------------------------------------------------------
_BAG_CLASS: Any = None


def _bag_class() -> Any:
    """`CompressedBag`, built on first use (torch is imported lazily)."""
    global _BAG_CLASS
    if _BAG_CLASS is not None:
        return _BAG_CLASS  # type: ignore[no-any-return]
    import torch
    import torch.nn.functional as F
    from torch import nn

    from workbench.loaders.embedding_export import reduce_bags

    class CompressedBag(nn.Module):
        """An embedding bag over compressed rows: FBGEMM's ops in eager torch, plain ONNX
        ops (Gather, unpack, Cast, Mul, Add, reduce) when exported.

        Buffers: ``values`` (float32 / float16 rows, or uint8 codes: ``(rows, d)`` for
        int8, ``(rows, ceil(d / 2))`` for int4), ``scale_bias`` ``(rows, 2)``: each
        row's scale and bias (int8: float32, int4: float16), one Gather for both,
        ``remap`` int32 ``(original rows,)`` for a pruned table.
        """

        values: torch.Tensor
        scale_bias: torch.Tensor | None
        remap: torch.Tensor | None

        def __init__(
            self,
            storage: str,
            width: int,
            values: torch.Tensor,
            scale_bias: torch.Tensor | None,
            remap: torch.Tensor | None,
            mode: str,
            include_last_offset: bool,
        ) -> None:
            super().__init__()
            self.storage, self.width, self.mode = storage, width, mode
            self.include_last_offset = include_last_offset
            self.register_buffer("values", values)
            self.register_buffer("scale_bias", scale_bias)
            self.register_buffer("remap", remap)
            self._packed: torch.Tensor | None = None

        @property
        def num_embeddings(self) -> int:
            return int(self.remap.shape[0] if self.remap is not None else self.values.shape[0])

        def forward(
            self,
            input: torch.Tensor,
            offsets: torch.Tensor | None = None,
            per_sample_weights: torch.Tensor | None = None,
        ) -> torch.Tensor:
            if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
                return self._portable(input, offsets, per_sample_weights)
            if self.mode == LOOKUP:
                return self._lookup(input)
            ids, offsets = _flat_bags(input, offsets)
            if self.remap is not None:
                ids = self._remapped(ids)
            if self.storage in ("fp32", "fp16"):
                weights = per_sample_weights
                if weights is not None:
                    weights = weights.reshape(-1).to(self.values.dtype)
                return F.embedding_bag(
                    ids, self.values, offsets, mode=self.mode,
                    per_sample_weights=weights, include_last_offset=self.include_last_offset,
                ).float()  # fmt: skip
            op = (
                torch.ops.quantized.embedding_bag_byte_rowwise_offsets
                if self.storage == "int8"
                else torch.ops.quantized.embedding_bag_4bit_rowwise_offsets
            )
            weights = None if per_sample_weights is None else per_sample_weights.reshape(-1)
            # mode 0 (sum): these ops take a mode but sum for "mean" too (torch 2.13)
            sums = op(
                self.packed(), ids, offsets, False, 0, False, weights, None,
                self.include_last_offset,
            )  # fmt: skip
            if self.mode == "sum":
                return sums  # type: ignore[no-any-return]
            ends = torch.cat([offsets[1:], offsets.new_tensor([ids.shape[0]])])
            sizes = (ends - offsets)[: sums.shape[0]].clamp(min=1)
            return sums / sizes.unsqueeze(1)  # type: ignore[no-any-return]

        def _lookup(self, input: torch.Tensor) -> torch.Tensor:
            """An ``nn.Embedding``'s rows: FBGEMM's bag ops with bags of one id."""
            ids = input if self.remap is None else self._remapped(input)
            if self.storage in ("fp32", "fp16"):
                return F.embedding(ids, self.values).float()
            flat = ids.reshape(-1).contiguous()  # FBGEMM's ops take contiguous ids only
            op = (
                torch.ops.quantized.embedding_bag_byte_rowwise_offsets
                if self.storage == "int8"
                else torch.ops.quantized.embedding_bag_4bit_rowwise_offsets
            )
            one = torch.arange(flat.shape[0], dtype=flat.dtype)
            rows = op(self.packed(), flat, one, False, 0, False, None, None, False)
            return rows.reshape(*input.shape, self.width)  # type: ignore[no-any-return]

        def _remapped(self, ids: torch.Tensor) -> torch.Tensor:
            assert self.remap is not None
            return F.embedding(ids, self.remap.unsqueeze(1)).squeeze(-1).long()

        def packed(self) -> torch.Tensor:
            """FBGEMM's fused rows (codes, then scale and bias), built on first use."""
            if self._packed is None:
                assert self.scale_bias is not None
                self._packed = torch.cat(
                    [self.values, self.scale_bias.view(torch.uint8)], 1
                ).contiguous()
            return self._packed

        def rows(self, ids: torch.Tensor) -> torch.Tensor:
            """The float32 rows of ``ids`` (in this table's stored row space)."""
            # F.embedding, not indexing: it exports as Gather (indexing may give GatherND)
            codes = F.embedding(ids, self.values)
            if self.storage == "int4":
                # unpacked by a lookup of each byte's two nibbles: one Gather in ONNX
                # (BitwiseAnd needs opset 18, which the exporters here do not all write)
                byte = torch.arange(256)
                nibbles = torch.stack([byte % 16, byte // 16], 1).float()
                rows = F.embedding(codes.long(), nibbles).flatten(-2)[..., : self.width]
            else:
                rows = codes.float()
            if self.scale_bias is not None:
                pair = F.embedding(ids, self.scale_bias)
                if pair.dtype != torch.float32:  # no Cast node for int8's float32 pairs
                    pair = pair.float()
                rows = rows * pair[..., :1] + pair[..., 1:]
            return rows

        def _portable(
            self,
            input: torch.Tensor,
            offsets: torch.Tensor | None,
            per_sample_weights: torch.Tensor | None,
        ) -> torch.Tensor:
            ids = input if self.remap is None else self._remapped(input)
            if self.mode == LOOKUP:
                return self.rows(ids)
            return reduce_bags(  # type: ignore[no-any-return]
                self.rows(ids), input, offsets, per_sample_weights, self.mode,
                self.include_last_offset,
            )  # fmt: skip

    _BAG_CLASS = CompressedBag
    return CompressedBag


def _flat_bags(input: torch.Tensor, offsets: torch.Tensor | None) -> tuple[Any, Any]:
    """1-D ids and bag offsets (the form FBGEMM's ops take) from 2-D fixed-size bags."""
    import torch

    if input.dim() == 1:  # FBGEMM's ops take contiguous ids and offsets only
        return input.contiguous(), None if offsets is None else offsets.contiguous()
    bags, size = input.shape
    return input.reshape(-1).contiguous(), torch.arange(0, bags * size, size, dtype=input.dtype)


# ---- shared -------------------------------------------------------------------------
def _tables(module: Any) -> list[tuple[str, Any]]:
    """``(path, bag)`` of every table a compression transform can take."""
    from torch import nn

    found = []
    for path, sub in module.named_modules():
        bag = type(sub) is nn.EmbeddingBag and sub.mode != "max"
        lookup = type(sub) is nn.Embedding and sub.max_norm is None
        plain = (bag or lookup) and sub.padding_idx is None
        if plain or isinstance(sub, _bag_class()):
            found.append((path, sub))
    return found


def _float_rows(bag: Any) -> np.ndarray:
    """The table's stored rows as float32 (dequantized), in its stored row order."""
    import torch

    if not isinstance(bag, _bag_class()):
        return np.asarray(bag.weight.detach().float().numpy())
    with torch.no_grad():
        return np.asarray(bag.rows(torch.arange(bag.values.shape[0])).numpy())


def _stored_rows(bag: Any) -> int:
    return int(bag.values.shape[0] if isinstance(bag, _bag_class()) else bag.weight.shape[0])


def _bag_bytes(bag: Any) -> int:
    if not isinstance(bag, _bag_class()):
        return int(bag.weight.numel() * bag.weight.element_size())
    return sum(int(b.numel() * b.element_size()) for b in bag.buffers())


def _made(storage: str, rows: np.ndarray, remap: Any, like: Any) -> Any:
    """A `CompressedBag` storing float32 ``rows`` as ``storage``, reducing as the bag
    ``like`` does (an ``nn.Embedding`` or None: no reduction, `LOOKUP`)."""
    import torch

    weight = torch.from_numpy(np.array(rows, dtype=np.float32))  # a copy torch may own
    width = weight.shape[1]
    scale_bias = None
    if storage in ("fp32", "fp16"):
        values = weight.to(torch.float16 if storage == "fp16" else torch.float32)
    else:
        # FBGEMM's own quantizer, so both forms share the eager ops' exact codes
        if storage == "int8":
            packed, tail, dtype = (
                torch.ops.quantized.embedding_bag_byte_prepack(weight),
                8,
                torch.float32,
            )
        else:
            packed, tail, dtype = (
                torch.ops.quantized.embedding_bag_4bit_prepack(weight),
                4,
                torch.float16,
            )
        values = packed[:, :-tail].contiguous()
        scale_bias = packed[:, -tail:].contiguous().view(dtype)
    return _bag_class()(
        storage,
        width,
        values,
        scale_bias,
        remap,
        getattr(like, "mode", LOOKUP),
        getattr(like, "include_last_offset", False),
    )


def _requantized(bag: Any, storage: str) -> Any:
    current = bag.storage if isinstance(bag, _bag_class()) else "fp32"
    if current != "fp32":
        raise TransformError(f"this table is already {current}; compress its float parent instead")
    remap = bag.remap if isinstance(bag, _bag_class()) else None
    return _made(storage, _float_rows(bag), remap, bag)


def _pruned(bag: Any, counts: np.ndarray, keep: int) -> Any:
    import torch

    rows = _float_rows(bag)
    order = np.argsort(-counts, kind="stable")
    kept, dropped = order[:keep], order[keep:]
    mapping = np.full(len(rows), keep, dtype=np.int32)  # dropped rows -> the fallback
    mapping[kept] = np.arange(keep, dtype=np.int32)
    parts = [rows[kept]]
    if len(dropped):
        weights = counts[dropped].astype(np.float64) + 1.0
        parts.append((weights @ rows[dropped] / weights.sum())[None, :])
    old = bag.remap if isinstance(bag, _bag_class()) else None
    remap = mapping if old is None else mapping[old.numpy()]
    storage = bag.storage if isinstance(bag, _bag_class()) else "fp32"
    return _made(storage, np.concatenate(parts), torch.from_numpy(remap), bag)


def _id_counts(model: Model, data: Any, tables: list[tuple[str, Any]]) -> dict[str, np.ndarray]:
    """How often each stored row of each table is looked up by ``data``'s ids."""
    import torch

    from workbench.optimize.data_source import input_batches, resolve_data

    source = resolve_data(model, None if data is True else data, "train", "table-prune")
    counts = {path: np.zeros(_stored_rows(bag), dtype=np.int64) for path, bag in tables}

    def counter(path: str) -> Any:
        def hook(bag: Any, args: tuple[Any, ...]) -> None:
            ids = args[0].reshape(-1)
            if isinstance(bag, _bag_class()) and bag.remap is not None:
                ids = bag.remap[ids].long()
            counts[path] += np.bincount(ids.numpy(), minlength=len(counts[path]))

        return hook

    def run(chunk: list[dict[str, np.ndarray]]) -> None:
        assert model.module is not None
        arrays = (np.concatenate([feeds[s.name] for feeds in chunk]) for s in model.inputs)
        model.module(*(torch.from_numpy(a) for a in arrays))

    assert model.module is not None
    handles = [bag.register_forward_pre_hook(counter(path)) for path, bag in tables]
    try:
        chunk: list[dict[str, np.ndarray]] = []
        with torch.no_grad():
            # a dataset's small batches joined: a call per few thousand samples, not per 64
            for feeds in input_batches(model, source):
                chunk.append(feeds)
                if sum(len(f[model.inputs[0].name]) for f in chunk) >= _COUNT_CHUNK:
                    run(chunk)
                    chunk = []
            if chunk:
                run(chunk)
    finally:
        for handle in handles:
            handle.remove()
    return counts


def _compress(model: Model, config: Transform, change: Any, count_ids: Any = None) -> Model:
    """A new torch model whose tables are ``change(bag, counts)`` (None: left as is)."""
    import copy

    from workbench.loaders.torch import module_layers

    if model.framework != "torch" or model.module is None:
        raise TransformError(
            f"{config.name} compresses the nn.EmbeddingBag tables of a torch model; "
            f"{model.name!r} is {model.framework}: load the torch model"
        )
    exclude = set(getattr(config, "exclude", ()))
    tables = _tables(model.module)
    unknown = sorted(exclude - {path for path, _ in tables})
    if unknown:
        raise TransformError(
            f"{config.name}: {unknown} are not tables of {model.name!r}; tables are "
            f"{[path for path, _ in tables]}"
        )
    tables = [(path, bag) for path, bag in tables if path not in exclude]
    if not tables:
        raise TransformError(
            f"{config.name}: {model.name!r} has no embedding tables to compress "
            "(nn.EmbeddingBag with mode sum or mean and no padding_idx)"
        )
    counts = _id_counts(model, count_ids, tables) if count_ids is not None else {}
    module = copy.deepcopy(model.module).eval()  # the caller's model stays untouched
    changed: list[str] = []
    for path, _bag in tables:
        parent_path, _, attr = path.rpartition(".")
        parent = module.get_submodule(parent_path) if parent_path else module
        new = change(getattr(parent, attr), counts.get(path))
        if new is not None:
            setattr(parent, attr, new)
            changed.append(path)
    if not changed:
        raise TransformError(
            f"{config.name} pruned no table of {model.name!r}: tables under min_rows rows, "
            "or whose rows the data reads equally often, are kept whole"
        )
    bags = dict(_tables(module))
    layers = [
        _table_layer(layer, bags[layer.name]) if layer.name in bags else layer
        for layer in module_layers(module)
    ]
    recipe = config_to_dict(config, tables=changed)
    # ids still index the original rows (a pruned table remaps them), so generated inputs
    # keep spreading over them; the bounds finder knows only nn.Embedding(Bag) modules
    bounds = model.index_bounds()
    return model.derive(module=module, layers=layers, recipe=recipe, proto=None, _bounds=bounds)


def _table_layer(layer: Layer, bag: Any) -> Layer:
    # parameters: the values stored (kept rows and the fallback for a pruned table)
    rows = _stored_rows(bag)
    width = bag.width if isinstance(bag, _bag_class()) else bag.weight.shape[1]
    return dataclasses.replace(layer, params=int(rows * width), params_bytes=_bag_bytes(bag))


# ---- ONNX models --------------------------------------------------------------------
def _compress_onnx(model: Model, config: Transform, storage: str) -> Model:
    """A new ONNX model whose table lookups read ``storage`` rows.

    A table is a ``Gather`` (axis 0) of a 2-D float32 initializer that nothing else
    reads (a weight tied to an output projection stays float32) and that is not also a
    graph input. Its lookup becomes the
    ONNX form of `CompressedBag`: the same codes, scales and ops as a torch model's export.
    """
    from onnx import TensorProto

    from workbench.loaders.onnx import canonical_layer_name
    from workbench.optimize.onnx_graph import onnx_variant, parent_proto

    proto = parent_proto(model)  # a private copy to edit
    graph = proto.graph
    weights = {t.name: t for t in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    exclude = set(getattr(config, "exclude", ()))
    # an initializer also listed as a graph input (old exporters) may be fed by the caller
    fed = {value.name for value in graph.input}
    nodes, changed, used = [], [], set()
    for index, node in enumerate(graph.node):
        layer = canonical_layer_name(node, index)
        table = weights.get(node.input[0]) if node.op_type == "Gather" and node.input else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if (
            table is None or axis != 0 or len(table.dims) != 2 or layer in exclude
            or table.data_type != TensorProto.FLOAT or readers[table.name] != 1
            or table.name in fed
        ):  # fmt: skip
            nodes.append(node)
            continue
        new_nodes, new_weights = _onnx_lookup(node, table, storage, layer)
        nodes.extend(new_nodes)
        graph.initializer.extend(new_weights)
        used.add(table.name)
        changed.append(layer)
    if not changed:
        raise TransformError(
            f"{config.name}: {model.name!r} has no table lookups to compress (a Gather on "
            "axis 0 of a 2-D float32 initializer read by nothing else)"
        )
    kept = [t for t in graph.initializer if t.name not in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.node[:]
    graph.node.extend(nodes)
    return onnx_variant(model, proto, config_to_dict(config, tables=changed))


def _onnx_lookup(node: Any, table: Any, storage: str, layer: str) -> tuple[list[Any], list[Any]]:
    """The nodes and initializers that look ``node``'s ids up in compressed rows."""
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from workbench.model import set_layer_name

    base, ids, out = table.name, node.input[1], node.output[0]
    rows = numpy_helper.to_array(table)
    bag = _made(storage, rows, None, None)  # a lookup: the graph reduces (or not) after it
    inits = [numpy_helper.from_array(bag.values.numpy(), f"{base}.values")]
    made: list[Any] = []

    def add(op: str, inputs: list[str], **attrs: Any) -> str:
        name = f"{base}/{op}_{len(made)}"
        made.append(helper.make_node(op, inputs, [f"{name}_out"], name=name, **attrs))
        return f"{name}_out"

    def const(name: str, value: Any) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), f"{base}.{name}"))
        return f"{base}.{name}"

    codes = add("Gather", [f"{base}.values", ids])
    if storage == "int4":
        byte = np.arange(256)
        nibbles = np.stack([byte % 16, byte // 16], 1).astype(np.float32)
        inits.append(numpy_helper.from_array(nibbles, f"{base}.nibbles"))
        pairs = add("Gather", [f"{base}.nibbles", add("Cast", [codes], to=TensorProto.INT64)])
        packed = 2 * int(bag.values.shape[1])
        shape = add("Concat", [add("Shape", [ids]), const("packed", [packed])], axis=0)
        flat = add("Reshape", [pairs, shape])
        value = add("Slice", [flat, const("zero", [0]), const("width", [rows.shape[1]]),
                              const("last", [-1])])  # fmt: skip
    else:
        value = add("Cast", [codes], to=TensorProto.FLOAT)
    if bag.scale_bias is None:
        made[-1].output[0] = out
    else:
        inits.append(numpy_helper.from_array(bag.scale_bias.numpy(), f"{base}.scale_bias"))
        pair = add("Gather", [f"{base}.scale_bias", ids])
        if bag.scale_bias.dtype != torch.float32:
            pair = add("Cast", [pair], to=TensorProto.FLOAT)
        last, one, two = const("last", [-1]), const("one", [1]), const("two", [2])
        scale = add("Slice", [pair, const("zero", [0]), one, last])
        bias = add("Slice", [pair, one, two, last])
        add("Add", [add("Mul", [value, scale]), bias])
        made[-1].output[0] = out
    for new in made:
        set_layer_name(new, layer)
    unique = {t.name: t for t in inits}  # a constant asked for twice is stored once
    return made, list(unique.values())
