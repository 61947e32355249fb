"""`place`: split one model's layers across two processors to minimise its latency (or cost).

From the per-layer profiles of one model on two processors (two devices, or two runtimes
on one device) and the link between them, every way of cutting the layer sequence is
predicted, the fastest is chosen by dynamic programming over the layer order, and, where
both ends exist here, the split graph is run and timed (`measure_placement`).

The arithmetic, per processor P and split:

- scale_P = P's end-to-end median / the sum of its per-layer medians over the graph's
  layers: the per-layer pass is instrumented, and time outside any layer (ORT's layout
  reorders, a container's own code, the unattributed gap) is spread over the layers in
  proportion, so a split with no cut predicts exactly the profile's measured latency;
- compute = sum over the layers P runs of scale_P x layer median;
- each change of processor at a cut costs the link's latency + the bytes of the tensors
  crossing the cut (produced before it, used after it; shapes from the ONNX graph at the
  profiled batch) / the link's bandwidth. Model inputs are not counted: each profile
  already fed its own. A tensor crossing several cuts is counted at each change of
  processor: exact for chains, an upper bound when a skip connection spans a segment;
- each change of runtime also costs the hand-over measured here (`measure_switch`, none
  when not given): calls timed back to back change runtime at every cut and once more
  from the last part to the next call's first, so a split pays ``switches`` = its changes
  + 1 when it ends on the other processor than it starts on, each ``Switch.ms``.

With ``objective="cost"`` the split with the least money per call wins: each processor's
price per hour (`workbench.planning.economics.Machine`) x the time it is occupied (its
own layers, and every hand-over, which holds both ends).

Which cuts are possible and what crosses them: `workbench.planning.cuts`; links, declared
or measured: `workbench.planning.links` (both re-exported here).
"""

from __future__ import annotations

import html
import itertools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.argtypes import whole
from workbench.errors import InputError
from workbench.planning.cuts import (
    chained,
    graph_cuts,
    onnx_proto,
    output_names,
    possible_cuts,
    split_model,
)
from workbench.planning.links import Link, PlacementError, cuda_copy, measure_link
from workbench.profiling.results import dump_json, load_json
from workbench.profiling.table import UNATTRIBUTED
from workbench.units import format_bytes, format_ms

if TYPE_CHECKING:
    from workbench.backends.base import LayerTiming
    from workbench.model import Model
    from workbench.planning.economics import Machine
    from workbench.profiling.measure import TimingOptions
    from workbench.profiling.profile import Profile
    from workbench.profiling.timer import Measurement

__all__ = [
    "CANDIDATE_COLUMNS",
    "LAYER_COLUMNS",
    "OBJECTIVES",
    "Link",
    "Placement",
    "PlacementError",
    "Switch",
    "chained",
    "cuda_copy",
    "measure_link",
    "measure_placement",
    "measure_switch",
    "place",
    "possible_cuts",
    "split_model",
]

CANDIDATE_COLUMNS = [
    "split", "order", "cuts", "compute_a_ms", "compute_b_ms", "transfer_bytes",
    "transfer_ms", "switches", "switch_ms", "call_ms", "layout_ms", "predicted_ms",
    "cost_per_1m_calls", "best", "measured_ms", "measured_n", "error_fraction", "parts_ms",
    "measured_min_ms", "measured_max_ms", "note",
]  # fmt: skip
#: what `place` minimises: the predicted latency, or the money per call
OBJECTIVES = ("latency", "cost")
#: rounds of (each part alone, the chain) per order in `measure_switch`
SWITCH_ROUNDS = 3
LAYER_COLUMNS = [
    "layer", "a_ms", "b_ms", "a_profiled_ms", "b_profiled_ms", "cut_before",
    "crossing_tensors", "crossing_bytes", "why_not", "runs_on",
]  # fmt: skip


