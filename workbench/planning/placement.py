"""`place`: split one model's layers across two processors to minimise its latency.

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
  processor: exact for chains, an upper bound when a skip connection spans a segment.

A cut is possible before a layer when no layer before it uses a tensor made by a layer at
or after it (layers whose graph nodes interleave cannot be separated there).
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from workbench.argtypes import number, whole
from workbench.errors import InputError
from workbench.profiling.results import dump_json, load_json
from workbench.profiling.table import UNATTRIBUTED
from workbench.units import format_bytes, format_ms

if TYPE_CHECKING:
    import onnx

    from workbench.model import Model
    from workbench.profiling.measure import TimingOptions
    from workbench.profiling.profile import Profile

__all__ = [
    "CANDIDATE_COLUMNS",
    "LAYER_COLUMNS",
    "Link",
    "Placement",
    "PlacementError",
    "chained",
    "cuda_copy",
    "measure_link",
    "measure_placement",
    "place",
    "possible_cuts",
    "split_model",
]

#: bytes per second of one PCIe lane, per generation: transfer rate x line-code efficiency
#: (8b/10b to gen 2, 128b/130b to gen 5, gen 6's 242/256 FLIT), before packet overheads
PCIE_LANE_BYTES_PER_S = {
    1: 2.5e9 * 8 / 10 / 8,
    2: 5e9 * 8 / 10 / 8,
    3: 8e9 * 128 / 130 / 8,
    4: 16e9 * 128 / 130 / 8,
    5: 32e9 * 128 / 130 / 8,
    6: 64e9 * 242 / 256 / 8,
}
PCIE_LANES = (1, 2, 4, 8, 16)

CANDIDATE_COLUMNS = [
    "split", "order", "cuts", "compute_a_ms", "compute_b_ms", "transfer_bytes",
    "transfer_ms", "predicted_ms", "best", "measured_ms", "measured_n", "error_fraction", "note",
]  # fmt: skip
LAYER_COLUMNS = [
    "layer", "a_ms", "b_ms", "a_profiled_ms", "b_profiled_ms", "cut_before",
    "crossing_tensors", "crossing_bytes", "why_not", "runs_on",
]  # fmt: skip


class PlacementError(InputError):
    """Profiles, a link or a graph that cannot be placed (the message says which and why)."""


@dataclass(frozen=True)
class Link:
    """The link between the two processors: what moving an activation across costs.

    Attributes:
        bandwidth_bytes_per_s: sustained bytes per second (``math.inf``: shared memory).
        latency_ms: fixed cost of one transfer (one change of processor), in ms.
        basis: ``"declared"`` (a datasheet, a PCIe generation) or ``"measured"``.
        name: what the link is, in words.

    Raises:
        PlacementError: a bandwidth not above 0, a negative or non-finite latency.

    Example:
        >>> Link.pcie(4, 16, latency_ms=0.01)   # declared: 31.5 GB/s
        >>> Link.same_memory()                  # two runtimes in one process
    """

    bandwidth_bytes_per_s: float
    latency_ms: float = 0.0
    basis: str = "declared"
    name: str = ""

    def __post_init__(self) -> None:
        bandwidth = self.bandwidth_bytes_per_s
        if isinstance(bandwidth, bool) or not isinstance(bandwidth, int | float):
            raise PlacementError(f"link bandwidth must be a number of bytes/s, got {bandwidth!r}")
        if not bandwidth > 0:  # NaN too
            raise PlacementError(
                f"link bandwidth must be above 0 bytes/s, got {bandwidth!r}; give the "
                "link's bytes per second (math.inf for shared memory)"
            )
        try:
            number("link latency_ms", self.latency_ms, minimum=0.0)
        except InputError as exc:
            raise PlacementError(str(exc)) from None
        if self.basis not in ("declared", "measured"):
            raise PlacementError(f"link basis must be 'declared' or 'measured', got {self.basis!r}")

    @classmethod
    def pcie(cls, generation: int, lanes: int, latency_ms: float = 0.0) -> Link:
        """A declared PCIe link: the theoretical rate of ``lanes`` lanes of ``generation``.

        Args:
            generation: PCIe generation, 1 to 6.
            lanes: link width, 1, 2, 4, 8 or 16.
            latency_ms: the per-transfer latency you expect (declared; 0 when unknown).

        Raises:
            PlacementError: an unknown generation or width.
        """
        if generation not in PCIE_LANE_BYTES_PER_S or lanes not in PCIE_LANES:
            raise PlacementError(
                f"PCIe {generation!r} x{lanes!r} is not a link: generations "
                f"{sorted(PCIE_LANE_BYTES_PER_S)}, widths {list(PCIE_LANES)}"
            )
        rate = PCIE_LANE_BYTES_PER_S[generation] * lanes
        return cls(rate, latency_ms, "declared", f"PCIe {generation}.0 x{lanes} (theoretical)")

    @classmethod
    def same_memory(cls) -> Link:
        """Two runtimes in one process: an array is handed over, nothing is copied."""
        return cls(math.inf, 0.0, "declared", "same process memory (zero cost)")

    @classmethod
    def parse(cls, text: str, latency_ms: float = 0.0) -> Link:
        """A link from a short text: ``same-memory``, ``pcie4x16``, or bytes/s
        (``12e9``, ``12GB/s``, ``900MiB/s``).

        Raises:
            PlacementError: text that is none of these.
        """
        spec = text.strip().lower().replace(" ", "")
        if spec == "same-memory":
            return cls.same_memory()
        if spec.startswith("pcie") and "x" in spec:
            generation, _, lanes = spec[4:].partition("x")
            if generation.isdigit() and lanes.isdigit():
                return cls.pcie(int(generation), int(lanes), latency_ms)
        units = {"gib/s": 2**30, "mib/s": 2**20, "gb/s": 1e9, "mb/s": 1e6, "b/s": 1.0}
        scale = next((units[u] for u in units if spec.endswith(u)), 1.0)
        figure = next((spec[: -len(u)] for u in units if spec.endswith(u)), spec)
        try:
            bandwidth = float(figure) * scale
        except ValueError:
            raise PlacementError(
                f"link {text!r} is not same-memory, pcie<gen>x<lanes> or a bandwidth such as 12GB/s"
            ) from None
        return cls(bandwidth, latency_ms, "declared", f"{text} (declared)")

    def transfer_ms(self, size_bytes: float) -> float:
        """The time one transfer of ``size_bytes`` takes, in ms."""
        return self.latency_ms + size_bytes / self.bandwidth_bytes_per_s * 1e3

    def to_dict(self) -> dict[str, Any]:
        """Plain data (an infinite bandwidth is written as None)."""
        bandwidth = self.bandwidth_bytes_per_s
        return {
            **asdict(self),
            "bandwidth_bytes_per_s": None if math.isinf(bandwidth) else bandwidth,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Link:
        """Rebuild from `to_dict`."""
        bandwidth = data["bandwidth_bytes_per_s"]
        return cls(
            **{**data, "bandwidth_bytes_per_s": math.inf if bandwidth is None else bandwidth}
        )


#: the transfer sizes a link is measured at: small enough to be quick, large enough that
#: the bandwidth term dominates the last
LINK_SIZES_BYTES = (64 << 10, 1 << 20, 8 << 20, 32 << 20)


def measure_link(
    copy: Callable[[int], Callable[[], Any]],
    sizes_bytes: Sequence[int] = LINK_SIZES_BYTES,
    *,
    timing: TimingOptions | None = None,
    device: str = "cpu",
    name: str = "measured",
) -> Link:
    """Measure a link: time one transfer at each size, fit time = latency + bytes / bandwidth.

    Args:
        copy: given a size in bytes, returns a zero-argument callable that moves that many
            bytes across the link and returns when they have arrived (it synchronises);
            buffers are allocated once, outside the callable.
        sizes_bytes: the sizes timed (at least two different ones).
        timing: budget and warm-up per size (default: the measuring core's).
        device: the device the copies end on (CUDA is timed with events).
        name: the link's name.

    Returns:
        A ``"measured"`` `Link`: the least-squares line through the median times, its
        slope the inverse bandwidth, its intercept the latency (0 when below).

    Raises:
        PlacementError: fewer than two sizes, or times that do not grow with the size.

    Example:
        >>> link = measure_link(cuda_copy("cuda:0"), name="host to cuda:0")
    """
    from workbench.profiling.measure import TimingOptions as Options
    from workbench.profiling.measure import measure

    sizes = sorted({int(size) for size in sizes_bytes})
    if len(sizes) < 2 or sizes[0] <= 0:
        raise PlacementError(f"measuring a link needs two or more sizes above 0, got {sizes}")
    medians = [
        measure(copy(size), timing or Options(), device=device, label=f"{name}: {size} B").median
        for size in sizes
    ]
    slope, intercept = np.polyfit(np.asarray(sizes, float), np.asarray(medians), 1)
    if not slope > 0:
        shown = ", ".join(
            f"{size} B: {format_ms(ms)}" for size, ms in zip(sizes, medians, strict=True)
        )
        raise PlacementError(
            f"the transfers did not take longer as they grew ({shown}); measure larger sizes "
            "or declare the link"
        )
    return Link(1e3 / slope, max(float(intercept), 0.0), "measured", name)


def cuda_copy(device: str = "cuda:0") -> Callable[[int], Callable[[], Any]]:
    """Copies from pageable host memory (as a runtime copies a numpy array) to ``device``,
    for `measure_link`.

    Raises:
        PlacementError: torch has no CUDA device ``device`` here.
    """
    import torch

    if not torch.cuda.is_available():
        raise PlacementError(
            f"no CUDA device here to measure a link to {device}; declare it (Link.pcie, or "
            "--link pcie4x16)"
        )

    def sized(size: int) -> Callable[[], Any]:
        host = torch.from_numpy(np.ones(size, dtype=np.uint8))
        target = torch.empty(size, dtype=torch.uint8, device=device)

        def run() -> None:
            target.copy_(host)
            torch.cuda.synchronize(device)

        return run

    return sized


# ---- the graph: layers in order, which cuts are possible, what crosses each ---------------
@dataclass(frozen=True)
class _Cuts:
    layers: list[str]  # canonical layers in graph order
    crossing: dict[int, list[str]]  # cut position k (before layers[k]) -> tensors crossing
    why_not: dict[int, str]  # impossible cut positions -> the reason
    # tensors made from model inputs' shapes and constants alone (a batch size read by
    # Shape for a Reshape): every part recomputes them from these model inputs
    recomputed: dict[str, set[str]]


def _used(node: onnx.NodeProto) -> Iterable[str]:
    """Tensors a node reads, its subgraphs' outer-scope reads included."""
    yield from (t for t in node.input if t)
    for attribute in node.attribute:
        for graph in [attribute.g, *attribute.graphs] if attribute.type in (5, 10) else []:
            for inner in graph.node:
                yield from _used(inner)


def _recomputed(graph: onnx.GraphProto) -> dict[str, set[str]]:
    """Tensors computed only from model inputs' shapes and constants, with those inputs."""
    inputs = {i.name for i in graph.input}
    weights = {t.name for t in graph.initializer}
    found: dict[str, set[str]] = {}
    for node in graph.node:
        used = list(_used(node))
        if node.op_type in ("Shape", "Size") and used and used[0] in inputs:
            roots = {used[0]}
        elif all(t in weights or t in found for t in used):
            roots = set().union(*(found.get(t, set()) for t in used))
        else:
            continue
        found.update({t: roots for t in node.output if t})
    return found


def _graph_cuts(proto: onnx.ModelProto) -> _Cuts:
    from workbench.loaders.onnx import canonical_layer_name

    graph = proto.graph
    layer_of = [canonical_layer_name(n, i) for i, n in enumerate(graph.node)]
    layers = list(dict.fromkeys(layer_of))
    position = {name: k for k, name in enumerate(layers)}
    recomputed = _recomputed(graph)
    made_at = {
        t: position[layer_of[i]]
        for i, n in enumerate(graph.node)
        for t in n.output
        if t and t not in recomputed
    }
    last_use: dict[str, int] = {}
    why_not: dict[int, str] = {}
    for i, node in enumerate(graph.node):
        here = position[layer_of[i]]
        for tensor in _used(node):
            made = made_at.get(tensor)
            if made is None:  # a model input, a weight or recomputed: each part has its own
                continue
            last_use[tensor] = max(last_use.get(tensor, here), here)
            for k in range(here + 1, made + 1):  # a layer reads what a later one makes
                why_not.setdefault(
                    k,
                    f"{layers[here]} uses {tensor} made by {layers[made]}, which runs after it "
                    "(their graph nodes interleave)",
                )
    crossing = {
        k: [t for t, made in made_at.items() if made < k <= last_use.get(t, -1)]
        for k in range(1, len(layers))
        if k not in why_not
    }
    for k in [k for k, tensors in crossing.items() if not tensors]:
        del crossing[k]
        why_not[k] = "nothing made before it is used after it (a part would hand nothing on)"
    return _Cuts(layers, crossing, why_not, recomputed)


def possible_cuts(model: Model) -> list[str]:
    """The layers of ``model``'s graph a second segment can start at, in graph order."""
    cuts = _graph_cuts(_onnx_proto(model))
    return [cuts.layers[k] for k in sorted(cuts.crossing)]


def _onnx_proto(model: Model) -> onnx.ModelProto:
    proto = model.to_onnx().proto
    assert proto is not None  # to_onnx always holds a graph
    return proto


# ---- placing ------------------------------------------------------------------------------
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
    model: Model | str | Path,
    link: Link | None = None,
    max_cuts: int = 1,
) -> Placement:
    """The split of ``model``'s layers across two processors with the lowest latency.

    Args:
        profile_a: the model profiled per layer on processor A (`wb.profile`).
        profile_b: the same model at the same batch size profiled on processor B.
        model: the model both profiles are of (a `Model`, a path or a sample name): its
            ONNX graph gives the layer order, the possible cuts and the bytes crossing each.
        link: the link between A and B; default `Link.same_memory` (two runtimes in one
            process).
        max_cuts: most changes of processor (1: A then B, or B then A; more split the
            layers into more segments, each one more session call whose fixed cost the
            profiles do not see: give it as the link's latency).

    Returns:
        A `Placement`: every single-cut split (and the best with up to ``max_cuts``),
        predicted, fastest first; the per-layer table it came from.

    Raises:
        PlacementError: profiles of different models or batch sizes, a profile with no
            per-layer table or whose layers are not the graph's, a graph with no possible
            cut (says why for each), ``max_cuts`` below 1.

    Example:
        >>> a = wb.profile(m, backend="onnxruntime"); b = wb.profile(m, backend="numba")
        >>> p = wb.place(a, b, model=m, link=Link.same_memory())
        >>> p.best["split"], p.best["predicted_ms"]
    """
    from workbench.loaders import load
    from workbench.profiling.cost import tensor_shapes

    link = link or Link.same_memory()
    try:
        max_cuts = whole("max_cuts", max_cuts, minimum=1, maximum=1000)
    except InputError as exc:
        raise PlacementError(str(exc)) from None
    loaded = model if not isinstance(model, str | Path) else load(model)
    _check_profiles(profile_a, profile_b, loaded)
    proto = _onnx_proto(loaded)
    cuts = _graph_cuts(proto)
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
    shapes = tensor_shapes(proto, loaded.example_inputs(profile_a.batch_size))
    crossing_bytes = {k: _bytes(ts, shapes) for k, ts in cuts.crossing.items()}
    if any(math.isnan(v) for v in crossing_bytes.values()):
        notes.append("some crossing tensors have no known shape: those cuts are left out")
        crossing_bytes = {k: v for k, v in crossing_bytes.items() if not math.isnan(v)}
    switch = {k: link.transfer_ms(v) for k, v in crossing_bytes.items()}
    best_order = _best_assignment(a.ms, b.ms, switch, max_cuts)
    rows = [
        _candidate(order, a, b, cuts.layers, crossing_bytes, switch)
        for order in _single_cut_orders(len(cuts.layers), sorted(switch))
    ]
    best = _candidate(best_order, a, b, cuts.layers, crossing_bytes, switch)
    table = pd.DataFrame([*rows, best], columns=CANDIDATE_COLUMNS)
    table = table.drop_duplicates("split").sort_values("predicted_ms", kind="stable")
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
            "why_not": [cuts.why_not.get(k, "") for k in positions],
            "runs_on": list(best_order),
        },
        columns=LAYER_COLUMNS,
    )
    impossible = len(cuts.why_not)
    if impossible:
        notes.append(
            f"{impossible} of {len(cuts.layers) - 1} layer boundaries cannot be cut "
            "(see the layers table's why_not)"
        )
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
        options_a=dict(profile_a.options),
        options_b=dict(profile_b.options),
        layers=layer_rows,
        table=table,
        notes=tuple(notes),
    )


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


