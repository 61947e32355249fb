"""The trained ``llama-stdlib`` sample: it learned its text, and ORT generates as torch does."""

from __future__ import annotations

import json
import math
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from workbench.loaders.language import load_causal_lm
from workbench.profiling.generate import generate_profile

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

SAMPLE = Path(__file__).resolve().parents[2] / "sample_models" / "llama-stdlib"


@pytest.fixture(scope="module")
def sample() -> object:
    return load_causal_lm(SAMPLE)


def test_the_sample_predicts_held_out_source_far_better_than_chance(sample: object) -> None:
    # a held-out file (every tenth of the sorted sources, as the training script splits)
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    text = np.frombuffer(files[10].read_bytes()[:2048], dtype=np.uint8).astype(np.int64)
    windows = torch.from_numpy(text[: 16 * 128].reshape(16, 128))
    with torch.inference_mode():
        logits = sample(input_ids=windows).logits[:, :-1]  # type: ignore[operator]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, 256), windows[:, 1:].reshape(-1)
        )
    card = json.loads((SAMPLE / "card.json").read_text())
    # chance is 256 (uniform over bytes); the card records the held-out perplexity
    assert math.exp(float(loss)) < 256 / 4
    assert card["held_out_perplexity"] < 256 / 4


def test_onnxruntime_generates_the_same_code_as_torch(sample: object) -> None:
    prompt = [list(b"def main(args):\n    for ")]
    g = generate_profile(
        sample, backend="onnxruntime", prompt=prompt, output_length=6, runs=1, warmup=0
    )
    assert g.diverges_at is None and g.reference_backend == "torch"
