"""One loopback Dask cluster for the cluster tests: 2 worker processes, 1 thread each."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="package")
def client() -> Iterator[Any]:
    import dask

    # a killed worker's lease on its host's timing semaphore expires after 2 s, not 30 s
    locks = {
        "distributed.scheduler.locks.lease-timeout": "2s",
        "distributed.scheduler.locks.lease-validation-interval": "0.5s",
    }
    with (
        dask.config.set(locks),
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=":0",
        ) as cluster,
        distributed.Client(cluster) as connected,
    ):
        connected.wait_for_workers(2)
        yield connected


@pytest.fixture
def store_path(tmp_path: Any) -> Any:
    return tmp_path / "runs.sqlite"
