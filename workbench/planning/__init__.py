"""Plans: which machine, how many, and what it costs over its life, from measured runs.

A plan never measures: it combines the rates `workbench.scenarios.slo` measured on each
machine with that machine's economics (a TOML file the user keeps; see `economics`).
"""

from __future__ import annotations

from workbench.planning.economics import EconomicsError, Machine, load_machine
from workbench.planning.fleet import Plan, PlanError, UnreachableError, Workload, plan

__all__ = [
    "EconomicsError",
    "Machine",
    "Plan",
    "PlanError",
    "UnreachableError",
    "Workload",
    "load_machine",
    "plan",
]
