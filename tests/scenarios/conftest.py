"""A latency-model backend on a virtual clock: serving runs in exact, simulated time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from workbench.backends import base
from workbench.scenarios.clock import VirtualClock
from workbench.testing.serving import LatencyModelBackend

#: each batch of b samples takes BASE_MS + PER_SAMPLE_MS * b: 1.25 ms alone, 800 queries/s
BASE_MS, PER_SAMPLE_MS = 1.0, 0.25


@pytest.fixture
def clock() -> Iterator[VirtualClock]:
    """A fresh virtual clock with the ``latency-model`` backend registered on it."""
    virtual = VirtualClock()
    base.register("latency-model")(lambda: LatencyModelBackend(virtual, BASE_MS, PER_SAMPLE_MS))
    yield virtual
    base._FACTORIES.pop("latency-model", None)
    base._INSTANCES.pop("latency-model", None)
