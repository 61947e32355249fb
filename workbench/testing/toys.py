"""Tiny models for tests and examples: fast to build, run and export."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.model import Model


def toy_mlp(hidden: int = 16, seed: int = 0) -> Model:
    """A 2-layer MLP on inputs of shape (N, 8), wrapped as a torch `Model`."""
    import torch

    torch.manual_seed(seed)
    module = torch.nn.Sequential(
        torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 4)
    )
    from workbench.loaders import load

    return load(module, example_inputs=(torch.rand(1, 8),), name="toy-mlp")


def toy_cnn(seed: int = 0) -> Model:
    """A conv/batch-norm/relu/linear model on (N, 1, 8, 8) inputs, wrapped as a torch `Model`."""
    import torch

    class ToyCNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = torch.nn.Sequential(
                torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU()
            )
            self.fc = torch.nn.Linear(4 * 64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.features(x).flatten(1))

    torch.manual_seed(seed)
    module = ToyCNN()
    # non-trivial running statistics so that batch norm really does something
    norm = module.features[1]
    assert isinstance(norm, torch.nn.BatchNorm2d)
    norm.running_mean.uniform_(-0.5, 0.5)  # type: ignore[union-attr]
    norm.running_var.uniform_(0.5, 2.0)  # type: ignore[union-attr]
    from workbench.loaders import load

    return load(module, example_inputs=(torch.rand(1, 1, 8, 8),), name="toy-cnn")


def tiny_llama(vocab_size: int = 100, context: int = 16, seed: int = 0) -> Any:
    """A 2-layer ``transformers`` Llama (hidden 32, 4 heads over 2 key/value heads),
    random weights seeded, in eval mode: a causal LM that generates in milliseconds."""
    import torch
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
    )
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(config).eval()
