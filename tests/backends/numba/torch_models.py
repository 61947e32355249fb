"""Torch-built models using the common ops (MobileNet v3, SqueezeNet, a masked encoder)."""

from __future__ import annotations

from workbench.model import Model


def mobilenet_v3_block() -> Model:
    """Conv-BN-Hardswish, a depthwise conv with ReLU6, a squeeze-excite gate with
    Hardsigmoid, a SqueezeNet fire module (1x1 squeeze, 1x1 | 3x3 expand, Concat), then
    global average pool and a linear classifier, at batch-dynamic [N, 3, 16, 16]."""
    import torch
    from torch import nn

    class SqueezeExcite(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.reduce, self.expand = nn.Conv2d(c, c // 2, 1), nn.Conv2d(c // 2, c, 1)
            self.gate = nn.Hardsigmoid()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.gate(self.expand(torch.relu(self.reduce(self.pool(x)))))

    class Fire(nn.Module):
        def __init__(self, c: int, s: int, e: int) -> None:
            super().__init__()
            self.squeeze = nn.Conv2d(c, s, 1)
            self.e1, self.e3 = nn.Conv2d(s, e, 1), nn.Conv2d(s, e, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.squeeze(x))
            return torch.cat([torch.relu(self.e1(y)), torch.relu(self.e3(y))], 1)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.Hardswish()
            )
            self.depthwise = nn.Sequential(
                nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6()
            )
            self.se = SqueezeExcite(8)
            self.fire = Fire(8, 4, 8)
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, 10)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.fire(self.se(self.depthwise(self.stem(x)))))

    from workbench.loaders import load

    torch.manual_seed(0)
    return load(Net(), example_inputs=(torch.rand(1, 3, 16, 16),), name="mobilenet-v3-block")


def masked_encoder() -> Model:
    """A transformer encoder layer whose attention mask comes from the token ids
    (padding id 0), as exported language models build theirs: Equal, Where, Softmax."""
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(20, 16)
            self.layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
            self.out = nn.Linear(16, 3)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            hidden = self.embed(ids)
            scores = hidden @ hidden.transpose(1, 2) / 4.0
            mask = (ids == 0).unsqueeze(1)
            scores = torch.where(mask, torch.full_like(scores, -1e4), scores)
            hidden = torch.softmax(scores, -1) @ hidden
            pooled = self.layer(hidden).clamp(-3.0, 3.0).mean(1)
            return self.out(pooled)

    from workbench.loaders import load

    torch.manual_seed(0)
    ids = torch.tensor([[3, 5, 7, 0, 0, 0]])
    return load(Encoder(), example_inputs=(ids,), name="masked-encoder")
