"""Why a language-model variant is not faster: reasons named from measured data.

`why_not_faster` compares a variant's `GenerationProfile` with the fp32 baseline's on the
same runtime, phase by phase (prefill: TTFT; decode: TPOT) and layer by layer (the
per-layer tables of each phase, aligned by canonical module path), and names what holds
it back, each reason with its kind:

- ``kernel``: no fast kernel for this dtype on this runtime and CPU (bf16/fp16 without
  the CPU's half-precision instructions, `half_precision_reason`; ``MatMulNBits`` at
  accuracy level 4 without int8 dot-product instructions; quantized projections that
  run no faster than the fp32 ones while reading fewer bytes);
- ``dequantization``: time in the layers that quantize, dequantize or cast activations
  (``DynamicQuantizeLinear``, ``DequantizeLinear``, ``Cast``), against the same layers
  in fp32;
- ``bandwidth`` / ``compute``: the phase's bound. Decode is memory-bound when a step
  attains `MEMORY_BOUND` of the machine's measured bandwidth (the decode roofline:
  `GenerationProfile.bandwidth_fraction`): then only fewer bytes make it faster;
  otherwise compute and per-step overhead hold it. Prefill runs batch × prompt tokens
  per pass over the weights, so it is compute-bound: quantized weights make it no
  faster, and slower kernels make it slower;
- ``threads``: the threads the runtime ran on, and a machine busy with other work.

Only measured facts are used (the profiles, the recipe, the CPU's flags); a reason that
needs data the profiles lack (the roofline, per-layer tables) is not guessed.

Example:
    >>> base = wb.generate_profile(model, backend="onnxruntime", layers=True, roofline=True)
    >>> g = wb.generate_profile(q, backend="onnxruntime", layers=True, roofline=True)
    >>> print(why_not_faster(g, base, q.recipe).text())
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from workbench.profiling.reasons import (
    CAST_OPS,
    QDQ_OPS,
    half_precision_reason,
    is_slower,
    ops_of,
    quantization_reasons,
)

#: the kinds of reason, in the order they are shown
KINDS = ("kernel", "dequantization", "bandwidth", "compute", "threads")
#: a decode step attaining this share of the measured bandwidth is memory-bound
MEMORY_BOUND = 0.5
#: a variant is as fast as its bytes allow when its decode speed-up reaches this share of
#: its bytes ratio (a memory-bound step's speed-up is the ratio of bytes read)
EXPECTED_SHARE = 0.8
#: activation quantize/dequantize/cast layers are named from this share of a step
DEQUANT_SHARE = 0.05
#: instructions ``MatMulNBits`` at accuracy level 4 computes its int8 dot products with
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
#: kernels that multiply by quantized weights
QUANTIZED_MATMULS = frozenset(
    {"MatMulNBits", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "MatMulInteger"}
)
#: per-layer rows kept in a report (the largest losses first)
MAX_LAYERS = 20
#: columns of `WhyNotFaster.layers`
LAYER_COLUMNS = ["phase", "layer", "baseline_ms", "variant_ms", "speedup", "kernels", "reason"]


@dataclass(frozen=True)
class Reason:
    """One reason a variant is not faster.

    Attributes:
        kind: one of `KINDS`.
        phase: ``"decode"`` or ``"prefill"``.
        text: the reason in words, with the numbers it rests on.
        layers: the canonical layers it concerns (empty: the whole phase).
    """

    kind: str
    phase: str
    text: str
    layers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "kind": self.kind,
            "phase": self.phase,
            "text": self.text,
            "layers": list(self.layers),
        }


@dataclass(frozen=True, eq=False)
class WhyNotFaster:
    """What holds a variant back against the fp32 baseline on the same runtime.

    Attributes:
        variant: the variant's label.
        backend: the runtime both ran on.
        decode_speedup: baseline TPOT over the variant's (None without both).
        prefill_speedup: baseline TTFT over the variant's.
        bytes_ratio: bytes a baseline decode step reads over the variant's: the speed-up
            a memory-bound decode would get.
        bandwidth_fraction: the variant's decode traffic over the measured bandwidth
            (None without the roofline).
        reasons: the reasons, in `KINDS` order within each phase (decode first).
        layers: per layer and phase, the layers that explain a loss (`LAYER_COLUMNS`),
            the largest first.
    """

    variant: str
    backend: str
    decode_speedup: float | None
    prefill_speedup: float | None
    bytes_ratio: float | None
    bandwidth_fraction: float | None
    reasons: tuple[Reason, ...]
    layers: pd.DataFrame

    def text(self) -> str:
        """One paragraph: the speed-ups, then each reason prefixed by its phase and kind."""
        head = f"{self.variant} on {self.backend}: " + self.verdict()
        return "\n".join([head, *(f"{r.phase} · {r.kind}: {r.text}" for r in self.reasons)])

    def verdict(self) -> str:
        """The decode speed-up against what its bytes allow, and the prefill's."""
        parts = []
        if self.decode_speedup is not None:
            part = f"decode {self.decode_speedup:.2f}x"
            if self.bytes_ratio:
                share = self.decode_speedup / self.bytes_ratio
                part += f" for {self.bytes_ratio:.2f}x fewer bytes ({share:.0%} of what they allow)"
            parts.append(part)
        if self.prefill_speedup is not None:
            parts.append(f"prefill {self.prefill_speedup:.2f}x")
        return ", ".join(parts) or "no baseline on this runtime to compare with"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the per-layer table as records)."""
        layers = self.layers.astype(object).where(self.layers.notna(), None)
        return {
            "variant": self.variant,
            "backend": self.backend,
            "decode_speedup": self.decode_speedup,
            "prefill_speedup": self.prefill_speedup,
            "bytes_ratio": self.bytes_ratio,
            "bandwidth_fraction": self.bandwidth_fraction,
            "reasons": [r.to_dict() for r in self.reasons],
            "layers": layers.to_dict(orient="records"),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WhyNotFaster:
        """Read `to_dict`'s output back."""
        reasons = tuple(
            Reason(r["kind"], r["phase"], r["text"], tuple(r.get("layers", ())))
            for r in data.get("reasons", ())
        )
        layers = pd.DataFrame(data.get("layers") or [], columns=LAYER_COLUMNS)
        values = {k: data.get(k) for k in ("decode_speedup", "prefill_speedup", "bytes_ratio")}
        return cls(
            variant=str(data["variant"]),
            backend=str(data["backend"]),
            bandwidth_fraction=data.get("bandwidth_fraction"),
            reasons=reasons,
            layers=layers,
            **values,
        )