def _best_assignment(a: np.ndarray, b: np.ndarray, switch: dict[int, float], max_cuts: int) -> str:
    """The assignment of layers to ``a``/``b`` with the least total time and at most
    ``max_cuts`` changes of processor (a change only where ``switch`` has a cost)."""
    times = {"a": a, "b": b}
    # cost[(side, changes)] = (least time of layers 0..k ending on side, assignment)
    cost = {(s, 0): (float(times[s][0]), s) for s in "ab"}
    for k in range(1, len(a)):
        step: dict[tuple[str, int], tuple[float, str]] = {}
        for (side, changes), (total, order) in cost.items():
            moves = [(side, changes, 0.0)]
            if k in switch and changes < max_cuts:
                moves.append(("b" if side == "a" else "a", changes + 1, switch[k]))
            for to, used, extra in moves:
                value = total + extra + float(times[to][k])
                if (to, used) not in step or value < step[(to, used)][0]:
                    step[(to, used)] = (value, order + to)
        cost = step
    return min(cost.values(), key=lambda item: (item[0], _changes(item[1])))[1]


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
    switch: dict[int, float],
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
    transfer_ms = float(sum(switch[k] for k in cuts))
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
        "predicted_ms": compute_a + compute_b + transfer_ms,
        "best": False,
        "measured_ms": math.nan,
        "measured_n": math.nan,
        "error_fraction": math.nan,
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
            predicted latency; measured columns NaN until `measure_placement`.
        notes: what the prediction rests on.
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

    @property
    def best(self) -> pd.Series:
        """The best split's row of `table`."""
        return self.table.iloc[0]

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
        if self.table["measured_ms"].notna().any():
            columns += ["measured_ms", "error_fraction"]
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

        data = {k: v for k, v in self.__dict__.items() if k not in ("link", "layers", "table")}
        return {
            **data,
            "notes": list(self.notes),
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
            fields = {k: v for k, v in data.items() if k not in ("link", "layers", "table")}
            return cls(
                **{**fields, "notes": tuple(data["notes"])},
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


# ---- splitting and measuring --------------------------------------------------------------
def split_model(model: Model, cuts: Sequence[str]) -> list[Model]:
    """``model``'s ONNX graph cut into consecutive parts, each a new `Model`.

    Each part's inputs are the model inputs it uses and the tensors earlier parts make
    for it; its outputs, the tensors later parts use and the model outputs it makes.
    Running the parts in order, each fed from what came before, gives the model's outputs.
    ``model`` is not changed.

    Args:
        model: the model (a torch model is exported to ONNX first).
        cuts: the layers the second, third… parts start at, in graph order.

    Raises:
        PlacementError: a layer that is not in the graph, cuts out of order, or a cut that
            is not possible (names why, and the possible ones).

    Example:
        >>> first, second = split_model(m, ["features.6"])
    """
    from onnx.utils import Extractor

    from workbench.loaders import load

    proto = _onnx_proto(model)
    found = _graph_cuts(proto)
    position = {name: k for k, name in enumerate(found.layers)}
    starts = []
    for layer in cuts:
        k = position.get(layer)
        if k is None or k not in found.crossing:
            possible = ", ".join(found.layers[j] for j in sorted(found.crossing)) or "none"
            why = (
                "not a layer of its graph" if k is None else found.why_not.get(k, "its first layer")
            )
            raise PlacementError(
                f"cannot cut {model.name} before {layer!r}: {why}; possible cuts "
                f"are before: {possible}"
            )
        starts.append(k)
    if starts != sorted(set(starts)):
        raise PlacementError(f"cuts {list(cuts)} are not in graph order (or repeat a layer)")
    from workbench.loaders.onnx import canonical_layer_name

    graph = proto.graph
    bounds = [0, *starts, len(found.layers)]
    # the part a node runs in: the last part starting at or before its layer
    part_of = [
        sum(start <= position[canonical_layer_name(n, i)] for start in starts)
        for i, n in enumerate(graph.node)
    ]
    weights = {t.name for t in graph.initializer}  # each part keeps the weights it uses
    outputs = [o.name for o in graph.output]
    extractor = Extractor(proto)
    parts = []
    for j in range(len(bounds) - 1):
        nodes = [n for n, p in zip(graph.node, part_of, strict=True) if p == j]
        made = {t for n in nodes for t in n.output if t}
        later = {t for n, p in zip(graph.node, part_of, strict=True) if p > j for t in _used(n)}
        needs = [t for n in nodes for t in _used(n) if t not in made and t not in weights]
        # a recomputed tensor is made again in this part from the model inputs it came from
        roots = [r for t in needs for r in sorted(found.recomputed.get(t, {t}))]
        part_inputs = list(dict.fromkeys(roots))
        kept = [
            t
            for t in dict.fromkeys([*later, *outputs])
            if t in outputs or t not in found.recomputed
        ]
        part_outputs = [t for t in kept if t in made]
        sub = extractor.extract_model(part_inputs, part_outputs)
        parts.append(load(sub, name=f"{model.name}[part {j + 1}/{len(bounds) - 1}]"))
    return parts


def measure_placement(
    placement: Placement,
    model: Model | str | Path,
    *,
    which: str | Sequence[str] = "best",
    timing: TimingOptions | None = None,
) -> Placement:
    """Run splits for real: each part on its processor, fed by the last, timed end to end.

    Each part is compiled on its profile's backend and device with the profile's options,
    and the chain (``session.run`` of each part in turn, outputs handed over as arrays)
    is timed by the measuring core (`workbench.profiling.measure`). Both processors must
    exist here; the link is then whatever really joins them.

    Args:
        placement: from `place`.
        model: the model placed.
        which: ``"best"``, ``"all"``, or the ``split`` texts of the rows to measure.
        timing: budget and warm-up (default: the measuring core's).

    Returns:
        A new `Placement` whose rows measured have ``measured_ms`` (the median),
        ``measured_n`` and ``error_fraction`` (predicted / measured - 1).

    Raises:
        PlacementError: a ``which`` naming no row; DeviceUnavailableError and the backend's
            errors when a processor is not here.

    Example:
        >>> measured = measure_placement(wb.place(a, b, model=m), m, which="all")
        >>> measured.table[["split", "predicted_ms", "measured_ms", "error_fraction"]]
    """
    from workbench.loaders import load
    from workbench.profiling.measure import TimingOptions as Options

    loaded = model if not isinstance(model, str | Path) else load(model)
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
    inputs = loaded.example_inputs(placement.batch_size)
    for index in wanted:
        row = table.loc[index]
        cuts = [c for c in str(row["cuts"]).split(", ") if c]
        m = _time_split(
            placement, loaded, cuts, str(row["order"]).split(","), inputs, timing or Options()
        )
        table.loc[index, ["measured_ms", "measured_n"]] = [m.median, m.n]
        table.loc[index, "error_fraction"] = row["predicted_ms"] / m.median - 1.0
    return replace(placement, table=table)


def _time_split(
    placement: Placement,
    model: Model,
    cuts: list[str],
    sides: list[str],
    inputs: dict[str, np.ndarray],
    timing: TimingOptions,
) -> Any:
    from contextlib import ExitStack

    from workbench.profiling.measure import compiled, measure

    parts = split_model(model, cuts) if cuts else [model.to_onnx()]
    where = {
        "a": (placement.processor_a, placement.options_a),
        "b": (placement.processor_b, placement.options_b),
    }
    with ExitStack() as stack:
        sessions = []
        for part, side in zip(parts, sides, strict=True):
            processor, options = where[side]
            backend, _, device = processor.partition("/")
            sessions.append(stack.enter_context(compiled(part, backend, device, options)).session)
        run = chained(parts, [s.run for s in sessions], _output_names(model.to_onnx()))
        label = " → ".join(f"{where[s][0]}" for s in sides)
        return measure(
            lambda: run(inputs), timing, device="cpu", label=f"{placement.model} {label}"
        )


def chained(
    parts: Sequence[Model],
    runs: Sequence[Callable[[dict[str, Any]], list[Any]]],
    outputs: list[str],
) -> Callable[[dict[str, Any]], list[Any]]:
    """One call running ``parts`` in turn, each fed the model inputs and earlier parts'
    outputs it takes, returning the tensors named ``outputs`` (the whole model's).

    Args:
        parts: from `split_model`.
        runs: one function per part, feeds by name -> outputs in the part's output order
            (a `Session.run`).
        outputs: the names to return, in order.

    Example:
        >>> run = chained(parts, [s.run for s in sessions], ["linear"])
        >>> (logits,) = run(m.example_inputs(8))
    """
    steps = [
        ([i.name for i in p.inputs], _output_names(p), fn)
        for p, fn in zip(parts, runs, strict=True)
    ]

    def run(inputs: dict[str, Any]) -> list[Any]:
        known: dict[str, Any] = dict(inputs)
        for names, produced, fn in steps:
            known.update(zip(produced, fn({n: known[n] for n in names}), strict=True))
        return [known[n] for n in outputs]

    return run


def _output_names(part: Model) -> list[str]:
    return [o.name for o in _onnx_proto(part).graph.output]
