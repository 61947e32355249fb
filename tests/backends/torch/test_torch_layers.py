"""The torch backend's own per-module timing (forward hooks)."""

from __future__ import annotations

import pytest

import workbench as wb
from workbench.backends.torch.layers import torch_layer_timings
from workbench.errors import BackendError


def test_a_failing_layer_is_named() -> None:
    import torch

    class Broken(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ok = torch.nn.Linear(4, 4)
            self.bad = torch.nn.Linear(4, 4)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            y = self.ok(x)
            return self.bad(y[:, :2]) if self.calls > 3 else self.bad(y)

    model = wb.load(Broken(), example_inputs=(torch.rand(2, 4),))
    session = wb.backend("torch").compile(model, "cpu")
    with pytest.raises(BackendError, match="'bad' failed"):
        torch_layer_timings(session, model.example_inputs(2), repeats=5)
    for sub in model.module.modules():
        assert not sub._forward_hooks
