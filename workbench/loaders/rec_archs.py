"""The recommendation samples' modules (imports torch at import time): `DLRM`,
`TwoTower` and `AnomalyAutoencoder`.

The DLRM-style click model of the ``dlrm`` sample:

Inputs: ``dense`` float32 ``(N, 13)`` and one int64 ``(N, BAG)`` bag of ids per sparse
feature, ``ids_0`` ... ``ids_7`` (one input per table, so each input's ids are bounded by
its own table's rows). Output: ``(N, 1)`` click logits. Layers read as canonical names:
``bottom.0``, ``tables.3`` (an ``nn.EmbeddingBag``, sum over the bag), ``top.2``. Every
table is ``EMBEDDING_DIM`` wide unless built with another ``dim`` (a sample's card records
its width, and loading builds that).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from workbench.errors import ParameterError
from workbench.loaders.rec_data import (
    AGES,
    BAG,
    DENSE,
    HISTORY,
    ITEMS,
    READING_LATENT,
    READINGS,
    REGIONS,
    TABLE_ROWS,
)

__all__ = [
    "DLRM",
    "EMBEDDING_DIM",
    "AnomalyAutoencoder",
    "TwoTower",
    "check_tables_fit",
    "two_tower_inputs",
]

#: the DLRM tables' width: DLRM's own tables are 64-128 wide, and at width 64 a row-wise
#: int8 row (64 codes + an fp32 scale and bias) is 28% of its fp32 bytes
EMBEDDING_DIM = 64


def check_tables_fit(tables: Mapping[str, tuple[int, int]], itemsize: int = 4) -> None:
    """Refuse, before anything is allocated, tables that do not fit the free memory.

    Args:
        tables: ``{layer: (rows, width)}`` of the tables a module is about to build.
        itemsize: bytes per element (float32: 4).

    Raises:
        ParameterError: rows or width not positive, or the tables' bytes above the
            memory free now (the line names the largest table).

    Example:
        >>> check_tables_fit({"tables.0": (10**12, 8)})
        ParameterError: table tables.0 (1,000,000,000,000 rows x 8) needs 29,802,322 MiB; ...
    """
    import psutil

    for layer, (rows, width) in tables.items():
        if rows <= 0 or width <= 0:
            raise ParameterError(
                f"table {layer} needs positive rows and width, got {rows} x {width}"
            )
    need = sum(rows * width * itemsize for rows, width in tables.values())
    free = psutil.virtual_memory().available
    if need > free:
        layer, (rows, width) = max(tables.items(), key=lambda item: item[1][0] * item[1][1])
        raise ParameterError(
            f"table {layer} ({rows:,} rows x {width}) needs {rows * width * itemsize / 2**20:,.0f} "
            f"MiB, the tables {need / 2**20:,.0f} MiB in all, more than the {free / 2**20:,.0f} "
            "MiB of free memory; declare fewer rows or a smaller width"
        )


class DLRM(nn.Module):
    """Bottom MLP, EmbeddingBag tables, pairwise dot interaction, top MLP.

    Args:
        table_rows: each table's rows.
        dim: every table's width, and the bottom MLP's output width (the dot interaction
            pairs the bottom vector with each table's bag).

    Raises:
        ParameterError: rows or ``dim`` not positive, or tables larger than free memory.

    Example:
        >>> model = DLRM()
        >>> model(torch.zeros(2, 13), *[torch.zeros(2, 2, dtype=torch.long)] * 8).shape
        torch.Size([2, 1])
    """

    pair_index: torch.Tensor

    def __init__(self, table_rows: tuple[int, ...] = TABLE_ROWS, dim: int = EMBEDDING_DIM) -> None:
        check_tables_fit({f"tables.{i}": (rows, dim) for i, rows in enumerate(table_rows)})
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


class TwoTower(nn.Module):
    """A user tower and an item tower whose dot products score every item for a user.

    User tower: ``users.region`` and ``users.age`` (``nn.Embedding``) and ``users.history``
    (``nn.EmbeddingBag``, mean of the user's past items), concatenated, through the MLP
    ``users.mlp``. Item tower: ``items.table`` (one row per item) through ``items.mlp``.
    Inputs ``region``, ``age`` int64 ``(N,)`` and ``history`` int64 ``(N, HISTORY)``;
    output ``scores`` ``(N, ITEMS)``, the items already in the history set to -inf (a
    retrieval service does not recommend them again).

    Example:
        >>> TwoTower()(*two_tower_inputs(3))["scores"].shape
        torch.Size([3, 2000])
    """

    all_items: torch.Tensor

    def __init__(self, items: int = ITEMS, dim: int = 32) -> None:
        check_tables_fit({"users.history": (items, dim), "items.table": (items, dim)})
        super().__init__()
        self.users = nn.ModuleDict(
            {
                "region": nn.Embedding(REGIONS, 16),
                "age": nn.Embedding(AGES, 8),
                "history": nn.EmbeddingBag(items, dim, mode="mean"),
                "mlp": nn.Sequential(nn.Linear(16 + 8 + dim, 64), nn.ReLU(), nn.Linear(64, dim)),
            }
        )
        self.items = nn.ModuleDict(
            {"table": nn.Embedding(items, dim), "mlp": nn.Sequential(nn.Linear(dim, dim))}
        )
        self.register_buffer("all_items", torch.arange(items), persistent=False)

    def user_vectors(
        self, region: torch.Tensor, age: torch.Tensor, history: torch.Tensor
    ) -> torch.Tensor:
        """The user tower: ``(N, dim)``."""
        users = self.users
        parts = [users["region"](region), users["age"](age), users["history"](history)]
        return users["mlp"](torch.cat(parts, dim=1))  # type: ignore[no-any-return]

    def item_vectors(self) -> torch.Tensor:
        """The item tower over every item: ``(ITEMS, dim)``."""
        return self.items["mlp"](self.items["table"](self.all_items))  # type: ignore[no-any-return]

    def forward(
        self, region: torch.Tensor, age: torch.Tensor, history: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        scores = self.user_vectors(region, age, history) @ self.item_vectors().T
        return {"scores": scores.scatter(1, history, float("-inf"))}


def two_tower_inputs(batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Zeros of `TwoTower`'s input shapes (id 0 is valid everywhere)."""
    zeros = torch.zeros(batch, dtype=torch.long)
    return zeros, zeros.clone(), torch.zeros(batch, HISTORY, dtype=torch.long)


TWO_TOWER_INPUTS = ["region", "age", "history"]


class AnomalyAutoencoder(nn.Module):
    """An MLP autoencoder whose reconstruction error is an anomaly score.

    ``encoder`` READINGS-32-READING_LATENT, ``decoder`` back; input ``x`` float32
    ``(N, READINGS)``. Outputs ``scores`` ``(N,)``, the mean squared reconstruction
    error (higher: more anomalous), and ``label`` int64 ``(N,)``, 1 where the score is
    above ``threshold`` (a buffer saved with the weights, chosen on the validation split).

    Example:
        >>> AnomalyAutoencoder()(torch.zeros(2, 24))["label"].tolist()
        [0, 0]
    """

    threshold: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(READINGS, 32), nn.ReLU(), nn.Linear(32, READING_LATENT)
        )
        self.decoder = nn.Sequential(
            nn.Linear(READING_LATENT, 32), nn.ReLU(), nn.Linear(32, READINGS)
        )
        self.register_buffer("threshold", torch.tensor(float("inf")))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = (self.decoder(self.encoder(x)) - x).pow(2).mean(dim=1)
        return {"scores": scores, "label": (scores > self.threshold).long()}
