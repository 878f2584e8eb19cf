"""torchvision ResNets (random weights, their ``fc`` and pooling dropped) with the face
:class:`EmbeddingHead`."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from facerec.errors import ConfigError
from facerec.models.base import Backbone, conv_output_size

from .embedding import EmbeddingHead

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


class TorchvisionResNet(Backbone):
    """A torchvision ResNet trunk + the face :class:`EmbeddingHead`.

    Args:
        arch: one of resnet18, resnet34, resnet50, resnet101, resnet152.
        embedding_dim: size D of the output embedding.
        dropout: dropout before the embedding Linear.
        input_size: (height, width) of the input, 112×112 by default.
        face_stem: replace the 7×7/2 conv + max-pool stem by a 3×3 stride-1 conv (as IResNet
            does for 112×112 faces), so the final map is H/16 instead of H/32.

    Shapes: (B, 3, H, W) float in [-1, 1] -> (B, embedding_dim).
    """

    def __init__(
        self,
        arch: str = "resnet50",
        embedding_dim: int = 512,
        dropout: float = 0.0,
        input_size: tuple[int, int] = (112, 112),
        face_stem: bool = True,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ConfigError(
                f"torchvision backbone {arch!r} does not exist; expected one of {ARCHS}"
            )
        self.arch = arch
        self.embedding_dim = embedding_dim
        self.input_size = (int(input_size[0]), int(input_size[1]))
        net = getattr(torchvision.models, arch)(weights=None)
        stages = 5  # conv1, maxpool, layer2..layer4 halve the size
        if face_stem:
            net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
            stages = 3
        parts = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        self.trunk = nn.Sequential(*(getattr(net, p) for p in parts))
        channels = net.fc.in_features
        spatial = tuple(conv_output_size(s, stages) for s in self.input_size)
        self.head = EmbeddingHead(channels, spatial, embedding_dim, dropout)  # type: ignore[arg-type]

    def stages(self) -> list[list[nn.Module]]:
        """Stem + layer1, layer2, layer3, layer4."""
        t = list(self.trunk)
        return [t[:5], [t[5]], [t[6]], [t[7]]]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)
