"""FLOPs and bytes of a language model's prefill and decode step, per module.

A generation profile's phase tables time the model's modules; this module counts their
work, so that each phase can be placed on the roofline (the prefill on the compute
roof, a decode step mostly on the bandwidth roof). The counts come from the model's
architecture, not its weights: the `transformers` model is rebuilt from its config on
PyTorch's ``meta`` device (no memory, no arithmetic) and run once at the phase's shape,
after a cache of the phase's depth is filled the same way:

- ``flops``: matrix products (``mm``, ``bmm``, attention) as torch's ``FlopCounterMode``
  counts them per module, 2 per multiply-add, a container's own code being its count less
  its children's; a leaf module with no product (a norm, an activation) gets the cost
  model's elementwise count (`workbench.profiling.cost`), and containers' other own code
  (residual adds, the gate's product) counts none.
- ``bytes``: what a leaf module reads and writes (its tensor inputs, its own weights, its
  outputs; an embedding's rows looked up, not its table); an attention block's own code
  reads the queries and the cache's keys and values at the phase's length and writes its
  output; the cache update writes the phase's new keys and values (a runtime that copies
  the whole cache on append, as torch's concatenating cache does, moves more). Other
  containers' own code stays NaN (unknown): they are left off the roofline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from workbench.loaders.causal_lm import CACHE_UPDATE
from workbench.profiling.cost import COST_COLUMNS

__all__ = ["phase_costs"]


def phase_costs(
    config: Any, batch_size: int, new_tokens: int, past_tokens: int, *, every_logit: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """The costs of one forward pass of ``new_tokens`` per sequence after ``past_tokens``.

    Args:
        config: the model's `transformers` config (a causal LM's).
        batch_size: sequences.
        new_tokens: tokens each sequence feeds (the prompt for a prefill, 1 for a step).
        past_tokens: tokens already in each sequence's cache.
        every_logit: the decoder computes every position's logits (an optimum or
            onnxruntime-genai graph); False: the last position's only (the workbench's
            export and the torch decoders).

    Returns:
        A DataFrame indexed by module path (the root named after its class, as in the
        phase tables) with `COST_COLUMNS`, and notes on what is counted.

    Example:
        >>> phase_costs(model.config, 1, 128, 0)[0].loc["lm_head", "flops"]
    """
    return _count(_architecture(config), batch_size, new_tokens, past_tokens, every_logit)


def _architecture(config: Any) -> Any:
    """The ``transformers`` causal LM of ``config`` on PyTorch's ``meta`` device: its
    modules and shapes, no memory and no arithmetic (built once, counted for each phase)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config).eval()


