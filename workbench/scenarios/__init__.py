"""Serving scenarios in the manner of MLPerf Inference's LoadGen, scaled to a notebook.

`scenario` runs single-stream, multi-stream, offline or server (Poisson arrivals from a
load-generator thread, optional dynamic batching); `slo` finds the highest sustained
server rate within a p99 budget per backend, device and variant; `batch_sweep` draws
latency and throughput against batch size. Results keep every query's times, check
themselves (minimums met, generator on schedule) and carry energy and cost.
"""

from __future__ import annotations

from workbench.scenarios.clock import Clock, RealClock, VirtualClock
from workbench.scenarios.energy import Energy, EnergyMeter, cost_per_million
from workbench.scenarios.loadgen import LoadGenerator, poisson_arrivals
from workbench.scenarios.result import KINDS, MINIMUMS, Minimums, ScenarioResult
from workbench.scenarios.run import scenario

__all__ = [
    "KINDS",
    "MINIMUMS",
    "Clock",
    "Energy",
    "EnergyMeter",
    "LoadGenerator",
    "Minimums",
    "RealClock",
    "ScenarioResult",
    "VirtualClock",
    "cost_per_million",
    "poisson_arrivals",
    "scenario",
]
