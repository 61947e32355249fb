"""The DLRM-style click model of the ``dlrm`` sample (imports torch at import time).

Inputs: ``dense`` float32 ``(N, 13)`` and one int64 ``(N, BAG)`` bag of ids per sparse
feature, ``ids_0`` ... ``ids_7`` (one input per table, so each input's ids are bounded by
its own table's rows). Output: ``(N, 1)`` click logits. Layers read as canonical names:
``bottom.0``, ``tables.3`` (an ``nn.EmbeddingBag``, sum over the bag), ``top.2``.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.loaders.rec_data import BAG, DENSE, TABLE_ROWS

__all__ = ["DLRM"]


class DLRM(nn.Module):
    """Bottom MLP, EmbeddingBag tables, pairwise dot interaction, top MLP.

    Example:
        >>> model = DLRM()
        >>> model(torch.zeros(2, 13), *[torch.zeros(2, 2, dtype=torch.long)] * 8).shape
        torch.Size([2, 1])
    """

    pair_index: torch.Tensor

    def __init__(self, table_rows: tuple[int, ...] = TABLE_ROWS, dim: int = 8) -> None:
        super().__init__()
        self.bottom = nn.Sequential(nn.Linear(DENSE, 32), nn.ReLU(), nn.Linear(32, dim), nn.ReLU())
        self.tables = nn.ModuleList(nn.EmbeddingBag(rows, dim, mode="sum") for rows in table_rows)
        features = len(table_rows) + 1
        pairs = features * (features - 1) // 2
        rows, cols = torch.triu_indices(features, features, offset=1)
        # a fixed index, saved with the module so the export sees constants
        self.register_buffer("pair_index", rows * features + cols, persistent=False)
        self.top = nn.Sequential(nn.Linear(dim + pairs, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, dense: torch.Tensor, *ids: torch.Tensor) -> torch.Tensor:
        x = self.bottom(dense)
        vectors = torch.stack(
            [x, *(table(i) for table, i in zip(self.tables, ids, strict=True))], 1
        )
        dots = torch.bmm(vectors, vectors.transpose(1, 2)).flatten(1)
        return self.top(torch.cat([x, dots[:, self.pair_index]], dim=1))


def example_inputs(batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Zeros of the model's input shapes (ids 0 are valid in every table)."""
    ids = [torch.zeros(batch, BAG, dtype=torch.long) for _ in TABLE_ROWS]
    return (torch.zeros(batch, DENSE), *ids)


INPUT_NAMES = ["dense", *(f"ids_{t}" for t in range(len(TABLE_ROWS)))]
