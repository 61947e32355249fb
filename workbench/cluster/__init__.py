"""Sweeps and device tables across machines, on Dask distributed.

``wb.sweep(..., cluster="tcp://scheduler:8786")`` runs each sweep point as a Dask task
on the cluster's workers and streams the results into this machine's store;
``wb.devices(cluster=...)`` lists every worker's backends and devices with its host;
``wb.compare_runtimes(..., cluster=...)`` runs the fair comparison on one worker.
Dask is imported only when a cluster is used (``pip install "inference-workbench[cluster]"``).
See docs/cluster.md.
"""

from workbench.cluster.client import connect, devices
from workbench.cluster.compare_runtimes import WorkerLauncher, compare_runtimes
from workbench.cluster.runner import DaskRunner, sweep

__all__ = ["DaskRunner", "WorkerLauncher", "compare_runtimes", "connect", "devices", "sweep"]
