"""Embedding-table compression transforms: row-wise int8/int4, fp16, frequency pruning.

A toy two-table click model keeps these fast; the dlrm sample's accuracy and bytes are
measured in docs/recommendation.md ("Compression").
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.data import Dataset
from workbench.errors import TransformError
from workbench.optimize.base import config_from_dict, config_to_dict
from workbench.optimize.embeddings import TableInt4, TablePrune, table_bytes

ROWS = (1200, 40)


class Toy(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.tables = nn.ModuleList(nn.EmbeddingBag(r, width, mode="sum") for r in ROWS)
        self.head = nn.Linear(4 + 2 * width, 1)

    def forward(self, dense: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        bags = [table(ids) for table, ids in zip(self.tables, (a, b), strict=True)]
        return self.head(torch.cat([dense, *bags], 1))


def _inputs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # skewed ids: low rows are hot, as a Zipf law makes them
    a = np.minimum(rng.geometric(0.01, (n, 3)) - 1, ROWS[0] - 1)
    b = rng.integers(0, ROWS[1], (n, 3))
    dense = rng.normal(size=(n, 4)).astype(np.float32)
    return {"dense": dense, "a": a.astype(np.int64), "b": b.astype(np.int64)}


@pytest.fixture(scope="module")
def toy() -> wb.Model:
    x = _inputs(2)
    args = tuple(torch.from_numpy(v) for v in x.values())
    return wb.load(Toy(), example_inputs=args, input_names=list(x), name="toy")


def _eager(model: wb.Model, x: dict[str, np.ndarray]) -> np.ndarray:
    assert model.module is not None
    with torch.no_grad():
        return model.module(*(torch.from_numpy(x[s.name]) for s in model.inputs)).numpy()


def _dequantized(table: torch.Tensor, storage: str) -> np.ndarray:
    """Rows as FBGEMM's own prepack, then the documented row layout decoded in numpy."""
    ops = torch.ops.quantized
    if storage == "int8":
        packed = ops.embedding_bag_byte_prepack(table).numpy()
        codes, pair = packed[:, :-8].astype(np.float32), packed[:, -8:].copy().view(np.float32)
    else:
        packed = ops.embedding_bag_4bit_prepack(table).numpy()
        body = packed[:, :-4]
        codes = np.stack([body & 15, body >> 4], -1).reshape(len(body), -1).astype(np.float32)
        pair = packed[:, -4:].copy().view(np.float16).astype(np.float32)
    return codes[:, : table.shape[1]] * pair[:, :1] + pair[:, 1:]


@pytest.mark.parametrize("name", ["table-int8", "table-int4", "table-fp16"])
def test_eager_form_is_the_documented_rows_and_onnx_runs_the_same(toy: wb.Model, name: str) -> None:
    variant = wb.transform(toy, name)
    x = _inputs(64, seed=1)
    eager = _eager(variant, x)
    # the reference: the parent's module with its tables replaced by the decoded rows
    reference = Toy()
    reference.load_state_dict(toy.module.state_dict())  # type: ignore[union-attr]
    storage = name.removeprefix("table-")
    for table in reference.tables:
        w = table.weight.detach()
        rows = w.half().float().numpy() if storage == "fp16" else _dequantized(w, storage)
        table.weight.data = torch.from_numpy(rows)
    with torch.no_grad():
        expected = reference(*(torch.from_numpy(v) for v in x.values())).numpy()
    tol = 2e-3 if storage == "fp16" else 1e-5  # fp16 eager sums its bags in half precision
    np.testing.assert_allclose(eager, expected, atol=tol)
    ops = {n.op_type for n in variant.to_onnx().proto.graph.node}  # type: ignore[union-attr]
    assert "Loop" not in ops and "Gather" in ops
    onnx_out = wb.backend("onnxruntime").compile(variant, "cpu").run(x)[0]
    np.testing.assert_allclose(onnx_out, eager, atol=tol)
    # generated inputs spread over the tables' rows, as for the parent (not all row 0)
    drawn = variant.example_inputs(64, ids="zipf")
    assert drawn["a"].max() > 0 and np.array_equal(
        drawn["a"], toy.example_inputs(64, ids="zipf")["a"]
    )
    # the layers keep their canonical names, in torch and in the ONNX form
    assert {"tables.0", "tables.1"} <= {layer.name for layer in variant.to_onnx().layers}


@pytest.mark.parametrize(
    ("name", "width", "most"),
    [("table-int8", 64, 0.30), ("table-int4", 64, 0.18), ("table-fp16", 64, 0.5)],
)
def test_table_bytes_meet_the_targets_at_width_64(name: str, width: int, most: float) -> None:
    x = _inputs(2)
    args = tuple(torch.from_numpy(v) for v in x.values())
    model = wb.load(Toy(width), example_inputs=args, input_names=list(x))
    variant = wb.transform(model, name)
    share = table_bytes(variant) / table_bytes(model)
    assert share <= most
    # the layers' params_bytes (what size_bytes sums) say the same
    assert variant.layer("tables.0").params_bytes == table_bytes(variant) * 1200 // 1240
    assert variant.params_bytes - model.params_bytes == table_bytes(variant) - table_bytes(model)


