"""The Numba path's model set (issue 27): real networks built here, nothing downloaded.

- the samples (``wb.samples``) and the workbench's own INT8 variants of the two CNN/MLP
  samples (``int8-static``: QDQ, ``int8-dynamic``: DynamicQuantizeLinear + MatMulInteger);
- the light models of the ONNX model zoo that the ``onnx`` wheel ships (opset 9 Caffe2
  exports; `workbench.testing.foreign`), full size;
- a transformers BERT for sequence classification from a small config (random weights,
  exported to ONNX): its attention mask is IsNaN/Where, its pooler a GatherND;
- torchvision's mobilenet_v3_small, efficientnet_b0, resnet18 and vit_b_32 (random
  weights, batch norms calibrated), where torchvision imports (CI runs them in the
  ``.venv-torchvision`` overlay; here
  ``PYTHONPATH=.venv-torchvision/lib/python3.11/site-packages``); their export takes a
  minute or more on 2 cores.

`build` returns a loaded `Model`; `refused_ops` says which ops ``numba`` lacks, from the
graph alone (nothing is compiled). The tests (`test_numba_model_set.py`) and
``benchmarks/numba_cpu.py --model-set`` use the same entries; docs/numba.md has the
coverage table they check.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import workbench as wb

#: BERT's size: two layers of width 32, 8 tokens (the test's budget, not a real BERT)
BERT_VOCAB, BERT_SEQ = 120, 8


@dataclass(frozen=True)
class Entry:
    """One model of the set.

    Attributes:
        name: how tables name it.
        family: ``sample``, ``int8``, ``zoo``, ``transformers`` or ``torchvision``.
        make: builds the model (may raise `ModelLoadError` when its library is missing).
        heavy: too big to run in a unit test (only its ops are checked there).
    """

    name: str
    family: str
    make: Callable[[], wb.Model]
    heavy: bool = False


def _int8(sample: str, config: str) -> wb.Model:
    return wb.quantize(wb.samples.load(sample), config, data=wb.samples.dataset("digits"))


@functools.cache
def _zoo_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="wb-model-set-"))


def _zoo(name: str, weighted: bool) -> wb.Model:
    """A light zoo model: the shipped file (weights: ConstantOfShape of 0.02) to check its
    ops, or with seeded random weights put back to run it (`foreign.light_model`)."""
    from workbench.testing.foreign import light_model, light_model_path

    if not weighted:
        return wb.load(light_model_path(name))
    return wb.load(light_model(name, _zoo_folder() / f"{name}.onnx"))


def bert() -> wb.Model:
    """BertForSequenceClassification, 2 layers of width 32, 3 labels, random weights."""
    import torch
    import transformers

    config = transformers.BertConfig(
        vocab_size=BERT_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, num_labels=3,
    )  # fmt: skip
    torch.manual_seed(0)
    module = transformers.BertForSequenceClassification(config).eval()
    ids = torch.randint(0, BERT_VOCAB, (2, BERT_SEQ))
    return wb.load(module, example_inputs=(ids, torch.ones_like(ids), torch.zeros_like(ids)))


def _torchvision(name: str) -> wb.Model:
    from workbench.testing.foreign import torchvision_classifier

    return torchvision_classifier(name)


def entries() -> list[Entry]:
    """Every model of the set, cheapest first within each family."""
    from workbench.testing.foreign import LIGHT_MODELS

    found = [Entry(n, "sample", functools.partial(wb.samples.load, n)) for n in wb.samples.names()]
    found += [
        Entry(f"{sample} {config}", "int8", functools.partial(_int8, sample, config))
        for sample in ("digits-cnn", "digits-mlp")
        for config in ("int8-static", "int8-dynamic")
    ]
    found += [
        Entry(f"zoo {n}", "zoo", functools.partial(_zoo, n, False), heavy=True)
        for n in LIGHT_MODELS
    ]
    found.append(Entry("bert-tiny (transformers)", "transformers", bert))
    found += [
        Entry(n, "torchvision", functools.partial(_torchvision, n), heavy=True)
        for n in ("mobilenet_v3_small", "efficientnet_b0", "resnet18", "vit_b_32")
    ]
    return found


def refused_ops(model: wb.Model) -> list[str]:
    """The op types of ``model``'s ONNX graph that the ``numba`` backend has no kernel for."""
    from workbench.backends.numba import CPU_OPS
    from workbench.backends.numba.graph import unsupported_ops

    proto = model.to_onnx().proto
    return unsupported_ops(proto, dict.fromkeys(CPU_OPS))