# ---- placing ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Switch:
    """What one change of runtime costs in one process, measured here (`measure_switch`).

    Two runtimes in one process hand over at every cut: the next runtime's threads wake
    from sleep, and the last one's may still hold the cores (a pool spinning after its
    part). No per-layer profile sees either, so it is timed: a probe split, both ways,
    as a chain of calls back to back against its parts each timed alone.

    Attributes:
        ms: the cost of one change of runtime (>= 0): half the round trip, since a
            single-cut chain timed back to back changes runtime twice per call (at the
            cut, and from its last part to the next call's first).
        round_trip_ms: the chain's median - the sum of its parts' medians alone, each
            part timed right before the chain, the median over `SWITCH_ROUNDS` rounds of
            both orders (A then B, B then A); below 0 only through noise.
        chain_ms, parts_ms: the chain's and the parts' medians, the median over rounds,
            per order (A then B first).
        probe: the split timed (the cut it was made at).
        processors: the two ``backend/device`` it was measured between.
        call_ms: per processor (A, B), what one part's ``session.run`` costs beyond the
            profile's timed call (its runner, on inputs staged once, outputs left in the
            runtime's buffers): inputs checked and copied in, outputs copied out. The
            median of each part's difference over rounds and orders (>= 0); a split pays
            it once per part.
        layout_ms: per processor (A, B), its layout conversions at the probe's cut, out
            of its first part and into its second (the ``(layout)`` rows of its parts'
            per-layer timing over both orders, less its whole-model profile's, >= 0): a
            runtime that keeps activations in its own layout (ORT's blocked NCHWc,
            Numba's NHWC) converts every tensor crossing a cut. A cut pays half of it on
            each side, scaled by its bytes over ``probe_bytes``.
        probe_bytes: the bytes crossing the probe's cut.
    """

    ms: float
    round_trip_ms: float
    chain_ms: tuple[float, float]
    parts_ms: tuple[float, float]
    probe: str
    processors: tuple[str, str]
    call_ms: tuple[float, float] = (0.0, 0.0)
    layout_ms: tuple[float, float] = (0.0, 0.0)
    probe_bytes: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        pairs = ("chain_ms", "parts_ms", "processors", "call_ms", "layout_ms")
        return {**self.__dict__, **{k: list(getattr(self, k)) for k in pairs}}

    @classmethod
    def pooled(cls, switches: Sequence[Switch]) -> Switch:
        """One `Switch` from probes of the same cut measured apart (each `measure_switch`
        with a round or few, spread over a run): every figure is the median over them, so
        a slow stretch of the machine that covers one probe does not set the cost."""
        if not switches:
            raise PlacementError("pooling switches needs at least one")
        first = switches[0]
        if any((s.probe, s.processors) != (first.probe, first.processors) for s in switches):
            raise PlacementError("pooled switches must probe the same cut of the same pair")

        def median(get: Callable[[Switch], float]) -> float:
            return float(np.median([get(s) for s in switches]))

        def pair(name: str) -> tuple[float, float]:
            return (median(lambda s: getattr(s, name)[0]), median(lambda s: getattr(s, name)[1]))

        round_trip = median(lambda s: s.round_trip_ms)
        return cls(
            ms=max(round_trip, 0.0) / 2,
            round_trip_ms=round_trip,
            chain_ms=pair("chain_ms"),
            parts_ms=pair("parts_ms"),
            probe=first.probe,
            processors=first.processors,
            call_ms=pair("call_ms"),
            layout_ms=pair("layout_ms"),
            probe_bytes=first.probe_bytes,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Switch:
        """Rebuild from `to_dict`."""
        return cls(
            ms=float(data["ms"]),
            round_trip_ms=float(data["round_trip_ms"]),
            chain_ms=(data["chain_ms"][0], data["chain_ms"][1]),
            parts_ms=(data["parts_ms"][0], data["parts_ms"][1]),
            probe=str(data["probe"]),
            processors=(data["processors"][0], data["processors"][1]),
            call_ms=(data["call_ms"][0], data["call_ms"][1]),
            layout_ms=(data["layout_ms"][0], data["layout_ms"][1]),
            probe_bytes=float(data["probe_bytes"]),
        )


@dataclass(frozen=True)
class _Side:
    label: str  # "onnxruntime/cpu"
    ms: np.ndarray  # scaled per-layer ms, graph order
    profiled: np.ndarray  # the profile's own per-layer medians (0 when absent)
    scale: float
    end_to_end_ms: float
    # cut positions that separate layers this processor runs as one fused kernel
    splits_fusion: dict[int, str] = field(default_factory=dict)


def place(
    profile_a: Profile,
    profile_b: Profile,
    *,
    model: Model | str | Path | None = None,
    link: Link | None = None,
    max_cuts: int = 1,
    switch: Switch | None = None,
    objective: str = "latency",
    prices: tuple[Machine, Machine] | None = None,
    fused_cuts: bool = False,
) -> Placement:
    """The split of ``model``'s layers across two processors with the lowest latency (or cost).

    Args:
        profile_a: the model profiled per layer on processor A (`wb.profile`).
        profile_b: the same model at the same batch size profiled on processor B.
        model: the model both profiles are of (a `Model`, a path or a sample name): its
            ONNX graph gives the layer order, the possible cuts and the bytes crossing each.
            None: the sample the profiles name (a profile records only a model's name).
        link: the link between A and B; default `Link.same_memory` (two runtimes in one
            process).
        max_cuts: most changes of processor (1: A then B, or B then A; more split the
            layers into more segments, each one more session call whose fixed cost the
            profiles do not see: give it as the link's latency).
        switch: the hand-over between the two runtimes measured here (`measure_switch`):
            ``switch.ms`` per change of runtime is added to each split's prediction
            (``switch_ms``). None: not counted (0).
        objective: ``"latency"`` (the least predicted ms per call) or ``"cost"`` (the
            least money per call, ``cost_per_1m_calls``; needs ``prices``).
        prices: the economics of the machine each processor is (`load_machine`), in one
            currency: each costs its price per hour (rental, or purchase over its lifetime
            + upkeep, + energy where known) for the time it is occupied.
        fused_cuts: also offer cuts between layers a processor runs as one fused kernel
            (a convolution and its activation): there both parts run those layers unfused,
            a cost neither profile holds (it times the fused pair, the second as 0 ms),
            so such a split is predicted too fast and could be picked for it. False (the
            default): those boundaries cannot be cut and the layers table's ``why_not``
            says whose fusion; True: they are candidates whose ``note`` says so.

    Returns:
        A `Placement`: every single-cut split (and the best with up to ``max_cuts``),
        predicted, the best first, then by the objective; the per-layer table it came from.

    Raises:
        PlacementError: profiles of different models or batch sizes, a profile with no
            per-layer table or whose layers are not the graph's, a graph with no possible
            cut (says why for each), ``max_cuts`` below 1, an unknown ``objective``,
            ``"cost"`` without ``prices``, prices in two currencies, a ``switch`` measured
            between other processors.

    Example:
        >>> a = wb.profile(m, backend="onnxruntime"); b = wb.profile(m, backend="numba")
        >>> p = wb.place(a, b, model=m, link=Link.same_memory(), switch=measure_switch(a, b, m))
        >>> p.best["split"], p.best["predicted_ms"]
    """
    from workbench.profiling.cost import tensor_shapes

    link = link or Link.same_memory()
    try:
        max_cuts = whole("max_cuts", max_cuts, minimum=1, maximum=1000)
    except InputError as exc:
        raise PlacementError(str(exc)) from None
    hourly = _hourly_prices(objective, prices)
    loaded = _model_of(model, profile_a.model)
    _check_profiles(profile_a, profile_b, loaded)
    proto = onnx_proto(loaded)
    cuts = graph_cuts(proto)
    if not cuts.crossing:
        reasons = "; ".join(
            f"before {cuts.layers[k]}: {w}" for k, w in sorted(cuts.why_not.items())
        )
        raise PlacementError(
            f"{loaded.name}: no layer boundary can be cut ({len(cuts.layers)} layer(s)"
            + (f"; {reasons}" if reasons else "")
            + "); it runs whole on one processor"
        )
    notes: list[str] = []
    a = _side(profile_a, cuts.layers, notes)
    b = _side(profile_b, cuts.layers, notes)
    switch_ms, call_ms, layout_per_byte = _handover(switch, (a.label, b.label), notes)
    shapes = tensor_shapes(proto, loaded.example_inputs(profile_a.batch_size))
    crossing_bytes = {k: _bytes(ts, shapes) for k, ts in cuts.crossing.items()}
    why_not = dict(cuts.why_not)
    if not fused_cuts:
        for k, why in _fused_boundaries(a, b).items():
            if crossing_bytes.pop(k, None) is not None:
                why_not[k] = why
        if not crossing_bytes:
            raise PlacementError(
                f"{loaded.name}: every boundary that can be cut is inside a fused kernel "
                "(a split there is not predictable); place(..., fused_cuts=True) offers them"
            )
    if any(math.isnan(v) for v in crossing_bytes.values()):
        notes.append("some crossing tensors have no known shape: those cuts are left out")
        crossing_bytes = {k: v for k, v in crossing_bytes.items() if not math.isnan(v)}
    transfer = {k: link.transfer_ms(v) for k, v in crossing_bytes.items()}
    layout = {
        k: (v * layout_per_byte[0], v * layout_per_byte[1]) for k, v in crossing_bytes.items()
    }
    costs = _Costs(transfer, switch_ms, call_ms, layout, hourly)
    best_order = _best_assignment(a.ms, b.ms, costs, max_cuts)
    rows = [
        _candidate(order, a, b, cuts.layers, crossing_bytes, costs)
        for order in _single_cut_orders(len(cuts.layers), sorted(transfer))
    ]
    best = _candidate(best_order, a, b, cuts.layers, crossing_bytes, costs)
    table = pd.DataFrame([*rows, best], columns=CANDIDATE_COLUMNS)
    key = "predicted_ms" if objective == "latency" else "cost_per_1m_calls"
    table = table.drop_duplicates("split").sort_values(key, kind="stable")
    table["best"] = table["split"] == best["split"]
    table = pd.concat([table[table["best"]], table[~table["best"]]]).reset_index(drop=True)
    positions = range(len(cuts.layers))
    layer_rows = pd.DataFrame(
        {
            "layer": cuts.layers,
            "a_ms": a.ms,
            "b_ms": b.ms,
            "a_profiled_ms": a.profiled,
            "b_profiled_ms": b.profiled,
            "cut_before": [k in crossing_bytes for k in positions],
            "crossing_tensors": [", ".join(cuts.crossing.get(k, [])) for k in positions],
            "crossing_bytes": [crossing_bytes.get(k, math.nan) for k in positions],
            "why_not": [why_not.get(k, "") for k in positions],
            "runs_on": list(best_order),
        },
        columns=LAYER_COLUMNS,
    )
    impossible = len(why_not)
    if impossible:
        notes.append(
            f"{impossible} of {len(cuts.layers) - 1} layer boundaries cannot be cut "
            "(see the layers table's why_not)"
        )
    notes += _shared_core_notes(profile_a, profile_b)
    return Placement(
        model=loaded.name,
        batch_size=profile_a.batch_size,
        processor_a=a.label,
        processor_b=b.label,
        link=link,
        max_cuts=max_cuts,
        scale_a=a.scale,
        scale_b=b.scale,
        end_to_end_a_ms=a.end_to_end_ms,
        end_to_end_b_ms=b.end_to_end_ms,
        options_a=_as_profiled(profile_a),
        options_b=_as_profiled(profile_b),
        layers=layer_rows,
        table=table,
        notes=tuple(notes),
        switch=switch,
        objective=objective,
        prices_per_hour=hourly,
    )


def _hourly_prices(
    objective: str, prices: tuple[Machine, Machine] | None
) -> tuple[float, float] | None:
    """Each processor's price per hour, or None without ``prices``; the objective checked."""
    if objective not in OBJECTIVES:
        raise PlacementError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if prices is None:
        if objective == "cost":
            raise PlacementError(
                "objective='cost' needs prices=(machine A, machine B) "
                "(workbench.planning.economics.load_machine)"
            )
        return None
    first, second = prices
    if first.currency != second.currency:
        raise PlacementError(
            f"the prices are in {first.currency} and {second.currency}; give both machines "
            "in one currency"
        )
    return _per_hour(first), _per_hour(second)


def _per_hour(machine: Machine) -> float:
    """What ``machine`` costs per hour it is used: its cost over one lifetime (a rented
    one: a year) spread over every hour of it."""
    from workbench.planning.economics import HOURS_PER_YEAR

    years = machine.lifetime_years or 1.0
    return machine.cost(1, years).total / (years * HOURS_PER_YEAR)


def _handover(
    switch: Switch | None, labels: tuple[str, str], notes: list[str]
) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """The ms of one change of runtime, of one part's call on A and on B, and of A's and
    B's layout conversions at a cut per byte crossing it (0 without a switch)."""
    if switch is None:
        return 0.0, (0.0, 0.0), (0.0, 0.0)
    if set(switch.processors) != set(labels):
        raise PlacementError(
            f"the switch was measured between {' and '.join(switch.processors)}, not "
            f"{' and '.join(labels)}; measure_switch the profiles placed"
        )
    notes.append(
        f"each change of runtime costs {format_ms(switch.ms)} (measured: {switch.probe}, "
        f"chain minus parts alone {format_ms(switch.round_trip_ms)} per call, both ways)"
    )
    call = dict(zip(switch.processors, switch.call_ms, strict=True))
    notes += [
        f"each part's call on {label} costs {format_ms(call[label])} beyond its profile's "
        "timed call (measured: session.run against its runner on staged inputs)"
        for label in dict.fromkeys(labels)
    ]
    # a cut converts on each side once: out of one part, or into the next
    per_byte = {
        label: ms / 2 / switch.probe_bytes if switch.probe_bytes > 0 else 0.0
        for label, ms in zip(switch.processors, switch.layout_ms, strict=True)
    }
    notes += [
        f"{label} converts the layout of what crosses a cut: {format_ms(per_byte[label] * 2**20)}"
        " per MiB on each side (measured: its parts' (layout) rows at the probe's cut)"
        for label in dict.fromkeys(labels)
        if per_byte[label] > 0
    ]
    return (
        switch.ms,
        (call[labels[0]], call[labels[1]]),
        (per_byte[labels[0]], per_byte[labels[1]]),
    )


def _model_of(model: Model | str | Path | None, name: str) -> Model:
    """``model`` loaded; None: the sample called ``name``, the only model a profile names."""
    from workbench.loaders import load
    from workbench.loaders.samples import names

    if model is None:
        if name not in names():
            raise PlacementError(
                f"the profiles are of {name!r}, not a sample: give model= (the model or its "
                "file) for its graph"
            )
        model = name
    return model if not isinstance(model, str | Path) else load(model)


def _check_profiles(a: Profile, b: Profile, model: Model) -> None:
    if a.model != b.model:
        raise PlacementError(
            f"the profiles are of different models ({a.model!r} on {a.backend}, {b.model!r} on "
            f"{b.backend}); profile one model on both processors"
        )
    if a.batch_size != b.batch_size:
        raise PlacementError(
            f"the profiles are at different batch sizes ({a.batch_size} and {b.batch_size}); "
            "profile both at the batch size to place"
        )
    prints = {model.fingerprint()} | ({model.to_onnx().fingerprint()} if model.module else set())
    for p in (a, b):
        if not p.model_fingerprint and p.model != model.name:
            raise PlacementError(
                f"the {p.backend}/{p.device} profile is of {p.model!r}, not of the model given "
                f"({model.name!r}); profile the model you place"
            )
        if p.model_fingerprint and p.model_fingerprint not in prints:
            raise PlacementError(
                f"the {p.backend}/{p.device} profile is of another {p.model!r} (weights or "
                f"graph differ from the model given: {p.model_fingerprint} not in "
                f"{sorted(prints)}); profile the model you place"
            )
        if p.layers.empty or "latency_ms" not in p.layers:
            raise PlacementError(
                f"the {p.backend}/{p.device} profile has no per-layer table; profile with "
                "layers (wb.profile(..., layers=True))"
            )


def _as_profiled(profile: Profile) -> dict[str, Any]:
    """The options a part must be compiled with to run as ``profile`` measured it.

    Without ``threads`` a runtime sizes its pool to the CPUs free when it compiles
    (`workbench.backends.cpus.default_threads`), which another process's work can change
    between the profile and the measurement (a model profiled at 2 threads and measured
    at 1 takes up to twice as long); the count the profile ran at is fixed instead.
    """
    options = dict(profile.options)
    threads = profile.environment.get("threads")
    if profile.device == "cpu" and not options.get("threads") and isinstance(threads, int):
        options["threads"] = threads
    return options


def _shared_core_notes(a: Profile, b: Profile) -> list[str]:
    """What a pipeline of two runtimes on the same CPU does that neither profile saw."""
    if a.device != "cpu" or b.device != "cpu":
        return []
    spin = (
        "in a pipeline sharing the CPU they keep cores busy after each of its parts and slow "
        "the other runtime's next part, which no profile sees"
    )
    notes = [
        f"{p.backend}/cpu was profiled with its idle threads spinning (its default): {spin}; "
        "profile it with options={'spinning': False} to predict (and run) the pipeline "
        "without that"
        for p in (a, b)
        if p.backend == "onnxruntime" and p.options.get("spinning", True)
    ]
    # libgomp reads the policy when torch loads it, so this process's is the one in force
    omp_passive = os.environ.get("OMP_WAIT_POLICY", "").strip().lower() == "passive"
    if not omp_passive and any(p.backend.startswith("torch") for p in (a, b)):
        notes.append(
            f"torch's OpenMP threads spin after each parallel region here (OMP_WAIT_POLICY is "
            f"not PASSIVE): {spin}; start Python with OMP_WAIT_POLICY=PASSIVE to profile "
            "(and run) the pipeline without that"
        )
    return notes


def _side(profile: Profile, layers: list[str], notes: list[str]) -> _Side:
    label = f"{profile.backend}/{profile.device}"
    table = profile.layers[profile.layers["layer"] != UNATTRIBUTED]
    medians = table.groupby("layer", sort=False)["latency_ms"].sum(min_count=1)
    profiled = medians.reindex(layers).to_numpy(dtype=float)
    found = ~np.isnan(profiled)
    if found.sum() < max(1, len(layers) // 2):
        raise PlacementError(
            f"the {label} profile's layers are not the graph's (it has "
            f"{', '.join(map(str, medians.index[:4]))}…, the graph "
            f"{', '.join(layers[:4])}…); profile the model's ONNX graph (wb.profile(m.to_onnx(), "
            "...))"
        )
    missing = [name for name, ok in zip(layers, found, strict=True) if not ok]
    if missing:
        notes.append(f"{label}: no time for {', '.join(missing[:5])}: counted as 0 ms")
    profiled = np.nan_to_num(profiled, nan=0.0)
    total = float(profiled.sum())
    end_to_end = float(profile.latency.median)
    scale = end_to_end / total if total > 0 else math.nan
    if not math.isfinite(scale):
        raise PlacementError(f"the {label} profile's layers sum to {total} ms; nothing to place")
    outside = float(table.loc[~table["layer"].isin(layers), "latency_ms"].sum())
    notes.append(
        f"{label}: layers sum to {format_ms(total)} of {format_ms(end_to_end)} end to end "
        f"(scale {scale:.3f}; {format_ms(outside)} in rows outside the graph's layers)"
    )
    return _Side(label, profiled * scale, profiled, scale, end_to_end, _fusions(table, layers))


def _fusions(table: pd.DataFrame, layers: list[str]) -> dict[int, str]:
    """Cut positions inside a fused kernel (a layer ``fused_into`` another) -> the pair."""
    if "fused_into" not in table:
        return {}
    position = {name: k for k, name in enumerate(layers)}
    found: dict[int, str] = {}
    for layer, into in zip(table["layer"], table["fused_into"], strict=True):
        if layer in position and isinstance(into, str) and into in position:
            low, high = sorted((position[layer], position[into]))
            for k in range(low + 1, high + 1):
                found.setdefault(k, f"{into}+{layer}")
    return found


def _fused_boundaries(*sides: _Side) -> dict[int, str]:
    """Cut positions inside a kernel either processor fuses -> why a cut there is not offered."""
    found: dict[int, str] = {}
    for side in sides:
        for k, pair in side.splits_fusion.items():
            found.setdefault(
                k, f"inside {side.label}'s fused {pair} (not predictable: place(fused_cuts=True))"
            )
    return found


def _bytes(tensors: Sequence[str], shapes: dict[str, tuple[tuple[int, ...], int]]) -> float:
    if any(t not in shapes for t in tensors):
        return math.nan
    return float(sum(int(np.prod(shapes[t][0])) * shapes[t][1] for t in tensors))


def _single_cut_orders(n: int, cuts: Sequence[int]) -> list[str]:
    """Every assignment with at most one change of processor: ``"aaabb"``, ``"bbbaa"``…"""
    orders = ["a" * n, "b" * n]
    for k in cuts:
        orders += ["a" * k + "b" * (n - k), "b" * k + "a" * (n - k)]
    return orders


@dataclass(frozen=True)
class _Costs:
    """What a split pays besides its layers, and how the objective weighs each part."""

    transfer: dict[int, float]  # cut position -> ms of the link's transfer there
    switch_ms: float  # per change of runtime
    call_ms: tuple[float, float]  # per part run on A, on B
    layout: dict[int, tuple[float, float]]  # cut position -> ms converting on A, on B
    hourly: tuple[float, float] | None  # price per hour of A, of B (objective "cost")

    def weights(self) -> tuple[float, float, float]:
        """Per ms on A, on B, and on a hand-over (which occupies both)."""
        if self.hourly is None:
            return 1.0, 1.0, 1.0
        return self.hourly[0], self.hourly[1], self.hourly[0] + self.hourly[1]


def _best_assignment(a: np.ndarray, b: np.ndarray, costs: _Costs, max_cuts: int) -> str:
    """The assignment of layers to ``a``/``b`` with the least weighted total and at most
    ``max_cuts`` changes of processor (a change only where a transfer is costed), the
    switch back to the first processor for the next call counted."""
    times = {"a": a, "b": b}
    weight_a, weight_b, both = costs.weights()
    weight = {"a": weight_a, "b": weight_b}
    call = dict(zip("ab", costs.call_ms, strict=True))
    found: list[tuple[float, str]] = []
    for first in "ab":
        # cost[(side, changes)] = (least total of layers 0..k ending on side, assignment)
        cost = {(first, 0): (weight[first] * (call[first] + float(times[first][0])), first)}
        for k in range(1, len(a)):
            step: dict[tuple[str, int], tuple[float, str]] = {}
            for (side, changes), (total, order) in cost.items():
                moves = [(side, changes, 0.0)]
                if k in costs.transfer and changes < max_cuts:
                    to = "b" if side == "a" else "a"
                    on_a, on_b = costs.layout[k]
                    change = (
                        both * (costs.transfer[k] + costs.switch_ms)
                        + weight[to] * call[to]
                        + weight_a * on_a
                        + weight_b * on_b
                    )
                    moves.append((to, changes + 1, change))
                for to, used, extra in moves:
                    value = total + extra + weight[to] * float(times[to][k])
                    if (to, used) not in step or value < step[(to, used)][0]:
                        step[(to, used)] = (value, order + to)
            cost = step
        found += [
            (total + (both * costs.switch_ms if order[-1] != first else 0.0), order)
            for total, order in cost.values()
        ]
    return min(found, key=lambda item: (item[0], _changes(item[1])))[1]


def _switches(order: str) -> int:
    """Changes of runtime per call of a chain timed back to back: its cuts, and one more
    from its last part to the next call's first when they run on different processors."""
    return _changes(order) + (order[0] != order[-1])


def _changes(order: str) -> int:
    return sum(x != y for x, y in itertools.pairwise(order))


def _segments(order: str) -> list[tuple[str, int, int]]:
    """``"aabba"`` -> [("a", 0, 2), ("b", 2, 4), ("a", 4, 5)]."""
    bounds = [0] + [k for k in range(1, len(order)) if order[k] != order[k - 1]] + [len(order)]
    return [(order[s], s, e) for s, e in itertools.pairwise(bounds)]


def _candidate(
    order: str,
    a: _Side,
    b: _Side,
    layers: list[str],
    crossing_bytes: dict[int, float],
    costs: _Costs,
) -> dict[str, Any]:
    segments = _segments(order)
    cuts = [start for _, start, _ in segments[1:]]
    label = {"a": a.label, "b": b.label}
    split = " → ".join(
        f"{label[s]}[{layers[start]}" + (f" … {layers[end - 1]}]" if end - start > 1 else "]")
        for s, start, end in segments
    )
    compute_a = float(sum(a.ms[k] for k, s in enumerate(order) if s == "a"))
    compute_b = float(sum(b.ms[k] for k, s in enumerate(order) if s == "b"))
    transfer_ms = float(sum(costs.transfer[k] for k in cuts))
    switches = float(_switches(order))
    switch_ms = switches * costs.switch_ms
    # one session call per part: its cost beyond the profile's timed call
    parts_on = [sum(side == s for s, _, _ in segments) for side in "ab"]
    calls = [n * ms for n, ms in zip(parts_on, costs.call_ms, strict=True)]
    layout = [sum(costs.layout[k][side] for k in cuts) for side in (0, 1)]
    cost = math.nan
    if costs.hourly is not None:
        # a hand-over occupies both ends; a processor that runs nothing costs nothing
        handover = transfer_ms + switch_ms
        occupied = [
            (compute_a + calls[0] + layout[0] + handover) * ("a" in order),
            (compute_b + calls[1] + layout[1] + handover) * ("b" in order),
        ]
        # price per hour x ms / 3.6e6 ms per hour, per million calls
        cost = sum(h * ms for h, ms in zip(costs.hourly, occupied, strict=True)) / 3.6
    split_fusions = [
        f"cuts {side.label}'s fused {side.splits_fusion[k]} (those layers run unfused, "
        "which their profiled 0 ms does not predict)"
        for k in cuts
        for side in (a, b)
        if k in side.splits_fusion
    ]
    return {
        "split": split,
        "order": ",".join(s for s, _, _ in segments),
        "cuts": ", ".join(layers[k] for k in cuts),
        "compute_a_ms": compute_a,
        "compute_b_ms": compute_b,
        "transfer_bytes": float(sum(crossing_bytes[k] for k in cuts)),
        "transfer_ms": transfer_ms,
        "switches": switches,
        "switch_ms": switch_ms,
        "call_ms": sum(calls),
        "layout_ms": sum(layout),
        "predicted_ms": compute_a + compute_b + transfer_ms + switch_ms + sum(calls) + sum(layout),
        "cost_per_1m_calls": cost,
        "best": False,
        "measured_ms": math.nan,
        "measured_n": math.nan,
        "error_fraction": math.nan,
        "parts_ms": math.nan,
        "measured_min_ms": math.nan,
        "measured_max_ms": math.nan,
        "note": "; ".join(split_fusions),
    }


# ---- the result ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """Every split of one model across two processors, predicted (and measured, when asked).

    Attributes:
        model: the model's name.
        batch_size: the profiled batch size the prediction is for.
        processor_a: ``backend/device`` of profile A; processor_b: of profile B.
        link: the link the transfers were costed on.
        max_cuts: most changes of processor the best split could use.
        scale_a, scale_b: end-to-end median over the sum of layer medians, per processor.
        end_to_end_a_ms, end_to_end_b_ms: each profile's measured end-to-end median.
        options_a, options_b: each profile's backend options (a measurement compiles with them).
        layers: one row per graph layer (`LAYER_COLUMNS`): scaled and profiled ms on each
            processor, whether a cut is possible before it (and why not), the tensors and
            bytes crossing that cut, and the processor the best split runs it on.
        table: one row per candidate split (`CANDIDATE_COLUMNS`), the best first, then by
            the objective; measured columns NaN until `measure_placement`.
            ``switches``: changes of runtime per call timed back to back; ``switch_ms``:
            those x the measured `switch` (0 without); ``call_ms``: each part's call
            beyond its profile's timed one (`Switch.call_ms`; 0 without); ``layout_ms``:
            the layout conversions of what crosses the cuts (`Switch.layout_ms`);
            ``cost_per_1m_calls``: money per million calls in the prices' currency (NaN
            without prices).
        notes: what the prediction rests on.
        switch: the measured hand-over between the runtimes (None: not counted).
        objective: ``"latency"`` or ``"cost"``: what the best split minimises.
        prices_per_hour: A's and B's price per hour (None: no prices given).
    """

    model: str
    batch_size: int
    processor_a: str
    processor_b: str
    link: Link
    max_cuts: int
    scale_a: float
    scale_b: float
    end_to_end_a_ms: float
    end_to_end_b_ms: float
    options_a: dict[str, Any]
    options_b: dict[str, Any]
    layers: pd.DataFrame
    table: pd.DataFrame
    notes: tuple[str, ...] = field(default_factory=tuple)
    switch: Switch | None = None
    objective: str = "latency"
    prices_per_hour: tuple[float, float] | None = None

    @property
    def best(self) -> pd.Series:
        """The best split's row of `table`."""
        return self.table.iloc[0]

    def with_measurements_of(self, *measured: Placement) -> Placement:
        """This placement with the measurements of the same splits in ``measured`` (their
        ``measured_*`` and ``parts_ms`` columns), the error against this prediction: a
        placement predicted again (say with a `Switch` pooled after the run) keeps the
        runs already made. Several placements, each measured in rounds of its own, pool
        as `measure_placement`'s rounds do: the median of their medians, the least and
        the most, the calls summed."""
        for one in measured:
            if (one.model, one.batch_size) != (self.model, self.batch_size):
                raise PlacementError(
                    f"the measurements are of {one.model} at batch {one.batch_size}, "
                    f"not {self.model} at batch {self.batch_size}"
                )
        runs = pd.concat([one.table[one.table["measured_ms"].notna()] for one in measured])
        done = runs.groupby("split").agg(
            measured_ms=("measured_ms", "median"), measured_n=("measured_n", "sum"),
            parts_ms=("parts_ms", "median"), measured_min_ms=("measured_min_ms", "min"),
            measured_max_ms=("measured_max_ms", "max"),
        )  # fmt: skip
        columns = list(done.columns)
        table = self.table.copy()
        found = table["split"].isin(done.index)
        table.loc[found, columns] = done.loc[table.loc[found, "split"], columns].to_numpy()
        table["error_fraction"] = table["predicted_ms"] / table["measured_ms"] - 1.0
        return replace(self, table=table)

    def summary(self) -> str:
        """The best split, its prediction against each processor alone, and the candidates."""
        from workbench.profiling.formatting import frame_text

        best = self.best
        link = self.link
        speed = (
            "no cost"
            if math.isinf(link.bandwidth_bytes_per_s)
            else (f"{format_bytes(link.bandwidth_bytes_per_s)}/s + {format_ms(link.latency_ms)}")
        )
        lines = [
            f"placement of {self.model} (batch {self.batch_size}) on {self.processor_a} and "
            f"{self.processor_b}, link {link.name or 'unnamed'} ({link.basis}: {speed})",
            f"best: {best['split']}: {format_ms(best['predicted_ms'])} predicted"
            + _measured_text(best)
            + f" (alone: {format_ms(self.end_to_end_a_ms)} and "
            f"{format_ms(self.end_to_end_b_ms)} measured)",
        ]
        columns = ["split", "predicted_ms", "transfer_bytes"]
        if self.switch is not None:
            columns.insert(2, "switch_ms")
        if self.prices_per_hour is not None:
            columns.insert(2, "cost_per_1m_calls")
        if self.table["measured_ms"].notna().any():
            columns += ["measured_ms", "error_fraction"]
        if self.table["parts_ms"].notna().any():
            columns.append("parts_ms")
        lines.append(frame_text(self.table[columns].head(12)))
        if len(self.table) > 12:
            lines.append(f"… {len(self.table) - 12} more candidates in .table")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        from workbench.profiling.formatting import frame_html

        head, best = self.summary().split("\n")[:2]
        return (
            f"<pre>{html.escape(head)}\n{html.escape(best)}</pre>"
            + frame_html(self.table)
            + "".join(f"<br><small>{html.escape(n)}</small>" for n in self.notes)
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        from workbench.scenarios.result import json_rows

        skip = ("link", "layers", "table", "switch", "prices_per_hour")
        data = {k: v for k, v in self.__dict__.items() if k not in skip}
        return {
            **data,
            "notes": list(self.notes),
            "switch": None if self.switch is None else self.switch.to_dict(),
            "prices_per_hour": None if self.prices_per_hour is None else list(self.prices_per_hour),
            "link": self.link.to_dict(),
            "layers": json_rows(self.layers),
            "table": json_rows(self.table),
        }

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The placement as JSON (`to_dict`), also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Placement:
        """Rebuild from `to_json` output, or from the file at a path holding it."""
        data = load_json(text_or_path, "a placement")
        try:
            table = pd.DataFrame(data["table"], columns=CANDIDATE_COLUMNS)
            text = ["split", "order", "cuts", "best", "note"]
            table = table.astype({c: "float64" for c in CANDIDATE_COLUMNS if c not in text})
            layers = pd.DataFrame(data["layers"], columns=LAYER_COLUMNS)
            numeric = ["a_ms", "b_ms", "a_profiled_ms", "b_profiled_ms", "crossing_bytes"]
            layers = layers.astype(dict.fromkeys(numeric, "float64"))
            skip = ("link", "layers", "table", "switch", "prices_per_hour")
            fields = {k: v for k, v in data.items() if k not in skip}
            switch, prices = data.get("switch"), data.get("prices_per_hour")
            return cls(
                **{**fields, "notes": tuple(data["notes"])},
                switch=None if switch is None else Switch.from_dict(switch),
                prices_per_hour=None if prices is None else (prices[0], prices[1]),
                link=Link.from_dict(data["link"]),
                layers=layers,
                table=table.astype({"best": bool}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlacementError(f"not a placement written by Placement.to_json ({exc})") from None


def _measured_text(row: pd.Series) -> str:
    if math.isnan(row["measured_ms"]):
        return ""
    return f", {format_ms(row['measured_ms'])} measured ({row['error_fraction']:+.1%})"


# ---- measuring ------------------------------------------------------------------------------
def measure_placement(
    placement: Placement,
    model: Model | str | Path | None = None,
    *,
    which: str | Sequence[str] = "best",
    timing: TimingOptions | None = None,
    parts: bool = False,
    rounds: int = 1,
) -> Placement:
    """Run splits for real: each part on its processor, fed by the last, timed end to end.

    Each part is compiled on its profile's backend and device as the profile ran (its
    options, and on the CPU the thread count it recorded: `Placement.options_a`), and
    the chain (``session.run`` of each part in turn, outputs handed over as arrays) is
    timed by the measuring core (`workbench.profiling.measure`). Both processors must
    exist here; the link is then whatever really joins them.

    Args:
        placement: from `place`.
        model: the model placed (None: the sample the placement names).
        which: ``"best"``, ``"all"``, or the ``split`` texts of the rows to measure.
        timing: budget and warm-up (default: the measuring core's).
        parts: also time each part alone on its own feeds, right before the chain:
            ``parts_ms``, the sum of their medians. Predicted against ``parts_ms`` is the
            per-layer model's miss (fused kernels a cut splits, each part's call);
            ``parts_ms`` against ``measured_ms`` is the pipeline's (the runtimes
            disturbing each other, the hand-over).
        rounds: how many times every split asked for is measured, round-robin (each
            round compiles its parts afresh), so that a stretch of seconds in which the
            machine runs slow (a VM's neighbours: on the 2-core development VM every
            runtime ran at about half speed for ten seconds at a time) sits in one
            round of each split rather than in every round of some splits.

    Returns:
        A new `Placement` whose rows measured have ``measured_ms`` (the median over the
        rounds of each round's median), ``measured_min_ms`` / ``measured_max_ms`` (the
        rounds' spread), ``measured_n`` (calls timed, all rounds), ``error_fraction``
        (predicted / measured - 1) and, with ``parts``, ``parts_ms`` (median over rounds).

    Raises:
        PlacementError: a ``which`` naming no row, ``rounds`` below 1;
            DeviceUnavailableError and the backend's errors when a processor is not here.

    Example:
        >>> measured = measure_placement(wb.place(a, b, model=m), m, which="all")
        >>> measured.table[["split", "predicted_ms", "measured_ms", "error_fraction"]]
    """
    from workbench.profiling.measure import TimingOptions as Options

    loaded = _model_of(model, placement.model)
    table = placement.table.copy()
    wanted = {"best": [0], "all": list(table.index)}.get(which) if isinstance(which, str) else None
    if wanted is None:
        names = [which] if isinstance(which, str) else list(which)
        unknown = [n for n in names if n not in set(table["split"])]
        if unknown:
            raise PlacementError(
                f"no candidate split {unknown[0]!r}; which= takes 'best', 'all' "
                "or texts of the table's split column"
            )
        wanted = list(table.index[table["split"].isin(names)])
    rounds = whole("rounds", rounds, minimum=1, maximum=100)
    inputs = loaded.example_inputs(placement.batch_size)
    where = {
        "a": (placement.processor_a, placement.options_a),
        "b": (placement.processor_b, placement.options_b),
    }
    chains: dict[int, list[Measurement]] = {index: [] for index in wanted}
    alone: dict[int, list[float]] = {index: [] for index in wanted}
    for _ in range(rounds):
        for index in wanted:
            row = table.loc[index]
            cuts = [c for c in str(row["cuts"]).split(", ") if c]
            sides = [where[s] for s in str(row["order"]).split(",")]
            [timed] = _time_split(loaded, cuts, sides, inputs, timing or Options(), parts=parts)
            chains[index].append(timed.chain)
            alone[index].append(sum(timed.parts_ms) if parts else math.nan)
    for index in wanted:
        medians = [m.median for m in chains[index]]
        median = float(np.median(medians))
        table.loc[index, ["measured_ms", "measured_min_ms", "measured_max_ms"]] = [
            median, min(medians), max(medians)]  # fmt: skip
        table.loc[index, "measured_n"] = sum(m.n for m in chains[index])
        table.loc[index, "parts_ms"] = float(np.median(alone[index]))
        table.loc[index, "error_fraction"] = table.loc[index, "predicted_ms"] / median - 1.0
    return replace(placement, table=table)


def measure_switch(
    profile_a: Profile,
    profile_b: Profile,
    model: Model | str | Path | None = None,
    *,
    cut: str | None = None,
    timing: TimingOptions | None = None,
    rounds: int = SWITCH_ROUNDS,
) -> Switch:
    """Measure here what one change of runtime costs in one process, for `place`.

    The model is cut in two (at ``cut``, default the middle cut splitting no fused kernel);
    each order (A's part then B's, B's then A's) is compiled as the profiles ran
    (`measure_placement`) and its chain timed back to back, right after each part is timed
    alone, in `SWITCH_ROUNDS` rounds. Per call the chain changes runtime twice (at the cut,
    and back for the next call), so the chain's median minus the parts' medians (the median
    over the rounds of both orders) is two changes.

    Args:
        profile_a, profile_b: the profiles to place (their processors, options, batch size).
        model: the model profiled (None: the sample the profiles name).
        cut: the layer the probe's second part starts at (`possible_cuts`); default the
            middle of the cuts that split no fused kernel of either profile.
        timing: budget and warm-up per measurement (default: the measuring core's).
        rounds: rounds of both orders (at least 1); rounds taken apart, spread over a
            longer run, are pooled with `Switch.pooled`.

    Returns:
        A `Switch`; ``ms`` is 0 when the chain was no slower than its parts (noise).

    Raises:
        PlacementError: the profiles do not fit the model (as `place`), a cut that is not
            possible; DeviceUnavailableError and the backend's errors when a processor is
            not here.

    Example:
        >>> switch = measure_switch(a, b, m)
        >>> p = wb.place(a, b, model=m, switch=switch)
    """
    from workbench.profiling.measure import TimingOptions as Options

    loaded = _model_of(model, profile_a.model)
    _check_profiles(profile_a, profile_b, loaded)
    from workbench.profiling.cost import tensor_shapes

    proto = onnx_proto(loaded)
    found = graph_cuts(proto)
    if cut is None:
        # the probe times a hand-over, not the unfusing of a kernel the cut would split
        fused = {k for profile in (profile_a, profile_b)
                 for k in _fusions(profile.layers, found.layers)}  # fmt: skip
        possible = sorted(set(found.crossing) - fused) or sorted(found.crossing)
        if not possible:
            raise PlacementError(f"{loaded.name}: no layer boundary can be cut (see place)")
        cut = found.layers[possible[len(possible) // 2]]
    rounds = whole("rounds", rounds, minimum=1, maximum=100)
    split_model(loaded, [cut])  # a cut that is not possible: one line naming the possible
    shapes = tensor_shapes(proto, loaded.example_inputs(profile_a.batch_size))
    probe_bytes = _bytes(found.crossing[found.layers.index(cut)], shapes)
    a = (f"{profile_a.backend}/{profile_a.device}", _as_profiled(profile_a))
    b = (f"{profile_b.backend}/{profile_b.device}", _as_profiled(profile_b))
    inputs = loaded.example_inputs(profile_a.batch_size)
    chains, parts, trips = [], [], []
    calls: dict[str, list[float]] = {a[0]: [], b[0]: []}
    # the whole model's own layout conversions are in its profile: only the cut's count
    layout = {a[0]: -_profiled_layout_ms(profile_a), b[0]: -_profiled_layout_ms(profile_b)}
    for sides in ([a, b], [b, a]):
        timed = _time_split(loaded, [cut], sides, inputs, timing or Options(), parts=True,
                            staged=True, rounds=rounds)  # fmt: skip
        chains.append(float(np.median([t.chain.median for t in timed])))
        parts.append(float(np.median([sum(t.parts_ms) for t in timed])))
        trips += [t.chain.median - sum(t.parts_ms) for t in timed]
        for t in timed:
            for (processor, _), run_ms, staged_ms in zip(
                sides, t.parts_ms, t.staged_ms, strict=True
            ):
                calls[processor].append(run_ms - staged_ms)
        for k, (processor, _) in enumerate(sides):
            layout[processor] += float(np.median([t.layout_ms[k] for t in timed]))
    # differences of medians: the median over rounds and orders, so one disturbed
    # measurement does not make them
    round_trip = float(np.median(trips))
    call_a, call_b = (max(float(np.median(calls[p])), 0.0) for p in (a[0], b[0]))  # noise: >= 0
    return Switch(
        ms=max(round_trip, 0.0) / 2,
        round_trip_ms=round_trip,
        chain_ms=(chains[0], chains[1]),
        parts_ms=(parts[0], parts[1]),
        probe=f"{loaded.name} cut before {cut}, both ways",
        processors=(a[0], b[0]),
        call_ms=(call_a, call_b),
        layout_ms=(max(layout[a[0]], 0.0), max(layout[b[0]], 0.0)),
        probe_bytes=probe_bytes,
    )


def _profiled_layout_ms(profile: Profile) -> float:
    from workbench.loaders.onnx import LAYOUT_LAYER

    return float(profile.layers.loc[profile.layers["layer"] == LAYOUT_LAYER, "latency_ms"].sum())


def _layout_ms(timings: Sequence[LayerTiming]) -> float:
    """The median ms of the layout conversions (``(layout)`` rows) of one per-layer run."""
    from workbench.loaders.onnx import LAYOUT_LAYER

    return float(sum(np.median(t.samples_ms) for t in timings if t.layer == LAYOUT_LAYER))


@dataclass(frozen=True)
class _Round:
    """One round of timing a split: the chain, and each part alone (``session.run`` on the
    feeds the chain hands it; with ``staged``, also its runner on them staged once)."""

    chain: Measurement
    parts_ms: list[float]
    staged_ms: list[float]
    layout_ms: list[float]  # with ``staged``: each part's ``(layout)`` rows, per-layer timed


def _time_split(
    model: Model,
    cuts: list[str],
    sides: list[tuple[str, dict[str, Any]]],
    inputs: dict[str, np.ndarray],
    timing: TimingOptions,
    *,
    parts: bool,
    staged: bool = False,
    rounds: int = 1,
) -> list[_Round]:
    """``rounds`` rounds of each part alone (when asked) and then the chain, on sessions
    compiled once. ``sides``: each part's ``backend/device`` and compile options."""
    from contextlib import ExitStack

    from workbench.profiling.measure import compiled, measure

    pieces = split_model(model, cuts) if cuts else [model.to_onnx()]
    with ExitStack() as stack:
        sessions = []
        for part, (processor, options) in zip(pieces, sides, strict=True):
            backend, _, device = processor.partition("/")
            sessions.append(stack.enter_context(compiled(part, backend, device, options)).session)
        run = chained(pieces, [s.run for s in sessions], output_names(model.to_onnx()))
        label = f"{model.name} {' → '.join(processor for processor, _ in sides)}"
        fed: list[dict[str, Any]] = []
        run(inputs, fed)
        steps = list(enumerate(zip(sessions, fed, strict=True)))
        timed = []
        for _ in range(rounds):
            alone = [
                measure(partial(s.run, f), timing, device="cpu", label=f"part {k + 1}").median
                for k, (s, f) in steps
                if parts
            ]
            # the profile's way: inputs staged once, outputs left where the runtime put them
            held = [
                measure(s.runner(f), timing, device="cpu", label=f"part {k + 1} staged").median
                for k, (s, f) in steps
                if staged
            ]
            layout = [_layout_ms(s.run_layers(f)) for _, (s, f) in steps if staged]
            chain = measure(lambda: run(inputs), timing, device="cpu", label=label)
            timed.append(_Round(chain, alone, held, layout))
        return timed
