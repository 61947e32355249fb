"""Ranking requests: one user's features broadcast over N candidate items.

A recommender scores a request's candidates in one call: the user's (context) features
are the same on every row, the candidate items' features differ. `ranking_settings`
checks a scenario's ``candidates`` and picks the user's inputs; `request_inputs` builds
the rows of ``requests`` such requests. The LoadGen scenarios run them unchanged
(`workbench.scenarios.run`): a query is a request, its samples are its candidates, so
a result's p99 is per request and its throughput is items per second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from workbench.argtypes import whole
from workbench.errors import InputError
from workbench.model import Model

__all__ = ["MAX_CANDIDATES", "ranking_settings", "request_inputs"]

#: most candidates one request may score
MAX_CANDIDATES = 1_000_000


def ranking_settings(
    model: Model, candidates: int | None, user_inputs: Sequence[str] | None = None
) -> dict[str, Any]:
    """The checked ranking settings of a scenario: ``candidates`` and ``user_inputs``.

    Returns ``{}`` when ``candidates`` is None (queries of plain samples).

    Args:
        model: the model the requests are for.
        candidates: items each request scores (typically 100 to 2,000), or None.
        user_inputs: the inputs that hold the user's features, the same for every
            candidate of a request; default the float inputs (dense context features),
            so every id input is a candidate's. Name the user's id features here too
            when the model has them (``["dense", "ids_0"]``).

    Raises:
        InputError: candidates not a whole number in [1, `MAX_CANDIDATES`], an input
            name the model does not have, or ``user_inputs`` without ``candidates``.
    """
    if candidates is None:
        if user_inputs is not None:
            raise InputError("user_inputs= is for ranking requests: give candidates= too")
        return {}
    count = whole("candidates", candidates, minimum=1, maximum=MAX_CANDIDATES)
    names = [spec.name for spec in model.inputs]
    if user_inputs is None:
        chosen = [spec.name for spec in model.inputs if np.dtype(spec.dtype).kind == "f"]
    else:
        chosen = list(user_inputs)
        unknown = [name for name in chosen if name not in names]
        if unknown:
            raise InputError(
                f"user_inputs {unknown} are not inputs of {model.name}; its inputs are {names}"
            )
    return {"candidates": count, "user_inputs": chosen}


def request_inputs(
    model: Model,
    pool: Mapping[str, np.ndarray] | None,
    requests: int,
    candidates: int,
    user_inputs: Sequence[str],
) -> dict[str, np.ndarray]:
    """The rows of ``requests`` ranking requests of ``candidates`` items each, in order.

    Rows come from ``pool`` (repeated from its start) or, without one, from the model's
    generated inputs with Zipf-distributed ids (popular items are candidates more
    often). Within each request, the ``user_inputs`` of its first row are copied to all
    of its rows.

    Returns:
        Arrays by input name with ``requests * candidates`` rows.
    """
    from workbench.data import batch_inputs

    rows = requests * candidates
    staged = (
        batch_inputs(model, pool, rows)
        if pool is not None
        else model.example_inputs(rows, ids="zipf")
    )
    for name in user_inputs:
        array = staged[name]
        first = array.reshape(requests, candidates, *array.shape[1:])[:, :1]
        staged[name] = np.ascontiguousarray(
            np.broadcast_to(first, (requests, candidates, *array.shape[1:])).reshape(array.shape)
        )
    return staged
