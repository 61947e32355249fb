"""nn.EmbeddingBag exports as Gather + a reduction (no Loop), with its layer name kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.loaders.embedding_export import gather_bags


class Bags(nn.Module):
    def __init__(self, mode: str = "sum", **options: object) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.tables = nn.ModuleList([nn.EmbeddingBag(50, 4, mode=mode, **options)])  # type: ignore[arg-type]

    def forward(self, ids: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return self.tables[0](ids, *rest) * 2.0


def _ort(model: wb.Model, inputs: dict[str, np.ndarray]) -> np.ndarray:
    session = wb.backend("onnxruntime").compile(model, "cpu")
    try:
        return session.run(inputs)[0]
    finally:
        session.close()


def _torch(model: wb.Model, inputs: dict[str, np.ndarray]) -> np.ndarray:
    assert model.module is not None
    with torch.inference_mode():
        return model.module(*(torch.from_numpy(v) for v in inputs.values())).numpy()


class ThreeBags(nn.Module):
    """One table per mode; the sum takes per-sample weights."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.tables = nn.ModuleList(nn.EmbeddingBag(50, 4, mode=m) for m in ("sum", "mean", "max"))

    def forward(self, ids: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        summed = self.tables[0](ids, per_sample_weights=w)
        return torch.cat([summed, self.tables[1](ids), self.tables[2](ids)], dim=1)


def test_bags_export_as_gather_and_reduce_with_their_names() -> None:
    ids, weights = torch.tensor([[1, 7, 49], [0, 0, 3]]), torch.ones(2, 3)
    model = wb.load(ThreeBags().eval(), example_inputs=(ids, weights), input_names=["ids", "w"])
    exported = model.to_onnx()
    ops = {node.op_type for node in exported.proto.graph.node}
    assert "Loop" not in ops
    assert {"Gather", "ReduceSum", "ReduceMean", "ReduceMax"} <= ops
    assert {"tables.0", "tables.1", "tables.2"} <= {layer.name for layer in exported.layers}
    rng = np.random.default_rng(0)
    inputs = {"ids": rng.integers(0, 50, (16, 3)), "w": rng.random((16, 3), dtype=np.float32)}
    np.testing.assert_allclose(_ort(exported, inputs), _torch(model, inputs), atol=1e-5)
    assert type(model.module.tables[0]) is nn.EmbeddingBag  # the user's modules are back


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_offsets_with_an_empty_bag_match_torch(mode: str) -> None:
    module = Bags(mode).eval()
    ids = torch.tensor([4, 9, 9, 30, 2, 11])
    offsets = torch.tensor([0, 2, 2, 5])  # bag 1 is empty
    with torch.inference_mode():
        expected = module(ids, offsets)
        with gather_bags(module) as paths:
            got = module(ids, offsets)
    assert paths == ["tables.0"]
    assert type(module.tables[0]) is nn.EmbeddingBag  # the original is back
    torch.testing.assert_close(got, expected)


def test_padding_idx_bags_are_left_as_they_are() -> None:
    module = Bags("sum", padding_idx=0)
    with gather_bags(module) as paths:
        assert paths == []
        assert type(module.tables[0]) is nn.EmbeddingBag


class OffsetBag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.EmbeddingBag(50, 4, mode="mean")

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.table(ids, offsets)


def test_offsets_export_without_a_loop_and_match_torch_on_new_sizes() -> None:
    ids, offsets = torch.tensor([4, 9, 9, 30, 2, 11]), torch.tensor([0, 2, 2, 5])
    model = wb.load(
        OffsetBag().eval(),
        example_inputs=(ids, offsets),
        input_names=["ids", "offsets"],
        dynamic_axes={"ids": {0: "n_ids"}, "offsets": {0: "bags"}},  # not one shared batch
    )
    exported = model.to_onnx()
    assert "Loop" not in {node.op_type for node in exported.proto.graph.node}
    # more ids and bags than at export, empty bags in the middle and at the end
    inputs = {"ids": np.arange(1, 10), "offsets": np.array([0, 3, 3, 3, 8, 9])}
    np.testing.assert_allclose(_ort(exported, inputs), _torch(model, inputs), atol=1e-6)
