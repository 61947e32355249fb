"""Batch-size sweep: latency and throughput against batch size, with the knee marked."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.argtypes import batch_size as checked_batch
from workbench.argtypes import check_input_bytes, seconds
from workbench.errors import InputError
from workbench.model import Model
from workbench.profiling.formatting import frame_html, frame_text
from workbench.profiling.measure import NOISY_ATTEMPTS, TimingOptions, compiled, measure
from workbench.profiling.results import dump_json, load_json
from workbench.profiling.timer import Measurement
from workbench.progress import CancelToken, ProgressCallback, track
from workbench.scenarios.result import json_rows

#: the knee is the smallest batch reaching this share of the best throughput
KNEE_SHARE = 0.9
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


def knee(
    batch_sizes: Sequence[int], throughputs: Sequence[float], share: float = KNEE_SHARE
) -> int:
    """The smallest batch size whose throughput reaches ``share`` of the best one.

    Past the knee, bigger batches buy little throughput and cost latency.

    Example:
        >>> knee([1, 2, 4, 8], [100.0, 180.0, 300.0, 320.0])
        4
    """
    if not batch_sizes or len(batch_sizes) != len(throughputs):
        raise InputError("knee needs one throughput per batch size")
    best = max(throughputs)
    return min(b for b, t in zip(batch_sizes, throughputs, strict=True) if t >= share * best)


@dataclass(frozen=True)
class BatchSweep:
    """Latency and throughput per batch size on one backend and device.

    Attributes:
        model: model name (with its recipe label).
        backend: backend name.
        device: device name.
        table: one row per batch size: ``p50_ms``, ``p99_ms``, ``throughput_per_s``
            (samples/s at the median), ``n`` (timed calls) and ``noisy``.
        knee_batch_size: the smallest batch reaching 90% of the best throughput.
    """

    model: str
    backend: str
    device: str
    table: pd.DataFrame
    knee_batch_size: int

    def summary(self) -> str:
        """The knee and the table, as text."""
        return (
            f"{self.model} {self.backend}/{self.device}: knee at batch {self.knee_batch_size} "
            f"(smallest batch with {KNEE_SHARE:.0%} of the best throughput)\n"
            + frame_text(self.table)
        )

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return (
            f"<b>{html.escape(self.model)} {html.escape(self.backend)}/{html.escape(self.device)}"
            f"</b>: knee at batch <b>{self.knee_batch_size}</b> (smallest batch with "
            f"{KNEE_SHARE:.0%} of the best throughput)" + frame_html(self.table)
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "model": self.model,
            "backend": self.backend,
            "device": self.device,
            "knee_batch_size": self.knee_batch_size,
            "table": json_rows(self.table),
        }

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The batch sweep as JSON (`to_dict`), also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> BatchSweep:
        """Rebuild from `to_json` output, or from the file at a path holding it."""
        data = load_json(text_or_path, "a batch sweep")
        return cls(
            model=data["model"],
            backend=data["backend"],
            device=data["device"],
            table=pd.DataFrame.from_records(data["table"]),
            knee_batch_size=int(data["knee_batch_size"]),
        )


def batch_sweep(
    model: Model | Any,
    backend: str = "onnxruntime",
    device: str = "cpu",
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    *,
    budget_s: float = 0.5,
    inputs: Any = None,
    options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> BatchSweep:
    """Time ``model`` at each batch size (back to back, warmed up) and mark the knee.

    Each batch size is timed by `Timer` (adaptive repeats within ``budget_s``, GC
    paused, the device synchronised). The model is never changed.

    Args:
        model: a `Model` or anything `workbench.load` accepts.
        backend: backend name.
        device: device name.
        batch_sizes: batch sizes to time, each at least 1.
        budget_s: timing budget per batch size, in seconds.
        inputs: real inputs instead of generated ones, as `scenario` takes them
            (arrays, a `Dataset` or batches); batch ``b`` runs the first ``b`` samples,
            repeated from the start when there are fewer.
        options: backend options for ``compile``.
        progress: ``progress(fraction, message)`` callback.
        cancel: a `CancelToken` checked between batch sizes.

    Returns:
        A `BatchSweep`.

    Example:
        >>> wb.batch_sweep("digits-cnn", "onnxruntime").knee_batch_size
    """
    from workbench.data import batch_inputs, input_pool
    from workbench.loaders import load

    sizes = sorted({checked_batch(b, "each of batch_sizes") for b in batch_sizes})
    if not sizes:
        raise InputError("batch_sizes must name at least one batch size, got none")
    budget_s = seconds("budget_s", budget_s)
    model = load(model)
    check_input_bytes(model, sizes[-1])
    pool = None if inputs is None else input_pool(model, inputs)
    # a noisy batch size is measured again (bounded), as a sweep's points are
    timing = TimingOptions(budget_s=budget_s, attempts=NOISY_ATTEMPTS)
    measured: list[Measurement] = []
    with compiled(model, backend, device, options) as run:
        for batch in track(
            sizes, description="batch sizes", progress=progress, cancel=cancel, bar=False
        ):
            runner = run.session.runner(batch_inputs(model, pool, batch))
            label = f"bs={batch}"
            measured.append(
                measure(runner, timing, device=device, label=label, threads=run.threads)
            )
    throughputs = [m.throughput(b) for m, b in zip(measured, sizes, strict=True)]
    table = pd.DataFrame(
        {
            "batch_size": sizes,
            "p50_ms": [m.median for m in measured],
            "p99_ms": [m.p99 for m in measured],
            "throughput_per_s": throughputs,
            "n": [m.n for m in measured],
            "noisy": [m.noisy for m in measured],
            "verdict": [m.verdict for m in measured],
        }
    )
    return BatchSweep(
        f"{model.name} ({model.recipe_name})", backend, device, table, knee(sizes, throughputs)
    )
