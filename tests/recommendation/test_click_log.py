"""The click-log generator: seeded, Zipf ids within each table, labels that depend on them."""

from __future__ import annotations

import numpy as np

from workbench.loaders.rec_data import BAG, DENSE, TABLE_ROWS, click_log


def test_same_seed_same_log_and_splits_differ() -> None:
    a, b = click_log("test", samples=500), click_log("test", samples=500)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.ids, click_log("train", samples=500).ids)
    assert a.dense.shape == (500, DENSE) and a.ids.shape == (500, len(TABLE_ROWS), BAG)


def test_ids_are_zipf_within_each_table() -> None:
    log = click_log("train", samples=20_000)
    for t, rows in enumerate(TABLE_ROWS):
        ids = log.ids[:, t].ravel()
        assert ids.min() >= 0 and ids.max() < rows
    biggest = np.bincount(log.ids[:, -1].ravel(), minlength=TABLE_ROWS[-1])
    # a few hot rows take a large share; most rows are rarely or never seen
    assert np.sort(biggest)[-10:].sum() > 0.25 * biggest.sum()
    assert (biggest == 0).mean() > 0.5


def test_clicks_depend_on_the_ids_not_only_the_dense_features() -> None:
    from sklearn.metrics import roc_auc_score

    log = click_log("train", samples=20_000)
    assert roc_auc_score(log.labels, log.probability) > 0.85
    # ids alone carry signal: each row's click odds in one half predict the other half
    half = len(log.labels) // 2
    score = np.zeros(half)
    for t, rows in enumerate(TABLE_ROWS):
        ids, labels = log.ids[:half, t].ravel(), np.repeat(log.labels[:half], BAG)
        clicks = np.bincount(ids, labels, minlength=rows)
        seen = np.bincount(ids, minlength=rows)
        score += np.log((clicks + 1) / (seen - clicks + 1))[log.ids[half:, t]].sum(axis=1)
    assert roc_auc_score(log.labels[half:], score) > 0.55
