"""A seeded click-log generator for the recommendation samples (numpy only, no downloads).

Each sample has 13 dense features (standard normal) and one bag of ``BAG`` ids per
sparse feature, drawn from that feature's table with Zipf popularity (row weight
``1 / (rank + 1) ** 1.1``, ranks shuffled over the rows so the hot rows are scattered).
Table sizes span four orders of magnitude (`TABLE_ROWS`). The click probability is
``sigmoid(w . dense + sum_t bias_t[id] + <A dense, sum_t z_t[id]> / 2 + c)``: a linear
part, a per-id popularity term, and a dot product between a projection of the dense
features and per-id latent factors, exactly the structure a DLRM (bottom MLP, embedding
tables, pairwise dot interaction, top MLP) can learn. The latent factors are fixed by
``seed``; the split by ``split``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: rows of each sparse feature's table, smallest to largest
TABLE_ROWS = (3, 8, 40, 150, 600, 2_500, 8_000, 20_000)
DENSE = 13
BAG = 2
LATENT = 4
ZIPF_EXPONENT = 1.1
SPLITS = {"train": (0, 60_000), "test": (1, 20_000)}  # split -> (stream, samples)


@dataclass(frozen=True)
class ClickLog:
    """Generated samples: ``dense`` float32 (N, 13), ``ids`` int64 (N, tables, BAG), labels."""

    dense: np.ndarray
    ids: np.ndarray
    labels: np.ndarray
    probability: np.ndarray  # the true click probability (the best any model can do)


def click_log(split: str = "train", seed: int = 0, samples: int | None = None) -> ClickLog:
    """Samples of ``split`` (``"train"`` or ``"test"``): the same arrays for the same seed.

    The latent world (factors, biases, popularity) depends on ``seed`` only, so both
    splits come from one world; each split draws its own samples.
    """
    stream, default = SPLITS[split]
    world = np.random.default_rng([seed, 0])
    w = world.normal(0.0, 0.35, DENSE)
    project = world.normal(0.0, 1.0 / np.sqrt(DENSE), (LATENT, DENSE))
    biases = [world.normal(0.0, 0.6, rows) for rows in TABLE_ROWS]
    factors = [world.normal(0.0, 0.7, (rows, LATENT)) for rows in TABLE_ROWS]
    ranks = [world.permutation(rows) for rows in TABLE_ROWS]
    rng = np.random.default_rng([seed, 1 + stream])
    n = default if samples is None else samples
    dense = rng.normal(0.0, 1.0, (n, DENSE))
    ids = np.stack(
        [zipf_ids(rng, rows, (n, BAG), rank) for rows, rank in zip(TABLE_ROWS, ranks, strict=True)],
        axis=1,
    )
    logit = dense @ w - 1.0
    summed = np.zeros((n, LATENT))
    for t in range(len(TABLE_ROWS)):
        logit += biases[t][ids[:, t]].mean(axis=1)
        summed += factors[t][ids[:, t]].sum(axis=1)
    logit += np.einsum("nk,nk->n", dense @ project.T, summed) / 2.0
    probability = 1.0 / (1.0 + np.exp(-logit))
    labels = (rng.random(n) < probability).astype(np.int64)
    return ClickLog(dense.astype(np.float32), ids.astype(np.int64), labels, probability)


def zipf_ids(
    rng: np.random.Generator,
    rows: int,
    shape: tuple[int, ...],
    rank: np.ndarray | None = None,
) -> np.ndarray:
    """Ids in ``[0, rows)`` with Zipf popularity; ``rank`` maps popularity rank to row."""
    weights = 1.0 / np.arange(1, rows + 1, dtype=np.float64) ** ZIPF_EXPONENT
    drawn = rng.choice(rows, size=shape, p=weights / weights.sum())
    return drawn if rank is None else rank[drawn]