def why_not_faster(
    variant: Any,
    baseline: Any | None,
    recipe: dict[str, Any] | None = None,
    *,
    flags: list[str] | set[str] | None = None,
) -> WhyNotFaster:
    """Name, from the measurements, why a variant is not faster than the fp32 baseline.

    Args:
        variant: the variant's `GenerationProfile` (per-layer tables and the roofline
            make the reasons per layer and per bound: ``layers=True, roofline=True``).
        baseline: the fp32 model's `GenerationProfile` on the same runtime, same prompt
            and output lengths; None: only what the variant's own profile shows.
        recipe: the variant's recipe (`LMVariant.recipe`): its dtype and ``MatMulNBits``
            accuracy level.
        flags: the CPU's feature flags (default: this machine's, `cpu_info`).

    Returns:
        A `WhyNotFaster`; never changes its inputs.

    Example:
        >>> why_not_faster(g, base, q.recipe).reasons[0].text
    """
    if flags is None:
        from workbench.machine import cpu_info

        flags = list(cpu_info()["flags"])
    recipe = recipe or {}
    label = str(recipe.get("label") or variant.model)
    same = baseline is not None and baseline.backend == variant.backend
    base = baseline if same else None
    decode = _ratio(base.tpot, variant.tpot) if base is not None else None
    prefill = _ratio(base.ttft, variant.ttft) if base is not None else None
    bytes_ratio = None
    if base is not None and base.decode_bytes_per_step and variant.decode_bytes_per_step:
        bytes_ratio = base.decode_bytes_per_step / variant.decode_bytes_per_step
    layers = _layer_rows(variant, base)
    reasons = [
        *_kernel_reasons(variant, recipe, flags, layers),
        *_dequantization_reasons(variant, base),
        *_decode_bound(variant, decode, bytes_ratio),
        *_threads_reasons(variant),
        *_prefill_reasons(variant, base, layers),
    ]
    order = {kind: i for i, kind in enumerate(KINDS)}
    reasons.sort(key=lambda r: (r.phase != "decode", order[r.kind]))
    return WhyNotFaster(
        variant=label,
        backend=variant.backend,
        decode_speedup=decode,
        prefill_speedup=prefill,
        bytes_ratio=bytes_ratio,
        bandwidth_fraction=variant.bandwidth_fraction,
        reasons=tuple(reasons),
        layers=layers,
    )


