"""Causal language models with no download: random-weight Llama configs and local folders.

- `random_llama`: a Llama-architecture model built from a config with random weights
  (``"llama-tiny"``, ``"llama-100m"``): for speed only, never for accuracy.
- ``"llama-stdlib"``: the trained sample (``sample_models/llama-stdlib/``, see
  ``sample_models/llama_train.py``): for accuracy, not speed.
- `load_causal_lm` (from `workbench.loaders.causal_lm`): a local ``transformers`` folder
  (``config.json`` and ``*.safetensors``), read with ``local_files_only`` and without
  remote code; pickled weights (``*.bin``) are refused, as every file that would run
  code on load is.
- `language_model`: any of these by name or folder, and the ONNX folders of
  onnxruntime-genai and optimum.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.errors import ModelLoadError
from workbench.loaders.causal_lm import load_causal_lm

#: random-weight Llama configs by name: speed measurements only, never accuracy
RANDOM_LLAMAS: dict[str, dict[str, Any]] = {
    "llama-tiny": {
        "vocab_size": 256,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
    },
    # ~110M parameters (embeddings tied), the shape of a small Llama
    "llama-100m": {
        "vocab_size": 32000,
        "hidden_size": 768,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "num_key_value_heads": 12,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
    },
}


#: trained language-model samples, folders under ``sample_models/``
TRAINED_LLAMAS = ("llama-stdlib",)


def language_model(
    source: str | Path, seed: int = 0, *, trust: bool = False, reference: Any = None
) -> Any:
    """A causal LM by name or folder: a random config (`RANDOM_LLAMAS`, weights from
    ``seed``), a trained sample (`TRAINED_LLAMAS`), an onnxruntime-genai folder
    (``genai_config.json``: `workbench.loaders.genai.load_genai`), an optimum decoder
    folder (``config.json`` and ``model.onnx``: `workbench.loaders.optimum.load_optimum`)
    or a local ``transformers`` folder (`load_causal_lm`); an existing folder wins over a
    name. ``trust`` and ``reference`` go to the genai and optimum loaders."""
    path = Path(source)
    if not path.exists():
        if source in RANDOM_LLAMAS:
            return random_llama(str(source), seed=seed)
        if source in TRAINED_LLAMAS:
            from workbench.loaders.samples import samples_dir

            return load_causal_lm(samples_dir() / str(source))
        raise ModelLoadError(
            f"{source} is not a model folder or name; give a transformers folder, an ONNX "
            f"decoder folder or one of {sorted(RANDOM_LLAMAS) + list(TRAINED_LLAMAS)}"
        )
    if (path / "genai_config.json").is_file():
        from workbench.loaders.genai import load_genai

        return load_genai(path, trust=trust, reference=reference)
    from workbench.loaders.optimum import decoder_onnx, load_optimum

    if decoder_onnx(path) is not None:
        return load_optimum(path, trust=trust, reference=reference)
    return load_causal_lm(source)


def random_llama(name: str, seed: int = 0) -> Any:
    """The named random-weight Llama (see `RANDOM_LLAMAS`), in eval mode.

    Raises:
        ModelLoadError: an unknown name (lists the known ones).
    """
    if name not in RANDOM_LLAMAS:
        raise ModelLoadError(
            f"no random Llama config named {name!r}; known: {sorted(RANDOM_LLAMAS)}"
        )
    import torch

    from workbench.loaders.thirdparty import transformers

    hf = transformers()  # a torchvision built for another torch must not stop it
    torch.manual_seed(seed)
    model = hf.LlamaForCausalLM(hf.LlamaConfig(**RANDOM_LLAMAS[name])).eval()
    model.config.workbench_random_weights = True  # for speed only: accuracy refuses it
    return model
