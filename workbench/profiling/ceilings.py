"""Machine ceilings for the roofline: attainable FLOP/s and memory bandwidth, honestly.

*Measured*: the compute ceiling is the best fp32 rate over several GEMM shapes and every
library present (NumPy's BLAS, torch, ONNX Runtime's MatMul) and over a few 3x3
convolutions on ONNX Runtime, the bandwidth the best of a
read, a write and a copy test over 256 MiB (NumPy and torch), and the bandwidth of each
cache level a copy over a working set of 32 KiB to 16 MiB attains on all threads (a
layer whose data fit a cache is held to that cache's roof, not the memory's: a max-pool
over 640 KiB reached 75 GB/s against 37 GB/s from memory); each probe is repeated until
its best rate stops moving (the best of the last ``k`` runs within 3% of the best before
them), and the machine's load average is recorded with the result. *Theoretical*: cores x
clock x fp32 lanes x 2 (FMA) x FMA units, from ``/proc/cpuinfo`` and ``lscpu``, or
"unavailable" when the clock is unknown; a measured ceiling above it is flagged.

Cached in ``$WORKBENCH_CACHE_DIR/ceilings.json`` (default ``~/.cache/workbench``) keyed by
device, processor and thread count, with the time of measurement; an entry older than
`MAX_AGE` is measured again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from workbench.backends.base import cache_dir
from workbench.errors import InvalidArgumentError
from workbench.profiling.results import dump_json, load_json

#: a cached entry older than this is measured again
MAX_AGE = dt.timedelta(days=7)
#: a probe is stable when its best rate moved less than this over its last `STABLE_RUNS`
STABLE_TOLERANCE = 0.03
STABLE_RUNS = 3
#: (M, K, N) of the GEMMs behind the compute ceiling: small, square, large
GEMM_SHAPES = ((512, 512, 512), (1024, 1024, 1024), (2048, 1024, 2048))
#: (N, C, H, W, M) of the 3x3 convolutions (same padding) behind the compute ceiling too:
#: ONNX Runtime's direct convolution kernels beat every GEMM shape above on small images
#: (the sample CNN's 64-channel 4x4 layer ran at 1.09x the best GEMM, the sample ResNet's
#: 128-channel 8x8 layers at 1.07x)
CONV_SHAPES = ((32, 32, 8, 8, 64), (32, 64, 4, 4, 64), (32, 128, 8, 8, 128), (8, 64, 28, 28, 64))
#: working sets (source plus destination bytes) of the cache-level bandwidth probes
CACHE_PROBE_BYTES = (32 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20)
#: a probe returns the rate (FLOP/s or bytes/s) attained by one timed run
Probe = Callable[[], float]
#: ``{"compute": {name: Probe}, "memory": {name: Probe}, "cache": {bytes: {name: Probe}}}``
ProbeSet = Mapping[str, Mapping[Any, Any]]


@dataclass(frozen=True)
class TheoreticalPeak:
    """The fp32 peak a CPU's specification allows (an upper bound, not a measurement).

    Attributes:
        flops_per_s: cores x clock x lanes x 2 x FMA units, or None when the clock is unknown.
        cores: physical cores used.
        clock_hz: the clock used, or None.
        clock_source: where the clock came from (``lscpu max``, ``model name``, ``cpu MHz``).
        fp32_lanes: fp32 lanes of the widest vector unit (16 for AVX-512).
        fma_units: FMA units per core assumed.
        note: the assumptions, or why the peak is unavailable.
    """

    flops_per_s: float | None
    cores: int
    clock_hz: float | None
    clock_source: str
    fp32_lanes: int
    fma_units: int
    note: str


@dataclass(frozen=True)
class Ceilings:
    """What a device can attain, and what its specification allows.

    Attributes:
        device: the device string (``"cpu"``, ``"cuda:0"``).
        peak_flops_per_s: best measured fp32 FLOP/s (2 FLOPs per multiply-add).
        bandwidth_bytes_per_s: best measured memory bandwidth (bytes/s).
        method: how it was measured.
        measured_at: ISO timestamp (UTC).
        load_average: the 1, 5 and 15 minute load averages when measured.
        threads: the thread count the probes ran with.
        processor: the CPU (or GPU) model.
        theoretical_flops_per_s: the specification's fp32 peak, None when unknown.
        theoretical_note: how the theoretical peak was computed, or why it is unknown.
        probes: the best rate of each probe (``"gemm numpy 1024x1024x1024"``,
            ``"read numpy"``, ...) and how many runs it took, for the record.
        bandwidth_by_bytes: ``(working set bytes, bytes/s)`` of the cache-level copy
            probes, smallest first; empty where they were not measured.
        warnings: what is wrong with these numbers (a measured rate above the
            theoretical peak, a busy machine).
    """

    device: str
    peak_flops_per_s: float
    bandwidth_bytes_per_s: float
    method: str = ""
    measured_at: str = ""
    load_average: tuple[float, ...] = ()
    threads: int = 0
    processor: str = ""
    theoretical_flops_per_s: float | None = None
    theoretical_note: str = ""
    probes: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    bandwidth_by_bytes: tuple[tuple[int, float], ...] = ()

    @property
    def ridge_intensity(self) -> float:
        """FLOPs per byte above which a kernel streaming from memory is compute bound."""
        return self.peak_flops_per_s / self.bandwidth_bytes_per_s

    def bandwidth_for(self, nbytes: np.ndarray) -> np.ndarray:
        """The bandwidth roof of work touching ``nbytes`` bytes (elementwise): the best
        any cache probe with a working set at least that large attained (data that fit
        a cache move at least as fast as a larger working set does), never below the
        memory's."""
        nbytes = np.asarray(nbytes, dtype=float)
        roof = np.full(nbytes.shape, self.bandwidth_bytes_per_s)
        for size, rate in self.bandwidth_by_bytes:
            roof = np.where(nbytes <= size, np.maximum(roof, rate), roof)
        return roof

    def age(self, now: dt.datetime | None = None) -> dt.timedelta:
        """Time since measurement (infinite-like when the timestamp is missing)."""
        try:
            then = dt.datetime.fromisoformat(self.measured_at)
        except ValueError:
            return dt.timedelta.max
        if then.tzinfo is None:  # written without a zone: ours are always UTC
            then = then.replace(tzinfo=dt.UTC)
        return (now or dt.datetime.now(dt.UTC)) - then

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (with the derived ``ridge_intensity``)."""
        data = asdict(self)
        data["load_average"], data["warnings"] = list(self.load_average), list(self.warnings)
        data["bandwidth_by_bytes"] = [list(pair) for pair in self.bandwidth_by_bytes]
        return {**data, "probes": dict(self.probes), "ridge_intensity": self.ridge_intensity}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ceilings:
        """Rebuild from `to_dict` output (unknown keys, e.g. of older caches, are dropped)."""
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("load_average", "warnings"):
            kwargs[key] = tuple(kwargs.get(key, ()))
        kwargs["bandwidth_by_bytes"] = tuple(
            (int(size), float(rate)) for size, rate in kwargs.get("bandwidth_by_bytes", ())
        )
        return cls(**kwargs)

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        """The ceilings as JSON (`to_dict`), also written to ``path`` when given."""
        return dump_json(self.to_dict(), path, indent)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Ceilings:
        """Rebuild from `to_json` output, or from the file at a path holding it."""
        return cls.from_dict(load_json(text_or_path, "machine ceilings"))


def machine_ceilings(
    device: str = "cpu",
    refresh: bool = False,
    *,
    max_age: dt.timedelta = MAX_AGE,
    probes: ProbeSet | None = None,
) -> Ceilings:
    """The device's attainable FLOP/s and memory bandwidth, measured and cached on disk.

    A cached value is used while it is younger than ``max_age`` and was measured on the
    same processor with the same thread count (the cache key); otherwise, or with
    ``refresh``, the probes run again (a few seconds on a CPU) and the cache is updated.

    Args:
        device: ``"cpu"`` or a CUDA device (``"cuda:0"``, measured with torch; synchronises).
        refresh: measure again even when a fresh cached value exists.
        max_age: a cached value older than this is measured again.
        probes: ``{"compute": {name: probe}, "memory": {name: probe}}`` to measure with
            instead of the built-in kernels (tests inject fake rates here), optionally
            with ``"cache": {working set bytes: {name: probe}}``.

    Returns:
        A `Ceilings`, with the load average at measurement and the theoretical peak.

    Raises:
        ValueError: a device other than cpu/cuda (nothing to measure it with).

    Example:
        >>> c = wb.machine_ceilings("cpu")
        >>> c.peak_flops_per_s / 1e9, c.theoretical_flops_per_s, c.load_average
    """
    key = _key(device)
    path = cache_dir() / "ceilings.json"
    cached = _read(path)
    if not refresh and key in cached:
        try:
            hit = Ceilings.from_dict(cached[key])
        except TypeError:  # an entry of an incompatible older format: measure again
            hit = None
        # an entry without probe results predates the stability rule: measured once, too low
        if hit is not None and hit.probes and hit.age() <= max_age:
            return hit
    ceilings = measure_ceilings(device, probes)
    cached[key] = ceilings.to_dict()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cached, indent=1))
    except OSError:  # a read-only home still gets the numbers, just not cached
        pass
    return ceilings


def measure_ceilings(device: str = "cpu", probes: ProbeSet | None = None) -> Ceilings:
    """Measure the ceilings now (no cache): every probe repeated until stable.

    Args:
        device: ``"cpu"`` or ``"cuda:N"``.
        probes: as in `machine_ceilings`; default the built-in kernels for ``device``.

    Returns:
        A `Ceilings` with per-probe results, load average and warnings.

    Raises:
        ValueError: a device other than cpu/cuda.
    """
    if probes is None:
        probes = _cpu_probes() if device == "cpu" else _cuda_probes(device)
    results = {name: stable_best(probe) for name, probe in probes["compute"].items()}
    memory = {name: stable_best(probe) for name, probe in probes["memory"].items()}
    cache = {
        size: {f"{name} {size >> 10} KiB": stable_best(probe) for name, probe in named.items()}
        for size, named in probes.get("cache", {}).items()
    }
    peak = max(rate for rate, _ in results.values())
    bandwidth = max(rate for rate, _ in memory.values())
    load = _load_average()
    theory = theoretical_peak() if device == "cpu" else gpu_datasheet_peak(_processor(device))
    warnings = ceiling_warnings(peak, theory.flops_per_s if theory else None, load)
    return Ceilings(
        device=device,
        peak_flops_per_s=peak,
        bandwidth_bytes_per_s=bandwidth,
        method="best fp32 GEMM over shapes and libraries; best of read/write/copy; "
        f"each repeated until its best moved < {STABLE_TOLERANCE:.0%} over {STABLE_RUNS} runs",
        measured_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        load_average=load,
        threads=_threads(),
        processor=_processor(device),
        theoretical_flops_per_s=theory.flops_per_s if theory else None,
        theoretical_note=theory.note if theory else "no theoretical peak for this device",
        probes={
            name: {"best": rate, "runs": runs}
            for name, (rate, runs) in {
                **results,
                **memory,
                **{k: v for named in cache.values() for k, v in named.items()},
            }.items()
        },
        warnings=tuple(warnings),
        bandwidth_by_bytes=tuple(
            (size, max(rate for rate, _ in named.values())) for size, named in sorted(cache.items())
        ),
    )


def stable_best(
    probe: Probe,
    *,
    k: int = STABLE_RUNS,
    tolerance: float = STABLE_TOLERANCE,
    max_runs: int = 40,
    budget_s: float = 1.0,
) -> tuple[float, int]:
    """Run ``probe`` until its best rate is stable; return (best rate, runs).

    Stable: the best over all runs is within ``tolerance`` of the best before the last
    ``k`` runs (the last ``k`` runs did not move it by ``tolerance`` or more). Stops
    anyway after ``max_runs`` runs or ``budget_s`` seconds. The first run is a warm-up
    and never counts.

    Example:
        >>> stable_best(iter([1.0, 5.0, 5.1, 5.0, 5.05, 5.0]).__next__)
        (5.1, 4)
    """
    probe()  # warm-up: page faults, library initialisation, thread pools
    bests: list[float] = []
    start = time.perf_counter()
    while len(bests) < max_runs:
        rate = probe()
        bests.append(max(rate, bests[-1]) if bests else rate)
        if len(bests) > k and bests[-1] < bests[-1 - k] * (1 + tolerance):
            break
        if time.perf_counter() - start > budget_s and len(bests) > k:
            break
    return bests[-1], len(bests)


def ceiling_warnings(
    measured_flops: float, theoretical_flops: float | None, load: tuple[float, ...]
) -> list[str]:
    """What makes these ceilings doubtful, in words (empty when nothing does)."""
    warnings = []
    if theoretical_flops and measured_flops > theoretical_flops:
        warnings.append(
            f"measured {measured_flops / 1e9:.1f} GFLOP/s exceeds the theoretical "
            f"{theoretical_flops / 1e9:.1f} GFLOP/s: the clock used for the theory is "
            "likely below the turbo clock (or, on a GPU, the datasheet entry is another "
            "variant's)"
        )
    cores = os.cpu_count() or 1
    if load and load[0] > 0.5 * cores:
        warnings.append(
            f"machine busy while measuring (load {load[0]:.1f} on {cores} cores): "
            "the ceilings are likely low"
        )
    return warnings


# ---- theoretical peak ----------------------------------------------------------------------
#: fp32 (non-tensor-core) peak in TFLOP/s from NVIDIA's datasheets, by a part of the name
#: ``torch.cuda.get_device_name`` gives; more specific names first (H100 SXM before H100)
GPU_DATASHEET_FP32_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 67.0),
    ("H100 NVL", 60.0),
    ("H100 PCIe", 51.0),
    ("H100", 67.0),  # SXM5
    ("A100", 19.5),
    ("L40S", 91.6),
    ("L40", 90.5),
    ("L4", 30.3),
    ("A10G", 31.2),
    ("A10", 31.2),
    ("V100", 15.7),
    ("T4", 8.1),
    ("RTX 4090", 82.6),
    ("RTX 3090", 35.6),
)


def gpu_datasheet_peak(name: str) -> TheoreticalPeak | None:
    """The fp32 peak NVIDIA's datasheet gives for the GPU named ``name``, or None when
    the name matches no entry of `GPU_DATASHEET_FP32_TFLOPS` (then nothing is claimed).

    Example:
        >>> gpu_datasheet_peak("NVIDIA H100 80GB HBM3").flops_per_s / 1e12
        67.0
    """
    for part, tflops in GPU_DATASHEET_FP32_TFLOPS:
        if part.lower() in name.lower():
            note = f"{part} datasheet fp32 (non-tensor-core) peak, {tflops} TFLOP/s"
            return TheoreticalPeak(tflops * 1e12, 1, None, "datasheet", 0, 0, note)
    return None


def theoretical_peak(
    cpuinfo: str | None = None, lscpu: str | None = None, cores: int | None = None
) -> TheoreticalPeak:
    """fp32 peak from the CPU's cores, clock and vector width.

    Lanes come from the widest vector flag (``avx512f`` 16, ``avx``/``avx2`` 8, SSE and
    NEON 4); AMD family 25 (Zen 3 and 4) runs AVX-512 as two 256-bit halves, so counts
    8. Two FMA units per core are assumed (true of recent server cores; a few low-end
    Xeons have one, so the result is an upper bound). The clock is ``lscpu``'s
    ``CPU max MHz`` (turbo), else the base clock in the model name (``@ 2.40GHz``), else
    ``cpu MHz`` (the current clock; turbo may be higher); without any, the peak is None.

    Args:
        cpuinfo: the text of ``/proc/cpuinfo`` (read when None).
        lscpu: the output of ``lscpu`` (run when None; empty when unavailable).
        cores: physical cores to count (default: usable cores, at most the physical ones).

    Returns:
        A `TheoreticalPeak`.
    """
    cpuinfo = _read_text("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    lscpu = _lscpu() if lscpu is None else lscpu
    fields = _cpuinfo_fields(cpuinfo)
    flags = set(fields.get("flags", fields.get("Features", "")).split())
    lanes = _fp32_lanes(flags, fields.get("vendor_id", ""), fields.get("cpu family", ""))
    cores = cores or _physical_usable_cores(lscpu)
    clock_hz, source = _clock(fields, lscpu)
    fma_units = 2
    if clock_hz is None:
        return TheoreticalPeak(
            None, cores, None, "", lanes, fma_units, "unavailable: the CPU clock is unknown"
        )
    peak = cores * clock_hz * lanes * 2 * fma_units
    note = (
        f"{cores} cores x {clock_hz / 1e9:.2f} GHz ({source}) x {lanes} fp32 lanes x 2 (FMA) "
        f"x {fma_units} FMA units (assumed)"
    )
    return TheoreticalPeak(peak, cores, clock_hz, source, lanes, fma_units, note)


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields and not line.strip():
                break  # the first processor's block ended
            continue
        fields.setdefault(key.strip(), value.strip())
    return fields


def _fp32_lanes(flags: set[str], vendor: str, family: str) -> int:
    if "avx512f" in flags:
        # Zen 3/4 (family 25) split 512-bit ops into two 256-bit halves
        return 8 if vendor == "AuthenticAMD" and family == "25" else 16
    if "avx" in flags or "avx2" in flags:
        return 8
    return 4


def _clock(fields: Mapping[str, str], lscpu: str) -> tuple[float | None, str]:
    match = re.search(r"^CPU max MHz:\s*([\d.]+)", lscpu, re.MULTILINE)
    if match and float(match.group(1)) > 0:
        return float(match.group(1)) * 1e6, "lscpu max"
    match = re.search(r"@\s*([\d.]+)\s*GHz", fields.get("model name", ""))
    if match:
        return float(match.group(1)) * 1e9, "model name (base clock; turbo may be higher)"
    mhz = fields.get("cpu MHz", "")
    if re.fullmatch(r"[\d.]+", mhz) and float(mhz) > 0:
        return float(mhz) * 1e6, "cpu MHz (current clock; turbo may be higher)"
    return None, ""


def _physical_usable_cores(lscpu: str) -> int:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    match = re.search(r"^Thread\(s\) per core:\s*(\d+)", lscpu, re.MULTILINE)
    per_core = int(match.group(1)) if match else 1
    return max(1, (usable or 1) // max(1, per_core))


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _lscpu() -> str:
    try:
        env = {**os.environ, "LC_ALL": "C"}
        return subprocess.run(
            ["lscpu"], capture_output=True, text=True, timeout=10, env=env, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


# ---- probes --------------------------------------------------------------------------------
def _rate(work: float, fn: Callable[[], Any]) -> Probe:
    def probe() -> float:
        start = time.perf_counter()
        fn()
        return work / (time.perf_counter() - start)

    return probe


def _cpu_probes() -> ProbeSet:
    rng = np.random.default_rng(0)
    compute: dict[str, Probe] = {}
    for m, k, n in GEMM_SHAPES:
        a = rng.random((m, k), dtype=np.float32)
        b = rng.random((k, n), dtype=np.float32)
        shape, flops = f"{m}x{k}x{n}", 2.0 * m * k * n
        compute[f"gemm numpy {shape}"] = _rate(flops, partial(np.matmul, a, b))
        for library, make in (("torch", _torch_gemm), ("onnxruntime", _ort_gemm)):
            fn = make(a, b)
            if fn is not None:
                compute[f"gemm {library} {shape}"] = _rate(flops, fn)
    for n, c, h, w, m in CONV_SHAPES:
        conv = _ort_conv(rng.random((n, c, h, w), dtype=np.float32), m)
        if conv is not None:
            compute[f"conv onnxruntime {n}x{c}x{h}x{w}->{m} x{CONV_CHAIN}"] = _rate(*conv)
    # larger than any last-level cache, so every test streams from memory
    src = np.ones(64 * 2**20, dtype=np.float32)
    dst = np.empty_like(src)
    memory: dict[str, Probe] = {
        "read numpy": _rate(src.nbytes, lambda: np.dot(src, src)),
        "write numpy": _rate(dst.nbytes, lambda: dst.fill(0.0)),
        "copy numpy": _rate(2.0 * src.nbytes, lambda: np.copyto(dst, src)),
    }
    memory.update(_torch_memory(src, dst))
    return {"compute": compute, "memory": memory, "cache": _cache_probes()}


def _cache_probes() -> dict[int, dict[str, Probe]]:
    """A copy over each working set in `CACHE_PROBE_BYTES`, split over all threads and
    repeated inside one compiled call (a Python loop would time its own overhead)."""
    try:
        import numba
    except ImportError:
        return {}
    copy = _repeated_copy()
    threads = numba.get_num_threads()
    probes: dict[int, dict[str, Probe]] = {}
    for size in CACHE_PROBE_BYTES:
        src = np.ones(size // 8, dtype=np.float32)  # source and destination: size bytes
        dst = np.empty_like(src)
        repeats = max(1, (256 << 20) // size)  # about 256 MiB moved per timed run
        run = partial(copy, src, dst, repeats, threads)
        probes[size] = {"copy numba": _rate(2.0 * src.nbytes * repeats, run)}
    return probes


def _repeated_copy() -> Callable[..., Any]:
    from numba import njit, prange

    @njit(parallel=True, cache=True, nogil=True)
    def copy(src: np.ndarray, dst: np.ndarray, repeats: int, parts: int) -> None:
        step = (src.size + parts - 1) // parts
        for part in prange(parts):
            first, last = part * step, min(src.size, part * step + step)
            for _ in range(repeats):  # each thread re-copies its own part: it stays in its cache
                dst[first:last] = src[first:last]

    return copy  # type: ignore[no-any-return]


def _torch_gemm(a: np.ndarray, b: np.ndarray) -> Callable[[], Any] | None:
    try:
        import torch
    except ImportError:
        return None
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return lambda: torch.mm(ta, tb)


def _ort_gemm(a: np.ndarray, b: np.ndarray) -> Callable[[], Any] | None:
    try:
        import onnxruntime  # noqa: F401  (the probe runs on it)
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    (m, _), (_, n) = a.shape, b.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, list(a.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(b, "b")],
    )
    return _ort_run(graph, {"a": a})


def _ort_run(graph: Any, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    """One run of ``graph`` (an ONNX ``GraphProto``) on ``feeds`` in ONNX Runtime's CPU
    provider at its own defaults: the ceiling is the best a library attains as shipped."""
    from onnx import helper

    from workbench.backends.onnxruntime.plain import plain_session

    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = min(proto.ir_version, 9)
    session = plain_session(proto)
    return lambda: session.run(None, feeds)


#: convolutions chained in one ONNX Runtime session per conv probe, so the session's own
#: per-run overhead (tens of microseconds) is spread over them, as a per-layer profile
#: (which times each node alone) would see it
CONV_CHAIN = 8


def _ort_conv(x: np.ndarray, channels: int) -> tuple[float, Callable[[], Any]] | None:
    """(FLOPs, run) of `CONV_CHAIN` 3x3 same-padded convolutions on ONNX Runtime: ``x``
    to ``channels`` outputs, then ``channels`` to ``channels``."""
    try:
        import onnxruntime  # noqa: F401  (the probe runs on it)
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    rng = np.random.default_rng(1)
    n, c, h, w = x.shape
    nodes, weights, flops, source = [], [], 0.0, "x"
    for i in range(CONV_CHAIN):
        inputs = c if i == 0 else channels
        weights.append(numpy_helper.from_array(
            rng.random((channels, inputs, 3, 3), dtype=np.float32) / (9 * inputs), f"w{i}"
        ))  # fmt: skip
        nodes.append(helper.make_node("Conv", [source, f"w{i}"], [f"y{i}"], pads=[1, 1, 1, 1]))
        flops += 2.0 * n * channels * inputs * 9 * h * w
        source = f"y{i}"
    graph = helper.make_graph(
        nodes,
        "convs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info(source, TensorProto.FLOAT, [n, channels, h, w])],
        weights,
    )
    return flops, _ort_run(graph, {"x": x})


def _torch_memory(src: np.ndarray, dst: np.ndarray) -> dict[str, Probe]:
    # torch's elementwise kernels are multi-threaded, NumPy's are not: on many cores only
    # several threads together reach the memory's bandwidth
    try:
        import torch
    except ImportError:
        return {}
    s, d = torch.from_numpy(src), torch.from_numpy(dst)
    return {
        "read torch": _rate(s.numel() * 4, lambda: s.sum()),
        "write torch": _rate(d.numel() * 4, lambda: d.fill_(0.0)),
        "copy torch": _rate(2.0 * s.numel() * 4, lambda: d.copy_(s)),
    }


def _cuda_probes(device: str) -> ProbeSet:
    if not device.startswith("cuda"):
        raise InvalidArgumentError(
            f"cannot measure ceilings of device {device!r}: only cpu and cuda:N"
        )
    import torch

    dev = torch.device(device)

    def synced(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            fn()
            torch.cuda.synchronize(dev)

        return run

    compute: dict[str, Probe] = {}
    for n in (4096, 8192):
        a, b = torch.rand(n, n, device=dev), torch.rand(n, n, device=dev)
        compute[f"gemm torch {n}^3"] = _rate(2.0 * n**3, synced(partial(torch.mm, a, b)))
    src = torch.ones(64 * 2**20, device=dev)
    dst = torch.empty_like(src)
    nbytes = src.numel() * 4
    memory = {
        "read torch": _rate(nbytes, synced(lambda: src.sum())),
        "write torch": _rate(nbytes, synced(lambda: dst.fill_(0.0))),
        "copy torch": _rate(2.0 * nbytes, synced(lambda: dst.copy_(src))),
    }
    return {"compute": compute, "memory": memory}


# ---- cache key and context -----------------------------------------------------------------
def _threads() -> int:
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:
        return os.cpu_count() or 1


def _processor(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return str(torch.cuda.get_device_name(torch.device(device)))
    from workbench.machine import cpu_info

    return str(cpu_info().get("model", ""))


def _key(device: str) -> str:
    return f"{device}|{_processor(device)}|threads={_threads()}"


def _load_average() -> tuple[float, ...]:
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except OSError:  # not on this platform
        return ()


def _read(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}
