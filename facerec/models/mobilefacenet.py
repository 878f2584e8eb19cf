"""MobileFaceNet, the small backbone of insightface arcface_torch (``mbf``, ``mbf_large``).

As insightface ``backbones/mobilefacenet.py`` (Chen et al. 2018): a 3×3/2 stem, a depthwise
stage, three stride-2 inverted bottlenecks each followed by residual ones, a 1×1 conv to 512
(``conv_sep``) and the GDC head (a depthwise conv over the whole map, Linear, BatchNorm1d),
which insightface names ``features`` (:meth:`MobileFaceNet.load_insightface_state_dict`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from facerec.errors import ConfigError
from facerec.models.base import Backbone, conv_output_size

Pair = tuple[int, int]


class ConvBlock(nn.Module):
    """Conv (no bias) → BN → PReLU; with ``linear``, conv → BN (a linear bottleneck projection)."""

    def __init__(
        self,
        in_c: int,
        out_c: int,
        kernel: Pair = (1, 1),
        stride: Pair = (1, 1),
        padding: Pair = (0, 0),
        groups: int = 1,
        linear: bool = False,
    ) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_c),
            *([] if linear else [nn.PReLU(out_c)]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Inverted bottleneck: 1×1 expand to ``groups`` channels → depthwise 3×3 → 1×1 project;
    ``residual`` adds the input (stride 1, in_c == out_c)."""

    def __init__(
        self, in_c: int, out_c: int, residual: bool = False, stride: Pair = (2, 2), groups: int = 1
    ) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_c, groups),
            ConvBlock(groups, groups, (3, 3), stride, (1, 1), groups=groups),
            ConvBlock(groups, out_c, linear=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class Residual(nn.Module):
    """``num_block`` residual :class:`DepthWise` blocks at constant width ``c``."""

    def __init__(self, c: int, num_block: int, groups: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *[DepthWise(c, c, True, (1, 1), groups) for _ in range(num_block)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDCHead(nn.Module):
    """Global depthwise conv embedding head: (B, 512, h, w) -> (B, D), insightface's indices."""

    def __init__(self, channels: int, spatial: Pair, embedding_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            ConvBlock(channels, channels, kernel=spatial, groups=channels, linear=True),
            nn.Flatten(1),
            nn.Linear(channels, embedding_dim, bias=False),
            nn.BatchNorm1d(embedding_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(Backbone):
    """MobileFaceNet embedding network (insightface ``mbf`` / ``mbf_large``).

    Args:
        embedding_dim: size D of the output embedding (512 in insightface's mbf configs).
        scale: width multiplier on the 64/128-channel stages (2 = ``mbf``, 4 = ``mbf_large``).
        blocks: residual blocks in the four stages, (1, 4, 6, 2) for ``mbf``,
            (2, 8, 12, 4) for ``mbf_large``.
        input_size: (height, width) of the input; 112×112 in the published models. The GDC
            kernel is the final map, input/16 (7×7 at 112×112).

    Shapes: (B, 3, H, W) float in [-1, 1] -> (B, embedding_dim).
    """

    insightface_names = (("features", "head"),)

    def __init__(
        self,
        embedding_dim: int = 512,
        scale: int = 2,
        blocks: Sequence[int] = (1, 4, 6, 2),
        input_size: tuple[int, int] = (112, 112),
    ) -> None:
        super().__init__()
        blocks = tuple(int(b) for b in blocks)
        if len(blocks) != 4 or min(blocks) < 1:
            raise ConfigError(
                f"MobileFaceNet blocks {list(blocks)}: expected four counts >= 1, "
                "e.g. [1, 4, 6, 2] (mbf) or [2, 8, 12, 4] (mbf_large)"
            )
        if int(scale) != scale or scale < 1:
            raise ConfigError(f"MobileFaceNet scale must be a whole number >= 1, got {scale}")
        self.scale = scale = int(scale)
        self.embedding_dim = int(embedding_dim)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.blocks = blocks
        c1, c2 = 64 * scale, 128 * scale
        self.layers = nn.ModuleList([ConvBlock(3, c1, (3, 3), (2, 2), (1, 1))])
        if blocks[0] == 1:
            self.layers.append(ConvBlock(c1, c1, (3, 3), (1, 1), (1, 1), groups=64))
        else:
            self.layers.append(Residual(c1, blocks[0], groups=128))
        self.layers.extend(
            [
                DepthWise(c1, c1, groups=128),
                Residual(c1, blocks[1], groups=128),
                DepthWise(c1, c2, groups=256),
                Residual(c2, blocks[2], groups=256),
                DepthWise(c2, c2, groups=512),
                Residual(c2, blocks[3], groups=256),
            ]
        )
        self.conv_sep = ConvBlock(c2, 512)
        spatial = (conv_output_size(self.input_size[0], 4), conv_output_size(self.input_size[1], 4))
        self.head = GDCHead(512, spatial, self.embedding_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):  # none has a bias; BN keeps torch's 1, 0
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stages(self) -> list[list[nn.Module]]:
        """Stem + depthwise stage at 1/2; then each stride-2 block with its residual blocks
        (1/4, 1/8, 1/16), the last with ``conv_sep``."""
        lay = list(self.layers)
        return [lay[0:2], lay[2:4], lay[4:6], [*lay[6:8], self.conv_sep]]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 512, H/16, W/16), the map the GDC head pools."""
        for layer in self.layers:
            x = layer(x)
        return self.conv_sep(x)


def mbf(**kwargs) -> MobileFaceNet:
    """insightface ``mbf``: scale 2, blocks (1, 4, 6, 2)."""
    return MobileFaceNet(**{"scale": 2, "blocks": (1, 4, 6, 2), **kwargs})


def mbf_large(**kwargs) -> MobileFaceNet:
    """insightface ``mbf_large``: scale 4, blocks (2, 8, 12, 4)."""
    return MobileFaceNet(**{"scale": 4, "blocks": (2, 8, 12, 4), **kwargs})