def test_row_layouts_of_narrow_tables(toy: wb.Model) -> None:
    # width 8: a row is 32 bytes in fp32; int8 keeps 8 codes + fp32 scale and bias (16),
    # int4 4 bytes of nibbles + fp16 scale and bias (8): the scales dominate narrow rows
    fp32 = table_bytes(toy)
    assert table_bytes(wb.transform(toy, "table-int8")) == fp32 // 2
    assert table_bytes(wb.transform(toy, "table-int4")) == fp32 // 4


def test_the_input_model_is_never_changed_and_the_recipe_rebuilds(toy: wb.Model) -> None:
    before = {k: v.clone() for k, v in toy.module.state_dict().items()}  # type: ignore[union-attr]
    variant = wb.transform(toy, ["table-prune", "table-int8"], data=_train())
    assert all(type(t) is nn.EmbeddingBag for t in toy.module.tables)  # type: ignore[union-attr]
    for key, value in toy.module.state_dict().items():  # type: ignore[union-attr]
        assert torch.equal(value, before[key])
    assert variant.recipe_name == "table-prune(50%) → table-int8"
    rebuilt = wb.transform(toy, json.loads(json.dumps(variant.recipe)), data=_train())
    x = _inputs(16, seed=3)
    np.testing.assert_array_equal(_eager(rebuilt, x), _eager(variant, x))


def _train() -> Dataset:
    x = _inputs(4000, seed=7)
    return Dataset.from_arrays(x, np.zeros(4000, dtype=np.int64), batch_size=500)


def test_prune_keeps_the_most_used_rows_and_a_weighted_fallback(toy: wb.Model) -> None:
    train = _train()
    pruned = wb.transform(toy, TablePrune(keep=0.25), data=train)
    assert pruned.recipe["tables"] == ["tables.0"]  # tables.1 has under min_rows rows
    bag = pruned.module.tables[0]  # type: ignore[union-attr]
    counts = np.bincount(train.inputs["a"].ravel(), minlength=ROWS[0])
    kept = np.argsort(-counts, kind="stable")[:300]
    remap = bag.remap.numpy()
    assert remap.dtype == np.int32 and (remap[kept] == np.arange(300)).all()
    dropped = np.setdiff1d(np.arange(ROWS[0]), kept)
    assert (remap[dropped] == 300).all()
    weight = toy.module.tables[0].weight.detach().numpy()  # type: ignore[union-attr]
    share = (counts[dropped] + 1.0) / (counts[dropped] + 1.0).sum()
    np.testing.assert_allclose(bag.values[300].numpy(), share @ weight[dropped], rtol=1e-5)
    # 301 stored rows of 8 floats plus a 4-byte remap of every original row
    assert pruned.layer("tables.0").params_bytes == 301 * 8 * 4 + ROWS[0] * 4
    x = _inputs(32, seed=5)
    onnx_out = wb.backend("onnxruntime").compile(pruned, "cpu").run(x)[0]
    np.testing.assert_allclose(onnx_out, _eager(pruned, x), atol=1e-5)


@pytest.mark.parametrize(
    ("mode", "last", "storage"),
    [
        ("sum", False, "int8"),
        ("mean", False, "int8"),
        ("mean", True, "int4"),
        ("sum", True, "int4"),
    ],
)
def test_offsets_and_per_sample_weights_in_both_forms(mode: str, last: bool, storage: str) -> None:
    from workbench.optimize.embeddings import _made

    bag = nn.EmbeddingBag(50, 8, mode=mode, include_last_offset=last)
    ids = torch.tensor([3, 7, 7, 49, 0, 12])
    offsets = torch.tensor([0, 2, 2, 5, 6] if last else [0, 2, 2, 5])  # the third bag is empty
    weights = torch.rand(6) if mode == "sum" else None
    compressed = _made(storage, bag.weight.detach().numpy(), None, bag)
    rows = torch.from_numpy(_dequantized(bag.weight.detach(), storage))
    expected = nn.functional.embedding_bag(
        ids, rows, offsets, mode=mode, per_sample_weights=weights, include_last_offset=last
    )
    torch.testing.assert_close(compressed(ids, offsets, weights), expected)
    portable = compressed._portable(ids, offsets, weights)
    torch.testing.assert_close(portable, expected, atol=1e-5, rtol=1e-5)


def test_non_default_configs_round_trip_through_json() -> None:
    for config in (TablePrune(keep=0.3, min_rows=10, exclude=("tables.1",)), TableInt4()):
        recipe = json.loads(json.dumps(config_to_dict(config)))
        assert config_from_dict(recipe) == config


