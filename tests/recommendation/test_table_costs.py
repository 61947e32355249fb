"""Embedding tables in the cost model: bytes touched by a batch, not the whole table."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import workbench as wb
from workbench.loaders.onnx import model_from_proto
from workbench.profiling.cost import onnx_costs, torch_costs
from workbench.profiling.embeddings import embedding_tables


class Tables(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.words = nn.Embedding(1000, 16)
        self.bags = nn.EmbeddingBag(5000, 8, mode="sum")

    def forward(self, word_ids: torch.Tensor, bag_ids: torch.Tensor) -> torch.Tensor:
        return self.words(word_ids).sum(dim=1)[:, :8] + self.bags(bag_ids)


def _torch_model() -> wb.Model:
    ids = torch.zeros(2, 3, dtype=torch.long)
    return wb.load(Tables().eval(), example_inputs=(ids, ids), input_names=["word_ids", "bag_ids"])


# a batch of 4 bags of 3 ids over only 5 distinct rows of each table
INPUTS = {
    "word_ids": np.array([[0, 1, 2], [2, 3, 4], [0, 0, 0], [4, 4, 1]]),
    "bag_ids": np.array([[10, 11, 12], [12, 13, 14], [10, 10, 10], [14, 14, 11]]),
}


def test_torch_tables_count_rows_touched_not_the_table() -> None:
    model = _torch_model()
    costs, notes = torch_costs(model, INPUTS)
    ids_bytes = 12 * 8
    assert costs.loc["words", "bytes"] == ids_bytes + 4 * 3 * 16 * 4 + 5 * 16 * 4
    assert costs.loc["bags", "bytes"] == ids_bytes + 4 * 8 * 4 + 5 * 8 * 4
    assert costs.loc["bags", "flops"] == 12 * 8  # one add per looked-up element
    assert costs.loc["words", "params_bytes"] == 1000 * 16 * 4  # the table is still its size
    assert not any("EmbeddingBag" in n for n in notes)

    tables = embedding_tables(model, INPUTS).set_index("layer")
    assert tables.loc["bags", ["rows", "width", "table_bytes"]].tolist() == [5000, 8, 160_000]
    assert tables.loc["bags", ["lookups", "unique_rows", "bytes_touched"]].tolist() == [12, 5, 160]


def _gather_graph() -> onnx.ModelProto:
    table = numpy_helper.from_array(np.ones((1000, 16), np.float32), "table")
    node = helper.make_node("Gather", ["table", "ids"], ["out"], name="words")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 16])],
        [table],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_gather_counts_rows_touched_and_lists_the_table() -> None:
    proto = _gather_graph()
    inputs = {"ids": INPUTS["word_ids"]}
    costs, _ = onnx_costs(proto, inputs)
    assert costs.loc["words", "bytes"] == 12 * 8 + 12 * 16 * 4 + 5 * 16 * 4
    tables = embedding_tables(model_from_proto(proto, name="g"), inputs)
    assert tables[["layer", "rows", "width", "lookups", "unique_rows"]].values.tolist() == [
        ["words", 1000, 16, 12, 5]
    ]
