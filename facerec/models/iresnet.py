"""IResNet, the backbone of the published ArcFace models (insightface arcface_torch ``iresnet.py``).

A 3×3 stride-1 stem, four stride-2 stages of :class:`IBasicBlock` (widths 64..512, blocks per
``LAYERS``), then the :class:`EmbeddingHead`. With ``width=1`` the shapes are insightface's; its
state dicts load with :meth:`IResNet.load_insightface_state_dict`.
"""

from __future__ import annotations

import torch
from torch import nn

from facerec.errors import ConfigError
from facerec.models.base import Backbone, conv_output_size
from facerec.models.embedding import EmbeddingHead

LAYERS: dict[int, list[int]] = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 14, 3],
    100: [3, 13, 30, 3],
    200: [6, 26, 60, 6],
}


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """BN → conv3×3 → BN → PReLU → conv3×3(stride) → BN, plus the (projected) shortcut."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(Backbone):
    """IResNet-{18,34,50,100,200} embedding network.

    Args:
        depth: 18, 34, 50, 100 or 200.
        embedding_dim: size D of the output embedding (512 in the published models).
        width: multiplier on every channel count (1.0 = published; 0.25 makes a fast CPU model).
        dropout: dropout before the embedding Linear (0.0 in insightface's configs).
        input_size: (height, width) of the input; 112×112 in the published models.
        zero_init_residual: zero the last BN of each block (insightface's option, off by default).

    Shapes: (B, 3, H, W) float in [-1, 1] -> (B, embedding_dim).
    """

    insightface_names = (("bn2", "head.bn2"), ("fc", "head.fc"), ("features", "head.features"))

    def __init__(
        self,
        depth: int = 50,
        embedding_dim: int = 512,
        width: float = 1.0,
        dropout: float = 0.0,
        input_size: tuple[int, int] = (112, 112),
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if depth not in LAYERS:
            raise ConfigError(
                f"IResNet depth {depth} does not exist; expected one of {sorted(LAYERS)}"
            )
        if width <= 0:
            raise ConfigError(f"IResNet width must be > 0, got {width}")
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.input_size = (int(input_size[0]), int(input_size[1]))
        widths = [max(8, round(c * width)) for c in (64, 128, 256, 512)]
        self.inplanes = widths[0]
        self.conv1 = conv3x3(3, self.inplanes)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=1e-5)
        self.prelu = nn.PReLU(self.inplanes)
        self.layer1 = self._make_layer(widths[0], LAYERS[depth][0], stride=2)
        self.layer2 = self._make_layer(widths[1], LAYERS[depth][1], stride=2)
        self.layer3 = self._make_layer(widths[2], LAYERS[depth][2], stride=2)
        self.layer4 = self._make_layer(widths[3], LAYERS[depth][3], stride=2)
        spatial = tuple(conv_output_size(s, 4) for s in self.input_size)
        self.head = EmbeddingHead(widths[3], spatial, embedding_dim, dropout)  # type: ignore[arg-type]

        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # the BNs keep torch's weight 1, bias 0
                nn.init.normal_(m.weight, 0, 0.1)
            elif zero_init_residual and isinstance(m, IBasicBlock):
                nn.init.constant_(m.bn3.weight, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-5),
            )
        layers = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def stages(self) -> list[list[nn.Module]]:
        return [
            [self.conv1, self.bn1, self.prelu, self.layer1],
            [self.layer2],
            [self.layer3],
            [self.layer4],
        ]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> final feature map (B, C, H/16, W/16)."""
        x = self.prelu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
