"""Combined margin (insightface): target s·(cos(m1·θ_y + m2) − m3)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facerec.heads.base import (
    SINE_EPS,
    CosineMarginHead,
    Margin,
    arc_target,
    check_float,
    margin_logits,
)


class CombinedMargin(Margin):
    """insightface's combined margin: target s·(cos(m1·θ_y + m2) − m3), others s·cos θ_j.

    (1, 0.5, 0) is ArcFace and (1, 0, 0.35) CosFace, value for value. With m1 = 1 the ArcFace
    fallback s·(cos θ_y − m2·sin m2 − m3) applies where θ_y + m2 > π; with m1 != 1 nothing is
    done, as in insightface: for θ_y > (π − m2)/m1 the target rises again with θ_y.
    """

    def __init__(
        self, m1: float = 1.0, m2: float = 0.5, m3: float = 0.0, scale: float = 64.0
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.m1 = check_float("m1", m1, name, low=0.0, high=16.0, low_open=True)
        self.m2 = check_float("m2", m2, name, low=0.0, high=math.pi)
        self.m3 = check_float("m3", m3, name, low=0.0, high=2.0)
        self.scale = check_float("scale", scale, name, low=0.0, low_open=True)

    def forward(self, cos: Tensor, labels: Tensor, norms: Tensor) -> Tensor:
        return margin_logits(cos, labels, self.scale, self._target)

    def _target(self, cos_t: Tensor) -> Tensor:
        if self.m1 == 1.0:
            target = cos_t if self.m2 == 0.0 else arc_target(cos_t, self.m2)
        else:
            sin_t = torch.sqrt(torch.clamp(1.0 - cos_t * cos_t, min=SINE_EPS))
            target = torch.cos(self.m1 * torch.atan2(sin_t, cos_t) + self.m2)
        if self.m3 != 0.0:
            target = target - self.m3
        return self.scale * target


class CombinedMarginHead(CosineMarginHead, margin=CombinedMargin):
    """:class:`CombinedMargin` over the class centres; see :class:`CosineMarginHead`."""
