"""`Profile`: the result of profiling one model on one backend and device."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.errors import InputError
from workbench.model import recipe_label
from workbench.profiling.formatting import frame_text, memory_rows
from workbench.profiling.memory import ProfileMemory
from workbench.profiling.results import dump_json, load_json
from workbench.profiling.table import LAYER_COLUMNS, UNATTRIBUTED, layer_table
from workbench.profiling.timer import Measurement
from workbench.units import format_count, format_ms

if TYPE_CHECKING:
    from workbench.backends.base import ImportedTrace

__all__ = ["LAYER_COLUMNS", "UNATTRIBUTED", "Profile"]


# eq=False: == is identity; a generated __eq__ would compare DataFrames and raise
@dataclass(frozen=True, eq=False)
class Profile:
    """Measured performance of one model on one backend and device at one batch size.

    Built once, by `workbench.profile` (or a trace import), and never changed after:
    a step that adds to a profile (`workbench.profiling.cost.add_roofline`) returns a
    new one (`dataclasses.replace`).

    Attributes:
        model: the model's name.
        backend: backend registry name.
        device: device string.
        batch_size: batch size profiled.
        latency: end-to-end `Measurement`, from an uninstrumented pass (ms).
        layers: per-layer table (see `LAYER_COLUMNS`); empty when not profiled.
        memory: memory report (a `ProfileMemory`, bytes): the model's own
            (``model_peak_bytes``, measured by the backend), the cost model's
            ``estimate_peak_bytes`` and the process's resident set ``process_rss_bytes``
            (not the model); see `workbench.profiling.memory`.
        environment: library versions, CPU/GPU, thread counts.
        recipe: the model's recipe (None for a loaded model).
        model_fingerprint: hash of the model's weights and graph.
        notes: what is missing or approximate in this profile, in words.
        options: backend options used to compile the session.
        load_s: seconds to load the model from its file (None: given already loaded).
        compile_s: seconds the backend's ``compile`` took (conversion, graph optimisation,
            JIT or engine build done there), once; None when not measured (imported traces).
        first_inference_ms: the first run after compiling, in ms (lazy allocation, JIT,
            cold caches), kept out of ``latency``; None when not measured.
        run_id: unique id of this run.
        created_at: ISO timestamp (UTC).
    """

    model: str
    backend: str
    device: str
    batch_size: int
    latency: Measurement
    layers: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LAYER_COLUMNS))
    memory: ProfileMemory = field(default_factory=ProfileMemory)
    environment: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] | None = None
    model_fingerprint: str = ""
    notes: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    layer_method: str = ""
    load_s: float | None = None
    compile_s: float | None = None
    first_inference_ms: float | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )

    @property
    def recipe_name(self) -> str:
        """A short label for the model's recipe: ``"baseline"`` for a loaded model."""
        return recipe_label(self.recipe)

    @property
    def throughput(self) -> float:
        """Items per second at the median end-to-end latency."""
        return self.latency.throughput(self.batch_size)

    @property
    def label(self) -> str:
        """A short, unique-enough display label: ``model[recipe] backend/device bs=N``."""
        recipe = "" if self.recipe_name == "baseline" else f"[{self.recipe_name}]"
        return f"{self.model}{recipe} {self.backend}/{self.device} bs={self.batch_size}"

    # ---- serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``latency_ms`` holds the statistics and samples; ``layers`` a list."""
        layers = self.layers.astype(object).where(self.layers.notna(), None)
        return {
            "run_id": self.run_id,
            "created_at": self.created_at,
            "model": self.model,
            "model_fingerprint": self.model_fingerprint,
            "recipe": self.recipe,
            "backend": self.backend,
            "device": self.device,
            "batch_size": self.batch_size,
            "latency_ms": self.latency.to_dict(),
            "throughput_per_s": self.throughput,
            "load_s": self.load_s,
            "compile_s": self.compile_s,
            "first_inference_ms": self.first_inference_ms,
            "layers": layers.to_dict(orient="records"),
            "layer_method": self.layer_method,
            "memory": self.memory.to_dict(),
            "environment": self.environment,
            "notes": list(self.notes),
            "options": self.options,
        }

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The profile as JSON (`to_dict`), also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    def to_html(self, path: str | Path | None = None) -> str:
        """The profile's self-contained report, as ``workbench report`` writes it.

        Args:
            path: also write the HTML file there when given.

        Returns:
            One HTML document (environment, statistics, per-layer table, figures) that
            opens with no network: plotly.js and styles are inline.

        Example:
            >>> p.to_html("digits-cnn.html")
        """
        from workbench.profiling.html_export import to_html

        return to_html(self, path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Rebuild a profile from `to_dict` output.

        Raises:
            InputError: ``data`` is not a profile (a field missing or of the wrong type).
        """
        _check_fields(data)
        layers = pd.DataFrame.from_records(data.get("layers") or [], columns=None)
        if layers.empty:
            layers = pd.DataFrame(columns=LAYER_COLUMNS)
        return cls(
            model=data["model"],
            backend=data["backend"],
            device=data["device"],
            batch_size=int(data["batch_size"]),
            latency=Measurement.from_dict(data["latency_ms"]),
            layers=layers,
            memory=ProfileMemory.from_dict(data.get("memory")),
            environment=dict(data.get("environment") or {}),
            recipe=data.get("recipe"),
            model_fingerprint=data.get("model_fingerprint", ""),
            notes=tuple(data.get("notes") or ()),
            options=dict(data.get("options") or {}),
            layer_method=data.get("layer_method", ""),
            load_s=data.get("load_s"),
            compile_s=data.get("compile_s"),
            first_inference_ms=data.get("first_inference_ms"),
            run_id=data.get("run_id") or uuid.uuid4().hex[:12],
            created_at=data.get("created_at", ""),
        )

    @classmethod
    def from_onnxruntime_trace(cls, path: str | Path, model: Any = None) -> Profile:
        """A profile from an ONNX Runtime profiling JSON (``enable_profiling``).

        Args:
            path: the JSON file ``InferenceSession.end_profiling()`` wrote.
            model: optionally the model that ran (anything `workbench.load` accepts), to
                map kernels, fused ones included, to canonical layers; without it each
                kernel name is a layer.

        Raises:
            ValueError: the file is not an ORT trace.

        Example:
            >>> p = wb.Profile.from_onnxruntime_trace("ort_profile.json", model="m.onnx")
        """
        from workbench.backends.onnxruntime.trace import import_trace

        return cls.from_imported(import_trace(path, model))

    @classmethod
    def from_torch_trace(cls, path: str | Path) -> Profile:
        """A profile from a ``torch.profiler`` Chrome trace (``export_chrome_trace``).

        Layers are ``record_function`` ranges, ``nn.Module`` ranges, or else top-level
        aten ops (see `workbench.backends.torch.trace.import_trace`).

        Raises:
            ValueError: the file holds no usable events.
        """
        from workbench.backends.torch.trace import import_trace

        return cls.from_imported(import_trace(path))

    @classmethod
    def from_imported(cls, trace: ImportedTrace) -> Profile:
        """A profile from a runtime's trace read by its backend (``layer_method`` says so).

        The end-to-end `Measurement` holds the traced runs, which ran instrumented (a
        note says so); the layer table uses the ``leaves`` view.
        """
        latency = Measurement(trace.run_ms, label=f"{trace.model} {trace.backend} trace")
        return cls(
            model=trace.model,
            backend=trace.backend,
            device=trace.device,
            batch_size=trace.batch_size,
            latency=latency,
            layers=layer_table(trace.timings, latency.median, "leaves"),
            layer_method=trace.method,
            notes=tuple(trace.notes),
            memory=ProfileMemory.from_dict(trace.memory),
        )

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Profile:
        """Rebuild from `to_json` output, or from the file at a path holding it."""
        return cls.from_dict(load_json(text_or_path, "a profile"))

    # ---- display ---------------------------------------------------------------------
    def headline(self) -> dict[str, Any]:
        """The numbers a summary shows first."""
        lat = self.latency
        return {
            "p50_ms": lat.median,
            "p90_ms": lat.p90,
            "p99_ms": lat.p99,
            "n": lat.n,
            "throughput_per_s": self.throughput,
            "noisy": lat.noisy,
            "verdict": lat.verdict,
            "model_peak_bytes": self.memory.model_peak_bytes,
            "process_rss_bytes": self.memory.process_rss_bytes,
            "compile_s": self.compile_s,
            "first_inference_ms": self.first_inference_ms,
        }

    def cold_start_text(self) -> str:
        """``load 0.12 s, compile 0.35 s, first inference 4.2 ms`` (measured parts only)."""
        parts = [
            f"{name} {value:.3g} {unit}"
            for name, value, unit in (
                ("load", self.load_s, "s"),
                ("compile", self.compile_s, "s"),
                ("first inference", self.first_inference_ms, "ms"),
            )
            if value is not None
        ]
        return ", ".join(parts) or "not measured"

    def top_layers(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` slowest layers (the ``(unattributed)`` row excluded)."""
        if self.layers.empty or "latency_ms" not in self.layers:
            return self.layers
        rows = self.layers[self.layers["layer"] != UNATTRIBUTED]
        return rows.sort_values("latency_ms", ascending=False).head(n)

    def summary(self, top: int = 10) -> str:
        """A readable text summary: headline numbers, then the slowest layers."""
        lat = self.latency
        lines = [
            f"{self.label}",
            f"  latency  median {format_ms(lat.median)}  p90 {format_ms(lat.p90)}  "
            f"p99 {format_ms(lat.p99)}  std {format_ms(lat.std)}  "
            f"(n={lat.n:,}{'; ' + lat.verdict if lat.noisy else ''})",
            f"  throughput {format_count(self.throughput)} items/s",
        ]
        if self.compile_s is not None:
            lines.append(f"  cold start {self.cold_start_text()}")
        lines += [f"  {label}: {text}" for label, text in memory_rows(self.memory)]
        if not self.layers.empty:
            columns = [
                c for c in ("layer", "op_type", "latency_ms", "share", "flops") if c in self.layers
            ]
            table = self.top_layers(top)[columns + ["fused_into"] * ("fused_into" in self.layers)]
            if "fused_into" in table:
                # a 0 ms layer must say it was fused into another rather than look free
                table = table.assign(fused_into=table["fused_into"].fillna(""))
            lines += [
                "",
                f"Top layers ({self.layer_method or 'instrumented'}):",
                frame_text(table),
            ]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Profile({self.label}: median {format_ms(self.latency.median)}, "
            f"n={self.latency.n:,}, layers={len(self.layers)})"
        )

    def _repr_html_(self) -> str:
        from workbench.profiling.formatting import profile_html

        return profile_html(self)


# the fields a Profile needs, and the optional ones, with their JSON types
_REQUIRED = {"model": str, "backend": str, "device": str, "batch_size": int, "latency_ms": dict}
_OPTIONAL = {"layers": list, "memory": dict, "environment": dict, "recipe": dict, "notes": list}


def _check_fields(data: Any) -> None:
    """Refuse, in one line, a dict that is not a profile's (a file someone else wrote)."""
    if not isinstance(data, dict):
        raise InputError(f"a Profile is a JSON object, got {type(data).__name__}")
    wrong = [
        f"{name} ({type(data.get(name)).__name__}, not {kind.__name__})"
        for name, kind in _REQUIRED.items()
        if not isinstance(data.get(name), kind) or isinstance(data.get(name), bool)
    ]
    wrong += [
        f"{name} ({type(data[name]).__name__}, not {kind.__name__})"
        for name, kind in _OPTIONAL.items()
        if data.get(name) is not None and not isinstance(data[name], kind)
    ]
    latency = data.get("latency_ms")
    samples = latency.get("samples_ms") if isinstance(latency, dict) else None
    if isinstance(latency, dict) and not (
        isinstance(samples, list)
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in samples)
    ):
        wrong.append("latency_ms.samples_ms (not a list of numbers)")
    if isinstance(data.get("layers"), list) and not all(
        isinstance(r, dict) for r in data["layers"]
    ):
        wrong.append("layers (not a list of objects)")
    if wrong:
        raise InputError(
            f"not a workbench Profile: {'; '.join(wrong)}; Profile.to_json and "
            "`workbench profile --json` write one"
        )
