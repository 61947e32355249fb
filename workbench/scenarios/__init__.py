"""Serving scenarios in the manner of MLPerf Inference's LoadGen, scaled to a notebook.

`scenario` runs single-stream, multi-stream, offline or server (Poisson arrivals from a
load-generator thread, optional dynamic batching); `slo` finds the highest sustained
server rate within a p99 budget per backend, device and variant; `batch_sweep` draws
latency and throughput against batch size. Results keep every query's times, check
themselves (minimums met, generator on schedule) and carry energy and cost.
"""

from __future__ import annotations

from workbench.scenarios.batch import BatchSweep, batch_sweep, knee
from workbench.scenarios.clock import Clock, RealClock, VirtualClock
from workbench.scenarios.energy import Energy, EnergyMeter, cost_per_million
from workbench.scenarios.loadgen import LoadGenerator, poisson_arrivals
from workbench.scenarios.result import KINDS, MINIMUMS, Minimums, ScenarioResult
from workbench.scenarios.run import scenario
from workbench.scenarios.slo import Batching, SloResult, slo

__all__ = [
    "KINDS",
    "MINIMUMS",
    "BatchSweep",
    "Batching",
    "Clock",
    "Energy",
    "EnergyMeter",
    "LoadGenerator",
    "Minimums",
    "RealClock",
    "ScenarioResult",
    "SloResult",
    "VirtualClock",
    "batch_sweep",
    "cost_per_million",
    "knee",
    "poisson_arrivals",
    "scenario",
    "slo",
]