def _count(
    module: Any, batch_size: int, new_tokens: int, past_tokens: int, every_logit: bool
) -> tuple[pd.DataFrame, list[str]]:
    """`phase_costs` on a built `_architecture`."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from workbench.backends.torch.layers import module_paths
    from workbench.loaders.causal_lm import cache_keyword

    root = type(module).__name__
    keyword = cache_keyword(module)
    seen: dict[str, tuple[Any, list[Any], list[Any]]] = {}

    def forward(length: int, cache: Any) -> Any:
        ids = torch.zeros((batch_size, length), dtype=torch.long, device="meta")
        keep = 0 if every_logit else 1  # transformers: 0 keeps every position
        out = module(input_ids=ids, use_cache=True, logits_to_keep=keep, **{keyword: cache})
        return getattr(out, keyword)

    with torch.inference_mode():
        cache = forward(past_tokens, None) if past_tokens else None
        handles = [
            sub.register_forward_hook(_recorder(seen, path), with_kwargs=True)
            for path, sub in module_paths(module).items()
        ]
        counter = FlopCounterMode(display=False)
        try:
            with counter:
                forward(new_tokens, cache)
        finally:
            for handle in handles:
                handle.remove()
    totals = {
        _path(key, root): float(sum(v.values()))
        for key, v in counter.get_flop_counts().items()
        if key != "Global"
    }
    shape = _Shape.of(module, batch_size, new_tokens, past_tokens)
    children: dict[str, list[str]] = {}
    for path in seen:  # the nearest ancestor that ran (a ModuleList is never called)
        parent = path
        while parent != root:
            parent = parent.rsplit(".", 1)[0] if "." in parent else root
            if parent in seen:
                children.setdefault(parent, []).append(path)
                break
    rows: dict[str, dict[str, float]] = {}
    for path, (sub, inputs, outputs) in seen.items():
        below = children.get(path, [])
        own = totals.get(path, 0.0) - sum(totals.get(p, 0.0) for p in below)
        rows[path] = _row(sub, inputs, outputs, own, shape, leaf=not list(sub.children()))
        if _is_attention(sub):
            rows[f"{path}.{CACHE_UPDATE}"] = {
                "flops": 0.0,
                "bytes": float(shape.new_kv_bytes),
                "params_bytes": 0.0,
                "activation_bytes": float(shape.new_kv_bytes),
            }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=COST_COLUMNS)
    notes = [
        "FLOPs: matrix products per module (torch's FlopCounterMode on the architecture "
        "rebuilt on the meta device), elementwise counts for norms and activations; "
        "bytes: each module's inputs, weights and outputs, attention's cache reads at the "
        f"phase's length; lm_head on {'every' if every_logit else 'the last'} position "
        "(docs/generate.md)"
    ]
    return table, notes


@dataclass(frozen=True)
class _Shape:
    """The phase's attention geometry."""

    batch: int
    new: int
    past: int
    heads: int
    kv_heads: int
    head_dim: int
    itemsize: int

    @classmethod
    def of(cls, module: Any, batch: int, new: int, past: int) -> _Shape:
        from workbench.loaders.causal_lm import causal_lm

        facts = causal_lm(module)  # the cache's geometry, as generation reads it
        config = module.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = int(text.num_attention_heads)
        return cls(batch, new, past, heads, facts.kv_heads, facts.head_dim, facts.cache_itemsize)

    @property
    def new_kv_bytes(self) -> int:
        return 2 * self.batch * self.kv_heads * self.new * self.head_dim * self.itemsize

    @property
    def attention_bytes(self) -> int:
        """Queries and output of the new tokens, keys and values of the whole context."""
        queries = self.batch * self.heads * self.new * self.head_dim
        cache = 2 * self.batch * self.kv_heads * (self.past + self.new) * self.head_dim
        return (2 * queries + cache) * self.itemsize


def _recorder(seen: dict[str, tuple[Any, list[Any], list[Any]]], path: str) -> Any:
    def hook(sub: Any, args: Any, kwargs: Any, out: Any) -> None:
        inputs = [a for a in (*args, *kwargs.values()) if _is_tensor(a)]
        flat = out if isinstance(out, tuple | list) else (out,)
        seen.setdefault(path, (sub, inputs, [o for o in flat if _is_tensor(o)]))

    return hook


def _row(
    sub: Any, inputs: list[Any], outputs: list[Any], own_flops: float, shape: _Shape, leaf: bool
) -> dict[str, float]:
    from workbench.profiling.cost import module_flops

    out_bytes = float(sum(_nbytes(o) for o in outputs))
    params = float(sum(_nbytes(p) for p in sub.parameters(recurse=False)))
    flops: float = own_flops
    if leaf and not own_flops:  # a norm or an activation: the cost model's elementwise count
        counted = module_flops(sub, inputs, outputs)
        flops = math.nan if counted is None else counted
    if _is_attention(sub):
        nbytes = float(shape.attention_bytes)
    elif not leaf:
        nbytes = math.nan  # residual adds, the gate's product: not counted
    elif type(sub).__name__ == "Embedding" and inputs:  # the rows looked up, not the table
        rows = inputs[0].numel() * sub.weight.shape[1] * sub.weight.element_size()
        nbytes = _nbytes(inputs[0]) + rows + out_bytes
    else:
        nbytes = sum(_nbytes(a) for a in inputs) + params + out_bytes
    return {
        "flops": flops,
        "bytes": float(nbytes),
        "params_bytes": params,
        "activation_bytes": out_bytes,
    }


