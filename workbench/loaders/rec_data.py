"""Seeded generators for the recommendation and anomaly samples (numpy only, no downloads).

`click_log` (the ``dlrm`` sample), `interactions` (``two-tower``) and `sensor_readings`
(``anomaly-autoencoder``); each returns the same arrays for the same seed.

The click log:

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


# --- two-tower retrieval: users with a taste, items with a position in the same space ---
ITEMS = 2_000
REGIONS = 30
AGES = 8
HISTORY = 10
HELD_OUT = 5
TASTE = 8
INTERACTION_SPLITS = {"train": (0, 12_000), "test": (1, 3_000)}


@dataclass(frozen=True)
class Interactions:
    """Users and the items they chose: ``region``, ``age`` int64 (N,), ``history`` int64
    (N, HISTORY) and the held-out next choices ``held_out`` int64 (N, HELD_OUT), disjoint
    from the history; ``affinity`` (N, ITEMS) is the true preference (the best ranking)."""

    region: np.ndarray
    age: np.ndarray
    history: np.ndarray
    held_out: np.ndarray
    affinity: np.ndarray


def interactions(split: str = "train", seed: int = 0, users: int | None = None) -> Interactions:
    """Users of ``split`` (``"train"`` or ``"test"``, disjoint users of one world).

    Each item has a position in a ``TASTE``-dimensional space and a popularity; each user
    a taste: their region's and age group's tastes plus their own. A user chooses
    ``HISTORY + HELD_OUT`` distinct items with probability proportional to
    ``exp(1.5 <taste, item> / sqrt(TASTE) + popularity)`` (Gumbel top-k), the first
    ``HISTORY`` as their history, the rest held out. A two-tower model can learn this:
    the history and the user's features reveal the taste, and an item's vector its position.
    """
    stream, default = INTERACTION_SPLITS[split]
    world = np.random.default_rng([seed, 100])
    items = world.normal(0.0, 1.0, (ITEMS, TASTE))
    popularity = world.normal(0.0, 1.0, ITEMS)
    region_taste = world.normal(0.0, 0.8, (REGIONS, TASTE))
    age_taste = world.normal(0.0, 0.6, (AGES, TASTE))
    rng = np.random.default_rng([seed, 101 + stream])
    n = default if users is None else users
    region, age = rng.integers(0, REGIONS, n), rng.integers(0, AGES, n)
    taste = region_taste[region] + age_taste[age] + rng.normal(0.0, 0.7, (n, TASTE))
    affinity = 1.5 * taste @ items.T / np.sqrt(TASTE) + popularity
    gumbel = -np.log(-np.log(rng.random((n, ITEMS))))
    chosen = np.argsort(-(affinity + gumbel), axis=1)[:, : HISTORY + HELD_OUT]
    return Interactions(
        region.astype(np.int64),
        age.astype(np.int64),
        np.ascontiguousarray(chosen[:, :HISTORY]).astype(np.int64),
        np.ascontiguousarray(chosen[:, HISTORY:]).astype(np.int64),
        affinity.astype(np.float32),
    )


# --- anomaly detection: readings on a low-dimensional manifold, some knocked off it ---
READINGS = 24
READING_LATENT = 4
ANOMALY_RATE = 0.03
READING_SPLITS = {"train": (0, 10_000), "validation": (1, 2_000), "test": (2, 2_000)}


@dataclass(frozen=True)
class Readings:
    """Sensor readings ``x`` float32 (N, READINGS) and ``labels`` int64 (1: an anomaly)."""

    x: np.ndarray
    labels: np.ndarray


def sensor_readings(split: str = "train", seed: int = 0, samples: int | None = None) -> Readings:
    """Readings of ``split`` (``"train"``, ``"validation"`` or ``"test"``), one world.

    A normal reading is ``tanh(z W1) W2 + noise`` with ``z`` standard normal in
    ``READING_LATENT`` dimensions: 24 sensors driven by 4 hidden causes. An anomaly
    (``ANOMALY_RATE`` of every split, the training split included) is a normal reading
    with 2 to 6 sensors replaced by independent draws of the same spread: each value is
    plausible alone, only the relations between sensors are broken, which is what an
    autoencoder's reconstruction error can see.
    """
    stream, default = READING_SPLITS[split]
    world = np.random.default_rng([seed, 200])
    first = world.normal(0.0, 1.0, (READING_LATENT, 16))
    second = world.normal(0.0, 1.0 / np.sqrt(16), (16, READINGS))
    rng = np.random.default_rng([seed, 201 + stream])
    n = default if samples is None else samples
    x = np.tanh(rng.normal(0.0, 1.0, (n, READING_LATENT)) @ first) @ second
    x += rng.normal(0.0, 0.05, x.shape)
    labels = (rng.random(n) < ANOMALY_RATE).astype(np.int64)
    spread = x.std(axis=0)
    for row in np.flatnonzero(labels):
        broken = rng.choice(READINGS, size=rng.integers(2, 7), replace=False)
        x[row, broken] = rng.normal(0.0, spread[broken])
    return Readings(x.astype(np.float32), labels)
