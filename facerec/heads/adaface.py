"""AdaFace (Kim et al., CVPR 2022): margin adapted to image quality through the feature norm."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facerec.base.distributed import all_reduce_
from facerec.heads.base import CosineMarginHead, Margin, check_float, margin_logits

#: ε of the official code: cosine clamp ±(1 − ε), θ clip [ε, π − ε] and σ + ε.
ADAFACE_EPS = 1e-3


class AdaFaceMargin(Margin):
    """AdaFace margin, exactly as the official implementation (mk-minchul/AdaFace ``head.py``).

    With n = clip(‖x‖, 0.001, 100) (detached), running batch statistics μ (buffer ``batch_mean``,
    starts at 20) and σ (``batch_std``, starts at 100):

    * training: μ ← t_alpha·mean(n) + (1 − t_alpha)·μ, σ ← t_alpha·std(n) + (1 − t_alpha)·σ
      (unbiased std), before they are used. The statistics are over the rows whose label is
      >= 0, summed over all DDP ranks with ``all_reduce_``, so the buffers are the same on every
      rank and equal the global-batch statistics (μ needs >= 1 such row, σ >= 2, else
      unchanged). Every rank must make the same training-mode calls (as DDP steps do), since
      each one is a collective.
    * ẑ = clip(h·(n − μ)/(σ + ε), −1, 1); g_angle = −m·ẑ; g_add = m + m·ẑ.
    * every cosine is clamped to ±(1 − ε); target s·(cos(clip(θ_y + g_angle, ε, π − ε)) − g_add),
      others s·cos θ_j (so also clamped), ε = 1e-3.

    With h = 0: ẑ = 0 and the target is s·(cos θ_y − m), CosFace with margin m.

    Args:
        margin: m, default 0.4: radians in the angular part (g_angle = −m·ẑ) and a cosine
            offset in the additive part (g_add = m + m·ẑ), as in the paper.
        h: margin scaler (dimensionless), default 0.333.
        scale: s, default 64.0.
        t_alpha: EMA rate of μ and σ, default 0.01.
    """

    batch_mean: Tensor
    batch_std: Tensor

    def __init__(
        self, margin: float = 0.4, h: float = 0.333, scale: float = 64.0, t_alpha: float = 0.01
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.margin = check_float("margin", margin, name, low=0.0, high=math.pi)
        self.h = check_float("h", h, name, low=0.0)
        self.scale = check_float("scale", scale, name, low=0.0, low_open=True)
        self.t_alpha = check_float("t_alpha", t_alpha, name, low=0.0, high=1.0)
        self.register_buffer("batch_mean", torch.full((), 20.0))
        self.register_buffer("batch_std", torch.full((), 100.0))

    @torch.no_grad()
    def _update_stats(self, norms: Tensor, valid: Tensor) -> None:
        n = norms.to(torch.float64)
        w = valid.to(torch.float64)
        stats = torch.stack([(n * w).sum(), (n * n * w).sum(), w.sum()])
        total, total_sq, count = all_reduce_(stats, "sum")
        mean = total / count.clamp(min=1.0)
        var = (total_sq - count * mean * mean).clamp(min=0.0) / (count - 1.0).clamp(min=1.0)
        a = self.t_alpha
        old_mean = self.batch_mean.to(torch.float64)
        old_std = self.batch_std.to(torch.float64)
        self.batch_mean.copy_(torch.where(count > 0, a * mean + (1 - a) * old_mean, old_mean))
        self.batch_std.copy_(torch.where(count > 1, a * var.sqrt() + (1 - a) * old_std, old_std))

    def forward(self, cos: Tensor, labels: Tensor, norms: Tensor) -> Tensor:
        eps = ADAFACE_EPS
        safe = norms.detach().clamp(min=0.001, max=100.0)
        if self.training:
            self._update_stats(safe, (labels >= 0).unsqueeze(1))
        mean = self.batch_mean.to(cos.dtype)
        std = self.batch_std.to(cos.dtype)
        z = torch.clamp(self.h * (safe - mean) / (std + eps), -1.0, 1.0)  # (B, 1)
        g_angle = -self.margin * z
        g_add = self.margin + self.margin * z
        s = self.scale

        def target(c: Tensor) -> Tensor:
            theta = torch.acos(c.clamp(-1.0 + eps, 1.0 - eps))
            return s * (torch.cos(torch.clamp(theta + g_angle, eps, math.pi - eps)) - g_add)

        return margin_logits(cos, labels, s, target, clip=1.0 - eps)


class AdaFaceHead(CosineMarginHead, margin=AdaFaceMargin):
    """:class:`AdaFaceMargin` over the class centres; see :class:`CosineMarginHead`."""
