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

    (m1, m2, m3) = (1, 0.5, 0) is :class:`~facerec.heads.ArcFaceHead` and (1, 0, 0.35) is
    :class:`~facerec.heads.CosFaceHead`, value for value; m1 > 1 is the SphereFace-style
    multiplicative angular margin.

    Where the angle leaves [0, π]:

    * m1 = 1: as insightface's ArcFace branch (and our ArcFace), where θ_y + m2 > π the target
      is s·(cos θ_y − m2·sin m2 − m3), which keeps it monotonic.
    * m1 != 1: as insightface's combined-margin code (the only one of its implementations that
      accepts m1 != 1; arcface_torch raises), nothing is done: cos(m1·θ_y + m2) is used as is,
      so for θ_y > (π − m2)/m1 the target rises again with θ_y (not monotonic). Those angles
      are rare in training (the target is usually the closest centre) but the margin there
      pushes the wrong way; prefer m1 = 1 unless reproducing such a recipe.

    θ_y = atan2(sqrt(clamp(1 − cos², SINE_EPS)), cos), whose gradient −1/sin θ stays finite.

    Args:
        m1: multiplicative angular margin, default 1.0.
        m2: additive angular margin in radians, default 0.5.
        m3: additive cosine margin, default 0.0.
        scale: s, default 64.0.
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
