"""The embedding head of the published ArcFace models: BN2d → flatten → Dropout → Linear → BN1d."""

from __future__ import annotations

import torch
from torch import nn


class EmbeddingHead(nn.Module):
    """(B, C, H, W) -> (B, D), as insightface's IResNet; BatchNorm1d's weight is frozen at 1 and
    the output is not L2-normalised."""

    def __init__(
        self,
        in_channels: int,
        spatial: tuple[int, int],
        embedding_dim: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.bn2 = nn.BatchNorm2d(in_channels, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(in_channels * spatial[0] * spatial[1], embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5)
        self.features.weight.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.fc(self.dropout(torch.flatten(self.bn2(x), 1))))
