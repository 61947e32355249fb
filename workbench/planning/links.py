"""Links between two processors: what moving an activation across costs, declared or measured.

A `Link` is a bandwidth and a per-transfer latency, labelled declared (a datasheet, a PCIe
generation and width) or measured (`measure_link`: transfers timed at several sizes by the
measuring core, a line fitted through them). `workbench.planning.placement` costs each
cut of a model with one.

Example:
    >>> Link.pcie(4, 16).bandwidth_bytes_per_s     # declared: 31.5e9 bytes/s
    >>> measure_link(cuda_copy("cuda:0"))          # measured here, where the GPU is
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.argtypes import number
from workbench.errors import InputError
from workbench.units import format_ms

if TYPE_CHECKING:
    from workbench.profiling.measure import TimingOptions

__all__ = ["LINK_SIZES_BYTES", "PCIE_LANE_BYTES_PER_S", "Link", "PlacementError", "cuda_copy",
           "measure_link"]  # fmt: skip

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
    # a growth within the times' float rounding is none: a flat line fits to +-1e-20
    if not slope * (sizes[-1] - sizes[0]) > 1e-9 * max(medians):
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
