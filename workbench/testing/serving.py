"""A backend whose inferences take a known time on a `VirtualClock`, for serving tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from workbench.backends.base import Availability, Inputs, LayerTiming, Support
from workbench.model import Model
from workbench.scenarios.clock import VirtualClock


class LatencyModelBackend:
    """Each batch of ``b`` samples takes ``base_ms + per_sample_ms * b`` of virtual time.

    ``speedups`` maps a variant's recipe label (``model.recipe_name``) to how many times
    faster it runs, so variant comparisons have known answers too.

    With a `VirtualClock`, scenarios and `slo` searches on it are exact: a server at a
    rate far below ``1 / (base_ms + per_sample_ms)`` sees no queueing at all.

    Example:
        >>> clock = VirtualClock()
        >>> register("latency-model")(lambda: LatencyModelBackend(clock, 1.0, 0.1))
    """

    name = "latency-model"

    def __init__(
        self,
        clock: VirtualClock,
        base_ms: float,
        per_sample_ms: float = 0.0,
        speedups: Mapping[str, float] | None = None,
    ) -> None:
        self.clock, self.base_ms, self.per_sample_ms = clock, base_ms, per_sample_ms
        self.speedups = dict(speedups or {})

    def latency_ms(self, batch: int, recipe: str = "baseline") -> float:
        """Milliseconds a batch takes; a variant listed in ``speedups`` is that much faster."""
        return (self.base_ms + self.per_sample_ms * batch) / self.speedups.get(recipe, 1.0)

    def availability(self) -> Availability:
        return Availability(True, version="0", details={"cpu": "virtual time"})

    def devices(self) -> list[str]:
        return ["cpu"]

    def supports(self, model: Model) -> Support:
        return Support(True)

    def compile(self, model: Model, device: str = "cpu", **options: Any) -> LatencyModelSession:
        return LatencyModelSession(self, model, device)


class LatencyModelSession:
    """A session of `LatencyModelBackend`; ``calls`` lists the batch size of every run."""

    backend = "latency-model"

    def __init__(self, owner: LatencyModelBackend, model: Model, device: str) -> None:
        self.owner, self.model, self.device = owner, model, device
        self.calls: list[int] = []

    def run(self, inputs: Inputs) -> list[np.ndarray]:
        arrays = self.model.check_inputs(inputs)
        batch = int(next(iter(arrays.values())).shape[0])
        self.calls.append(batch)
        self.owner.clock.advance(self.owner.latency_ms(batch, self.model.recipe_name) / 1e3)
        return [np.zeros((batch, 1), np.float32)]

    def runner(self, inputs: Inputs) -> Callable[[], Any]:
        arrays = self.model.check_inputs(inputs)
        return lambda: self.run(arrays)

    def run_layers(self, inputs: Inputs, repeats: int = 10) -> list[LayerTiming]:
        return []

    def close(self) -> None:
        pass
