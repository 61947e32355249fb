"""The numba backend runs an exported embedding bag as one fused gather-reduce node."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.errors import InputError


class Bags(nn.Module):
    """Three bag forms of the export: sum, mean, and sum with per-sample weights."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.clicks = nn.EmbeddingBag(40, 16, mode="sum")
        self.views = nn.EmbeddingBag(7, 16, mode="mean")
        self.weighted = nn.EmbeddingBag(40, 16, mode="sum")

    def forward(self, a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.clicks(a) + self.views(b) + self.weighted(a, per_sample_weights=w)


def _inputs(batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "a": rng.integers(0, 40, (batch, 3)),
        "b": rng.integers(0, 7, (batch, 3)),
        "w": rng.random((batch, 3), dtype=np.float32),
    }


@pytest.fixture(scope="module")
def session():
    module = Bags().eval()
    example = tuple(torch.from_numpy(v) for v in _inputs(4, 0).values())
    model = wb.load(module, example_inputs=example, input_names=["a", "b", "w"])
    compiled = wb.backend("numba").compile(model, "cpu")
    yield module, compiled
    compiled.close()


def test_every_exported_bag_is_one_fused_node(session) -> None:
    _, compiled = session
    ops = [n.op_type for n in compiled.graph.nodes]
    assert ops.count("EmbeddingBag") == 3 and "Gather" not in ops and "ReduceSum" not in ops
    layers = {n.layer: n.attrs["mode"] for n in compiled.graph.nodes if n.op_type == "EmbeddingBag"}
    assert layers == {"clicks": "sum", "views": "mean", "weighted": "sum"}


@pytest.mark.parametrize("batch", [5, 3000], ids=["serial", "parallel"])
def test_fused_bags_equal_torch_on_new_ids_without_planning_again(session, batch: int) -> None:
    module, compiled = session
    for seed in (1, 2):  # new ids each run: the same plan, new values
        inputs = _inputs(batch, seed)
        with torch.inference_mode():
            want = module(*(torch.from_numpy(v) for v in inputs.values())).numpy()
        np.testing.assert_allclose(compiled.run(inputs)[0], want, rtol=1e-5, atol=1e-6)
    assert len(compiled._executor._plans) <= 2  # one per batch size, not one per ids


@pytest.mark.parametrize(("bad", "message"), [(-1, r"got id -1 at \[2, 1\]"), (40, "got id 40")])
def test_a_bad_id_is_one_line_naming_the_table(session, bad: int, message: str) -> None:
    _, compiled = session
    inputs = _inputs(5, 3)
    inputs["a"][2, 1] = bad
    with pytest.raises(InputError, match=rf"table clicks \(40 rows\) {message}.*\[0, 40\)"):
        compiled.run(inputs)


def test_per_layer_times_keep_the_table_names(session) -> None:
    _, compiled = session
    timings = {t.layer: t for t in compiled.run_layers(_inputs(5, 4), repeats=1)}
    assert {"clicks", "views", "weighted"} <= set(timings)
    assert timings["weighted"].detail["fused"]  # the Mul, Unsqueeze and ReduceSum
