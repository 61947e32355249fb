"""Structured pruning of a model neither torch.fx nor torch.export can follow."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench as wb
from workbench.errors import TransformError


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        if h.sum() > 0:  # a branch on the data: neither tracer can record it
            h = h * 2
        return self.b(h)


def test_structured_pruning_says_in_one_line_why_it_cannot() -> None:
    model = wb.load(_Branchy(), example_inputs=(torch.rand(2, 4),))
    with pytest.raises(TransformError, match=r"no layer of _Branchy can be channel-pruned") as info:
        wb.prune(model, sparsity=0.5, structured=True)
    message = str(info.value)
    assert "\n" not in message and "structured=False" in message
    assert "torch.fx trace (" in message and "torch.export graph (" in message
    sparse = wb.prune(model, sparsity=0.5)  # what it suggests works
    assert sparse.recipe["achieved_sparsity"] == pytest.approx(0.5, abs=0.05)
