"""Generated inputs follow each input's meaning: ids over their table, masks of ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.errors import InputError
from workbench.loaders.onnx import model_from_proto


def _embedding_graph(rows: int = 50) -> wb.Model:
    """ids (int32, cast to int64) index a (rows, 4) table; a mask and token types ride along."""
    from onnx import TensorProto, helper, numpy_helper

    table = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["ids"], ["ids64"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "ids64"], ["vectors"]),
            helper.make_node("Gather", ["types", "token_type_ids"], ["type_vectors"]),
            helper.make_node("Add", ["vectors", "type_vectors"], ["summed"]),
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
            helper.make_node("Mul", ["summed", "mask3"], ["out"]),
        ],
        "embedding",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT32, ["batch", 6]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", 6]),
            helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", 6]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 6, 4])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.zeros((2, 4), np.float32), "types"),
            numpy_helper.from_array(np.array([-1], np.int64), "last"),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return model_from_proto(proto, name="embedding")


def test_ids_cover_their_table_and_masks_are_ones() -> None:
    model = _embedding_graph(rows=50)
    assert model.index_bounds() == {"ids": 50, "token_type_ids": 2}
    x = model.example_inputs(batch_size=64)
    ids = x["ids"]
    assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < 50
    assert len(np.unique(ids)) > 40  # spread over the table, not one row
    assert (x["attention_mask"] == 1).all() and (x["token_type_ids"] == 0).all()
    # the graph runs on them: every lookup is inside the table
    (out,) = wb.backend("onnxruntime").compile(model, "cpu").run(x)
    np.testing.assert_array_equal(out[..., 0], ids * 4)


def test_ids_are_seeded_and_zipf_favours_the_first_rows() -> None:
    model = _embedding_graph(rows=50)
    first, again = model.example_inputs(8, seed=3), model.example_inputs(8, seed=3)
    np.testing.assert_array_equal(first["ids"], again["ids"])
    assert not np.array_equal(first["ids"], model.example_inputs(8, seed=4)["ids"])
    zipf = model.example_inputs(500, ids="zipf")["ids"]
    counts = np.bincount(zipf.ravel(), minlength=50)
    assert zipf.max() < 50 and counts[0] > 5 * counts[25:].mean()
    with pytest.raises(InputError, match="ids must be"):
        model.example_inputs(2, ids="normal")  # type: ignore[arg-type]


class _Bag(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.items = torch.nn.Embedding(37, 4)
        self.users = torch.nn.Embedding(1000, 4)

    def forward(self, item: torch.Tensor, user: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        return self.items(item.view(-1)).sum(0) + self.users(user).sum(0) * count.sum()


def test_a_torch_embedding_bounds_the_ids_it_receives() -> None:
    module = _Bag()
    example = (torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    model = wb.load(module, example_inputs=(*example, torch.ones(2, dtype=torch.long)))
    assert model.index_bounds() == {"item": 37, "user": 1000}
    x = model.example_inputs(batch_size=200)
    assert x["item"].max() < 37 and len(np.unique(x["item"])) > 30
    assert x["user"].max() < 1000 and len(np.unique(x["user"])) > 150
    assert (x["count"] == 0).all()  # an integer that indexes nothing stays zero