def _ratio(base: Any, variant: Any) -> float | None:
    if base is None or variant is None or variant.median <= 0:
        return None
    return float(base.median / variant.median)


def _kernel_reasons(
    variant: Any, recipe: dict[str, Any], flags: list[str] | set[str], layers: pd.DataFrame
) -> list[Reason]:
    config = recipe.get("config") or {}
    out = []
    if recipe.get("name") == "cast":
        dtype = {"bf16": "bfloat16", "fp16": "float16"}.get(str(config.get("dtype")), "")
        why = half_precision_reason(dtype, variant.backend, variant.device, flags)
        if why is not None:
            out.append(Reason("kernel", "decode", why))
    if config.get("accuracy_level") == 4 and not set(INT8_DOT_FLAGS) & set(flags):
        out.append(
            Reason(
                "kernel",
                "decode",
                "MatMulNBits at accuracy level 4 computes with int8 dot products, and this "
                f"CPU has none of {', '.join(INT8_DOT_FLAGS)}: a slower path runs them",
            )
        )
    stuck = layers[(layers["phase"] == "decode") & layers["reason"].str.startswith("no faster")]
    if len(stuck):
        kernels = sorted({k for ks in stuck["kernels"] for k in _quantized(ks)})
        out.append(
            Reason(
                "kernel",
                "decode",
                f"{len(stuck)} quantized projections ({', '.join(kernels)}) run no faster than "
                "fp32 while reading fewer bytes: no fast kernel for them on this runtime and CPU",
                tuple(stuck["layer"]),
            )
        )
    return out


def _quantized(kernels: Any) -> list[str]:
    return [k for k in ops_of({"kernels": kernels}) if k in QUANTIZED_MATMULS]


def _dequantization_reasons(variant: Any, base: Any) -> list[Reason]:
    """Time in the decode step's layers that (de)quantize or cast activations."""
    table = variant.decode_layers
    if table is None or variant.inter_token is None or "kernels" not in table:
        return []
    converting = QDQ_OPS | CAST_OPS
    base_ops = _layer_ops(base.decode_layers if base is not None else None)
    rows, ops = [], set()
    for row in table.to_dict(orient="records"):
        added = [
            op
            for op in ops_of(row)
            if op in converting and op not in base_ops.get(row["layer"], ())
        ]
        if added:
            rows.append(row)
            ops.update(added)
    if not rows:
        return []
    spent = sum(float(r["latency_ms"]) for r in rows)
    step = float(variant.inter_token.median)
    if step <= 0 or spent / step < DEQUANT_SHARE:
        return []
    names = tuple(str(r["layer"]) for r in rows)
    before = _sum_ms(base.decode_layers if base is not None else None, names)
    extra = (
        f", {spent - before:+.3g} ms against the same layers in fp32" if before is not None else ""
    )
    return [
        Reason(
            "dequantization",
            "decode",
            f"{len(rows)} layers that run {', '.join(sorted(ops))} take {spent:.3g} ms of a "
            f"{step:.3g} ms step ({spent / step:.0%}){extra}",
            names,
        )
    ]


def _layer_ops(table: Any) -> dict[str, set[str]]:
    if table is None:
        return {}
    return {str(r["layer"]): set(ops_of(r)) for r in table.to_dict(orient="records")}


def _sum_ms(table: Any, layers: tuple[str, ...]) -> float | None:
    if table is None:
        return None
    found = table[table["layer"].isin(layers)]
    return float(found["latency_ms"].sum()) if len(found) else None