def _is_attention(sub: Any) -> bool:
    return type(sub).__name__.endswith("Attention") and hasattr(sub, "o_proj")


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "numel") and hasattr(value, "element_size")


def _nbytes(tensor: Any) -> int:
    return int(tensor.numel() * tensor.element_size())


def _path(key: str, root: str) -> str:
    """FlopCounterMode names a module ``Root.a.b``; the phase tables ``a.b`` (root:
    its class name)."""
    return key if key == root else key.removeprefix(f"{root}.")


def with_costs(table: pd.DataFrame, costs: pd.DataFrame, ceilings: Any = None) -> pd.DataFrame:
    """A phase table with ``costs`` (`phase_costs`) in its cost columns, ``intensity``,
    and, given measured ``ceilings``, each row placed on the roofline
    (`workbench.profiling.cost.roofline`: ``achieved_flops_per_s``, ``bound``,
    ``roof_fraction``). Rows the costs do not name (``(unattributed)``, a runtime's own
    rows) keep NaN. ``table`` is not changed."""
    from workbench.profiling.cost import roofline

    out = table.copy()
    index = out["layer"]
    for column in COST_COLUMNS:
        out[column] = index.map(costs[column]).astype(float)
    with_bytes = out["bytes"].where(out["bytes"] > 0)
    out["intensity"] = out["flops"] / with_bytes
    if ceilings is None:
        return out
    return roofline(out, "cpu", ceilings, remeasure=False).layers


def costed_phases(
    model: Any,
    phases: tuple[pd.DataFrame | None, pd.DataFrame | None],
    shape: tuple[int, int, int, int],
    ceilings: Any = None,
) -> tuple[tuple[pd.DataFrame | None, pd.DataFrame | None], list[str]]:
    """A generation's prefill and decode tables with their modules' costs (`with_costs`).

    The decode step is costed at the middle step's context (the table holds the median
    step). Quantized variants keep their tables as they are: their weights are not the
    architecture's float32 bytes.

    Args:
        model: what was generated from (a ``transformers`` model, a loaded folder, a
            variant).
        phases: the prefill and decode tables (None where there is none).
        shape: batch size, prompt length, depth and output length.
        ceilings: measured ceilings to place the rows on the roofline (None: costs only).

    Returns:
        The two tables and notes saying how they were costed, or why not.
    """
    batch, prompt, depth, output = shape
    if getattr(model, "recipe", None) or getattr(model, "precision", "fp32") != "fp32":
        return phases, ["phase costs not counted for a quantized variant: its weights' bytes "
                        "are not the architecture's"]  # fmt: skip
    try:
        config = config_of(model)
        if config is None:
            return phases, ["phase costs unavailable: no transformers config to rebuild the "
                            "architecture from (give reference=)"]  # fmt: skip
        every_logit = type(model).__name__ in ("OptimumModel", "GenaiModel")
        module = _architecture(config)
        prefill, decode = phases
        notes: list[str] = []
        if prefill is not None:
            costs, notes = _count(module, batch, prompt, depth, every_logit)
            prefill = with_costs(prefill, costs, ceilings)
        if decode is not None:
            past = depth + prompt + (output - 2) // 2  # the middle decode step's context
            costs, notes = _count(module, batch, 1, past, every_logit)
            decode = with_costs(decode, costs, ceilings)
    except Exception as exc:  # an architecture transformers cannot rebuild: times stand
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return phases, [f"phase costs unavailable: rebuilding the architecture failed ({first})"]
    return (prefill, decode), notes


def config_of(model: Any) -> Any:
    """The ``transformers`` config of ``model`` or of its reference, or of a loaded
    folder's ``config.json`` (JSON, no code); None when there is none."""
    from pathlib import Path

    from transformers import AutoConfig, PretrainedConfig

    for candidate in (model, getattr(model, "reference", None)):
        config = getattr(candidate, "config", None)
        if isinstance(config, PretrainedConfig):
            return config
    folder = getattr(model, "folder", None)
    if folder is not None and (Path(folder) / "config.json").is_file():
        return AutoConfig.from_pretrained(folder)
    return None
