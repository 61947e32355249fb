"""Train the ``llama-stdlib`` language-model sample, deterministically, on CPU (minutes).

Usage::

    python sample_models/llama_train.py [--steps 200]

No downloads: the text is this Python's standard-library sources (``Lib/*.py``, sorted by
name); every tenth file is held out. The model reads bytes (vocabulary 256: token id =
byte value, so it needs no tokenizer files) with a small Llama architecture (3 layers,
hidden 96, grouped-query attention with 2 KV heads, context 128). Writes
``sample_models/llama-stdlib/``: ``config.json`` and ``model.safetensors``
(``save_pretrained``; `workbench.loaders.language.load_causal_lm` reads it) and
``card.json`` (held-out perplexity per byte, and the uniform baseline of 256).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "llama-stdlib"
CONTEXT = 128
BATCH = 16
SEED = 0
#: at most this many bytes of each split (the whole standard library is ~30 MB)
TRAIN_BYTES, HELD_OUT_BYTES = 4_000_000, 400_000
#: held-out windows the perplexity is measured on
EVAL_WINDOWS = 256

CONFIG = {
    "vocab_size": 256,
    "hidden_size": 96,
    "intermediate_size": 256,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": CONTEXT,
    "tie_word_embeddings": True,
}


def corpus() -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) bytes of the standard library's sources, split by file."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    train: list[bytes] = []
    held: list[bytes] = []
    for index, path in enumerate(files):
        (held if index % 10 == 0 else train).append(path.read_bytes())
    joined = (b"\n".join(train)[:TRAIN_BYTES], b"\n".join(held)[:HELD_OUT_BYTES])
    return tuple(np.frombuffer(part, dtype=np.uint8).astype(np.int64) for part in joined)  # type: ignore[return-value]


def windows(data: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    starts = rng.integers(0, len(data) - CONTEXT, count)
    return np.stack([data[s : s + CONTEXT] for s in starts])


def perplexity(model: object, data: np.ndarray) -> float:
    """Per-byte perplexity over `EVAL_WINDOWS` fixed held-out windows (seed 1)."""
    import torch

    batch = torch.from_numpy(windows(data, EVAL_WINDOWS, np.random.default_rng(1)))
    total = 0.0
    with torch.inference_mode():
        for chunk in batch.split(32):
            logits = model(input_ids=chunk).logits[:, :-1]  # type: ignore[operator]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, 256), chunk[:, 1:].reshape(-1), reduction="sum"
            )
            total += float(loss)
    return math.exp(total / (batch.shape[0] * (CONTEXT - 1)))


def main() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)  # the shipped sample
    steps = parser.parse_args().steps

    torch.manual_seed(SEED)
    train, held = corpus()
    model = LlamaForCausalLM(LlamaConfig(**CONFIG))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    rng = np.random.default_rng(SEED)
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        batch = torch.from_numpy(windows(train, BATCH, rng))
        loss = model(input_ids=batch, labels=batch).loss  # the model shifts the labels
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0:
            print(f"step {step}: loss {loss.item():.3f}", flush=True)
    seconds = time.perf_counter() - start
    model.eval()
    held_ppl, train_ppl = perplexity(model, held), perplexity(model, train)
    OUT.mkdir(exist_ok=True)
    model.save_pretrained(OUT, safe_serialization=True)
    weights = (OUT / "model.safetensors").read_bytes()
    card = {
        "name": "llama-stdlib",
        "description": "A byte-level Llama (3 layers, hidden 96, 2 KV heads, context 128) "
        "trained on the Python standard library's sources; for accuracy, not speed.",
        "architecture": "transformers.LlamaForCausalLM",
        "params": sum(p.numel() for p in model.parameters()),
        "tokens": "bytes: token id = byte value (vocabulary 256), no tokenizer files",
        "tokenizer": "bytes",  # workbench.loaders.tokenizers reads it: a ByteTokenizer
        "dataset": f"Python {sys.version.split()[0]} Lib/*.py, sorted; every tenth file held out",
        "train_bytes": len(train),
        "held_out_bytes": len(held),
        "held_out_perplexity": round(held_ppl, 4),
        "train_perplexity": round(train_ppl, 4),
        "uniform_perplexity": 256,
        "eval_windows": EVAL_WINDOWS,
        "training": {
            "optimizer": "AdamW",
            "schedule": "OneCycleLR",
            "lr": 3e-3,
            "steps": steps,
            "batch_size": BATCH,
            "context": CONTEXT,
        },
        "seed": SEED,
        "train_seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    (OUT / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
