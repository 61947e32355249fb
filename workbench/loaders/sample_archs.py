"""Architectures of the shipped sample models (``wb.samples``).

All four take a float32 batch of 8x8 digit images, shape ``(N, 1, 8, 8)`` with values
in [0, 1], and return logits of shape ``(N, 10)``. They use only operations that
export to plain ONNX (Conv, BatchNormalization, Relu, MaxPool, GlobalAveragePool,
Flatten/Reshape, Gemm/MatMul, Add, Softmax, LayerNormalization, Gelu, Transpose,
Resize), and their submodule names are chosen to read well as canonical layer names
(``features.0``, ``blocks.1.attn.q``).

This module imports torch at import time; `workbench.loaders.samples` imports it only
when a sample is loaded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import InvalidArgumentError

__all__ = ["ARCHITECTURES", "DigitsCNN", "DigitsMLP", "DigitsResNet", "DigitsTransformer"]


class DigitsMLP(nn.Module):
    """A three-layer perceptron: 64 -> 512 -> 512 -> 10 with ReLU.

    The hidden layers are wide enough (512) that INT8 quantization changes their cost
    measurably.

    Example:
        >>> logits = DigitsMLP()(torch.zeros(2, 1, 8, 8))
        >>> tuple(logits.shape)
        (2, 10)
    """

    def __init__(self, hidden: int = 512, num_classes: int = 10) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64, hidden)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.relu2 = nn.ReLU()
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.fc1(self.flatten(x)))
        x = self.relu2(self.fc2(x))
        return self.head(x)


class DigitsCNN(nn.Module):
    """A small convolutional network: conv/batch-norm/ReLU blocks, a max-pool, a linear head.

    ``features`` maps (N, 1, 8, 8) to (N, 64, 4, 4); ``classifier`` flattens and maps to
    the 10 logits.

    Example:
        >>> logits = DigitsCNN().eval()(torch.zeros(2, 1, 8, 8))
        >>> tuple(logits.shape)
        (2, 10)
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Attention(nn.Module):
    """Multi-head self-attention written out with explicit matmuls and a softmax.

    Written by hand rather than with `torch.nn.MultiheadAttention`, whose fused fast
    path exports to unusual ONNX ops.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise InvalidArgumentError(
                f"dim {dim} is not divisible by heads {heads}; pick a dim that heads divides"
            )
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.softmax = nn.Softmax(dim=-1)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        # (N, T, D) -> (N, H, T, D/H); unflatten avoids naming the batch size.
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        weights = self.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale)
        mixed = torch.matmul(weights, v).transpose(1, 2).flatten(2)
        return self.out(mixed)


class MLPBlock(nn.Module):
    """The transformer's feed-forward part: Linear, GELU, Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EncoderBlock(nn.Module):
    """A pre-norm transformer encoder block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PositionalEmbedding(nn.Module):
    """A learned embedding per token position, added to the tokens."""

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, tokens, dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight


class MeanPool(nn.Module):
    """Mean over the token axis: (N, T, D) -> (N, D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


class DigitsTransformer(nn.Module):
    """A tiny transformer that reads the 8 rows of a digit as 8 tokens of 8 pixels.

    Linear embedding to ``dim``, a learned positional embedding, ``depth`` pre-norm
    encoder blocks (4 heads, GELU MLP), a final LayerNorm, mean pooling over the tokens
    and a linear head.

    Example:
        >>> logits = DigitsTransformer().eval()(torch.zeros(2, 1, 8, 8))
        >>> tuple(logits.shape)
        (2, 10)
    """

    def __init__(
        self,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_hidden: int = 128,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.to_tokens = nn.Flatten(1, 2)  # (N, 1, 8, 8) -> (N, 8 rows, 8 pixels)
        self.embed = nn.Linear(8, dim)
        self.pos_embed = PositionalEmbedding(8, dim)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, mlp_hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.pool = MeanPool()
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.pos_embed(self.embed(self.to_tokens(x)))
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.pool(self.norm(tokens)))


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by an integer factor (exports to ONNX Resize)."""

    def __init__(self, scale_factor: int) -> None:
        super().__init__()
        self.scale_factor = scale_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode="nearest")


class BasicBlock(nn.Module):
    """A ResNet basic block: two 3x3 conv-bn layers and a residual add, then ReLU.

    When the stride or width changes, ``downsample`` (1x1 conv + bn) projects the input.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.downsample(x))


class DigitsResNet(nn.Module):
    """A small ResNet on the digit upsampled 4x (nearest) to 32x32.

    Stem (3x3 conv, 32 channels) then three stages of basic blocks: 32 channels at
    32x32, 64 at 16x16 and 128 at 8x8, global average pool and a linear head. About
    0.67 M parameters and 85 M multiply-accumulates per image, so convolutions dominate
    its profile.

    Example:
        >>> logits = DigitsResNet().eval()(torch.zeros(2, 1, 8, 8))
        >>> tuple(logits.shape)
        (2, 10)
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (32, 64, 128),
        blocks: tuple[int, ...] = (1, 2, 2),
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.upsample = Upsample(4)  # 8x8 -> 32x32
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages: list[nn.Module] = []
        in_channels = widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(in_channels, width, stride)]
            layers += [BasicBlock(width, width) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = width
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.upsample(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


#: sample name -> (architecture class, one-line description)
ARCHITECTURES: dict[str, tuple[type[nn.Module], str]] = {
    "digits-mlp": (DigitsMLP, "Three-layer perceptron 64-512-512-10 (ReLU) on 8x8 digits."),
    "digits-cnn": (
        DigitsCNN,
        "Three conv/batch-norm/ReLU blocks with a max-pool and a linear head on 8x8 digits.",
    ),
    "digits-transformer": (
        DigitsTransformer,
        "Two-block transformer (d=64, 4 heads) reading the 8 rows of a digit as tokens.",
    ),
    "digits-resnet": (
        DigitsResNet,
        "Small ResNet (basic blocks, 32/64/128 channels) on digits upsampled to 32x32.",
    ),
}