def _decode_bound(variant: Any, speedup: float | None, bytes_ratio: float | None) -> list[Reason]:
    from workbench.units import format_bytes

    if variant.tpot is None:
        return []
    fraction = variant.bandwidth_fraction
    per_step = format_bytes(variant.decode_bytes_per_step)
    if fraction is not None and fraction >= MEMORY_BOUND:
        return [
            Reason(
                "bandwidth",
                "decode",
                f"memory-bound: a step reads {per_step} at {_percent(fraction)} of this machine's "
                "measured bandwidth, so only reading fewer bytes makes it faster",
            )
        ]
    short = (
        speedup is not None and bytes_ratio is not None and speedup < EXPECTED_SHARE * bytes_ratio
    )
    if fraction is not None:
        text = (
            f"not memory-bound: a step reads {per_step} at only {_percent(fraction)} of the "
            "measured bandwidth, so compute and per-step overhead, not reading weights, set "
            "its time"
        )
    elif short:
        text = (
            f"{speedup:.2f}x faster for {bytes_ratio:.2f}x fewer bytes: reading weights does not "
            "set the step's time (profile with roofline=True for the bandwidth share)"
        )
    else:
        return []
    return [Reason("compute", "decode", text)]


def _percent(share: float) -> str:
    return f"{share * 100:.2g}%"


def _threads_reasons(variant: Any) -> list[Reason]:
    measured = variant.tpot or variant.ttft
    contention = getattr(measured, "contention", None)
    if contention is None:
        return []
    threads = contention.threads
    out = []
    if threads is not None and threads < contention.cpus:
        out.append(
            Reason("threads", "decode", f"ran on {threads} threads of the {contention.cpus} CPUs")
        )
    if contention.contended:
        out.append(
            Reason(
                "threads",
                "decode",
                "timed on a busy machine (" + "; ".join(contention.reasons) + "): the runtime's "
                "threads shared the CPUs, so its speed-ups are uncertain",
            )
        )
    return out


def _prefill_reasons(variant: Any, base: Any, layers: pd.DataFrame) -> list[Reason]:
    if base is None or not is_slower(base.ttft.median, variant.ttft.median):
        return []
    tokens = variant.batch_size * variant.prompt_length
    slower = layers[layers["phase"] == "prefill"]
    kernels = sorted({k for ks in slower["kernels"] for k in _quantized(ks)})
    how = f" and its {', '.join(kernels)} compute slower than fp32's" if kernels else ""
    return [
        Reason(
            "compute",
            "prefill",
            f"prefill is slower ({variant.ttft.median:.3g} ms against {base.ttft.median:.3g} ms): "
            f"it runs {tokens} tokens per pass over the weights, so it is bound by compute, "
            f"not by the bytes the variant saves{how}",
            tuple(slower["layer"]),
        )
    ]


def _layer_rows(variant: Any, base: Any) -> pd.DataFrame:
    """Per phase, the layers slower than fp32 (with `quantization_reasons`' words) or
    quantized yet no faster, the largest loss first."""
    rows = []
    for phase, attr in (("decode", "decode_layers"), ("prefill", "prefill_layers")):
        mine = getattr(variant, attr, None)
        theirs = getattr(base, attr, None) if base is not None else None
        if mine is None or theirs is None:
            continue
        before = {str(r["layer"]): r for r in theirs.to_dict(orient="records")}
        for row in mine.to_dict(orient="records"):
            layer = str(row["layer"])
            old = before.get(layer)
            if old is None:
                continue
            base_ms, ms = _ms(old), _ms(row)
            words = quantization_reasons(layer, [old, row], ["fp32", "the variant"])
            if not words and _quantized(row.get("kernels")) and not is_slower(ms, base_ms):
                words = ["no faster than fp32 although its weights are quantized"]
            elif not words and is_slower(base_ms, ms):
                words = [f"slower than fp32 ({row.get('kernels') or row.get('op_type')})"]
            if words:
                rows.append(
                    {
                        "phase": phase,
                        "layer": layer,
                        "baseline_ms": base_ms,
                        "variant_ms": ms,
                        "speedup": base_ms / ms if ms > 0 else math.nan,
                        "kernels": row.get("kernels") or row.get("op_type"),
                        "reason": "; ".join(words),
                    }
                )
    frame = pd.DataFrame(rows, columns=LAYER_COLUMNS)
    loss = frame["variant_ms"] - frame["baseline_ms"]
    return (
        frame.loc[loss.sort_values(ascending=False).index].head(MAX_LAYERS).reset_index(drop=True)
    )


def _ms(row: dict[str, Any]) -> float:
    value = row.get("latency_ms")
    return 0.0 if value is None or value != value else float(value)
