"""Bad lookups are one line naming the table and the id, on torch and ONNX models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import workbench as wb
from workbench.errors import InputError
from workbench.loaders.onnx import model_from_proto
from workbench.profiling.embedding_checks import check_lookups


class Bag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tables = nn.ModuleList([nn.EmbeddingBag(10, 4, mode="sum")])

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.tables[0](ids, offsets, per_sample_weights=w)


def _model() -> wb.Model:
    ids, offsets, w = torch.tensor([1, 2, 3]), torch.tensor([0, 1]), torch.ones(3)
    return wb.load(
        Bag().eval(), example_inputs=(ids, offsets, w), input_names=["ids", "offsets", "w"]
    )


def _inputs(
    ids: list[int], offsets: list[int], weights: int | None = None
) -> dict[str, np.ndarray]:
    n = len(ids) if weights is None else weights
    return {"ids": np.array(ids), "offsets": np.array(offsets), "w": np.ones(n, np.float32)}


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (_inputs([1, 12, 3], [0, 1]), r"table tables\.0 \(10 rows\) got id 12 at \[1\]"),
        (_inputs([1, -1, 3], [0, 1]), r"got id -1 at \[1\]; ids must be in \[0, 10\)"),
        (_inputs([1, 2, 3], [0, 2, 1]), r"offsets of table tables\.0 decrease at position 2"),
        (_inputs([1, 2, 3], [1, 2]), r"must be 1-D and start at 0"),
        (_inputs([1, 2, 3], [0, 5]), r"reach 5, past its 3 ids"),
        (_inputs([1, 2, 3], [0, 1], weights=2), r"per-sample weights of table tables\.0"),
    ],
)
def test_torch_bad_lookups_name_the_table(inputs: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_lookups(_model(), inputs)


def test_valid_lookups_with_an_empty_bag_pass() -> None:
    check_lookups(_model(), _inputs([1, 2, 9], [0, 2, 2]))


def test_onnx_negative_id_is_caught_before_gather_wraps_it() -> None:
    table = numpy_helper.from_array(np.ones((6, 2), np.float32), "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["out"], name="items")],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 2])],
        [table],
    )
    model = model_from_proto(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "g"
    )
    check_lookups(model, {"ids": np.array([0, 5])})
    with pytest.raises(InputError, match=r"table items \(6 rows\) got id -2 at \[1\] of input ids"):
        check_lookups(model, {"ids": np.array([0, -2])})