def test_bad_requests_get_one_clear_line(toy: wb.Model) -> None:
    with pytest.raises(TransformError, match="already int8"):
        wb.transform(wb.transform(toy, "table-int8"), "table-int4")
    with pytest.raises(TransformError, match=r"\['nope'\] are not tables"):
        wb.transform(toy, "table-fp16", exclude=["nope"])
    with pytest.raises(TransformError, match=r"keep=1\.5"):
        wb.transform(toy, "table-prune", keep=1.5, data=_train())
    with pytest.raises(TransformError, match="no embedding tables"):
        wb.transform(toy, "table-int8", exclude=["tables.0", "tables.1"])
    with pytest.raises(TransformError, match="is onnx: load the torch model"):
        wb.transform(toy.to_onnx(), "table-prune", data=_train())
    with pytest.raises(TransformError, match="needs data"):
        wb.transform(toy, "table-prune")


def test_a_sweep_takes_the_table_transforms_like_any_other(toy: wb.Model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    x = _inputs(256, seed=11)
    labels = (_eager(toy, x).ravel() > np.median(_eager(toy, x))).astype(np.int64)
    data = Dataset.from_arrays(x, labels, batch_size=128)
    table = wb.sweep(
        toy, variants=["baseline", "table-int8", "table-int4"], backends=["torch"], data=data,
        metric="roc_auc", batch_size=8, budget_s=0.02, store=tmp_path / "s.sqlite",
    )  # fmt: skip
    rows = table.df.set_index("variant")
    assert rows["error"].isna().all()
    assert rows.loc["table-int8", "size_bytes"] < rows.loc["baseline", "size_bytes"]
    assert rows.loc["table-int4", "size_bytes"] < rows.loc["table-int8", "size_bytes"]
    assert rows.loc["baseline", "metric_value"] == 1.0  # the labels are its own ranking
    assert rows["pareto"].dtype == bool and rows["pareto"].any()


@pytest.mark.parametrize("name", ["table-int8", "table-int4", "table-fp16"])
def test_an_onnx_model_gets_the_same_lookups_as_the_torch_export(toy: wb.Model, name: str) -> None:
    onnx_model = toy.to_onnx()
    before = onnx_model.onnx_bytes
    variant = wb.transform(onnx_model, name)
    assert onnx_model.proto.SerializeToString() == before  # type: ignore[union-attr]
    assert variant.framework == "onnx" and variant.recipe["tables"] == ["tables.0", "tables.1"]
    graph = variant.proto.graph  # type: ignore[union-attr]
    assert "tables.0.weight" not in {t.name for t in graph.initializer}
    x = _inputs(64, seed=2)
    ort = wb.backend("onnxruntime")
    got = ort.compile(variant, "cpu").run(x)[0]
    expected = ort.compile(wb.transform(toy, name), "cpu").run(x)[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert variant.layer("tables.0").params_bytes < onnx_model.layer("tables.0").params_bytes


class Tower(nn.Module):
    """An item tower: an ``nn.Embedding`` lookup (no bag), as the two-tower sample has."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.table = nn.Embedding(ROWS[0], 8)
        self.mlp = nn.Linear(8, 4)

    def forward(self, item: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.table(item))


def test_prune_keeps_a_table_whose_rows_are_all_read_equally_whole(toy: wb.Model) -> None:
    x = _inputs(1200)
    x["a"][:] = np.arange(1200)[:, None]  # every row of tables.0 read three times
    data = Dataset.from_arrays(x, np.zeros(1200, dtype=np.int64), batch_size=600)
    with pytest.raises(TransformError, match="pruned no table of 'toy'"):
        wb.transform(toy, "table-prune", data=data)
    assert wb.transform(toy, "table-prune", data=_train()).recipe["tables"] == ["tables.0"]


@pytest.mark.parametrize("name", ["table-int8", "table-int4", "table-prune"])
def test_an_embedding_lookup_is_compressed_too(name: str) -> None:
    item = torch.from_numpy(_inputs(2)["a"][:, 0])
    model = wb.load(Tower(), example_inputs=(item,), input_names=["item"])
    train = Dataset.from_arrays(_inputs(4000, seed=7)["a"][:, 0], np.zeros(4000), batch_size=500)
    variant = wb.transform(model, name, data=train)
    assert variant.recipe["tables"] == ["table"]
    x = {"item": _inputs(64, seed=4)["a"][:, 0]}
    eager = _eager(variant, x)
    assert eager.shape == (64, 4)
    if name != "table-prune":
        reference = Tower()
        reference.load_state_dict(model.module.state_dict())  # type: ignore[union-attr]
        rows = _dequantized(reference.table.weight.detach(), name.removeprefix("table-"))
        reference.table.weight.data = torch.from_numpy(rows)
        with torch.no_grad():
            np.testing.assert_allclose(eager, reference(torch.from_numpy(x["item"])), atol=1e-5)
    onnx_out = wb.backend("onnxruntime").compile(variant, "cpu").run(x)[0]
    np.testing.assert_allclose(onnx_out, eager, atol=1e-5)
