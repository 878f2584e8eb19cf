"""CurricularFace (Huang et al., CVPR 2020): ArcFace target, re-weighted hard negatives."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from facerec.base.distributed import all_reduce_
from facerec.heads.base import (
    CosineMarginHead,
    Margin,
    arc_target,
    check_float,
    margin_logits,
    target_cosine,
)


class CurricularFaceMargin(Margin):
    """CurricularFace margin.

    Target s·cos(θ_y + m) with the ArcFace fallback s·(cos θ_y − m·sin m) where θ_y + m > π.
    A non-target cosine greater than cos(θ_y + m) (a hard negative) becomes cos θ_j·(t + cos θ_j),
    other non-targets stay cos θ_j; all logits are scaled by s. t is a buffer (starts at 0,
    saved in the state_dict) updated in training, before it is used, as in the official code:
    t ← t_alpha·mean(cos θ_y) + (1 − t_alpha)·t, without gradient. The mean is over the rows
    whose label is >= 0, summed over all DDP ranks with ``all_reduce_`` so t stays identical on
    every rank; a step with no such row leaves t unchanged. Every rank must make the same
    training-mode calls (as DDP steps do), since each one is a collective. Rows with label −1
    (target among other columns) get plain s·cos θ_j: no hard-negative re-weighting, since
    cos(θ_y + m) is unknown there; hence ``needs_target_cosine``: a sharded head appends the
    global cos θ_y as an extra column for such rows.

    The hard-negative mask is a constant (no gradient); the gradient of cos·(t + cos) is
    t + 2·cos.

    Args:
        margin: m in radians, default 0.5.
        scale: s, default 64.0.
        t_alpha: EMA rate of t, default 0.01.
    """

    t: Tensor
    needs_target_cosine = True

    def __init__(self, margin: float = 0.5, scale: float = 64.0, t_alpha: float = 0.01) -> None:
        super().__init__()
        name = type(self).__name__
        self.margin = check_float("margin", margin, name, low=0.0, high=math.pi)
        self.scale = check_float("scale", scale, name, low=0.0, low_open=True)
        self.t_alpha = check_float("t_alpha", t_alpha, name, low=0.0, high=1.0)
        self.register_buffer("t", torch.zeros(()))

    @torch.no_grad()
    def _update_t(self, cos_t: Tensor, valid: Tensor) -> None:
        """EMA of the mean of ``cos_t`` (0 where not ``valid``) over the valid rows of all ranks."""
        total, count = all_reduce_(torch.stack([cos_t.sum(), valid.sum()]).to(torch.float64), "sum")
        old = self.t.to(torch.float64)
        new = self.t_alpha * (total / count.clamp(min=1.0)) + (1.0 - self.t_alpha) * old
        self.t.copy_(torch.where(count > 0, new, old))

    def forward(self, cos: Tensor, labels: Tensor, norms: Tensor) -> Tensor:
        valid = (labels >= 0).unsqueeze(1)  # (B, 1)
        index = labels.clamp(min=0).unsqueeze(1)
        m, s = self.margin, self.scale
        with torch.no_grad():
            cos_t = target_cosine(cos, labels)  # (B, 1), constant: only the mask and t use it
            if self.training:
                self._update_t(cos_t, valid)
            threshold = torch.where(valid, arc_target(cos_t, m, fallback=False), math.inf)
        modulated = _HardNegatives.apply(cos, threshold, self.t.to(cos.dtype), index)
        # the target column is left unmodulated above, so margin_logits reads cos θ_y there
        return margin_logits(modulated, labels, s, lambda c: s * arc_target(c, m))


class CurricularFaceHead(CosineMarginHead, margin=CurricularFaceMargin):
    """:class:`CurricularFaceMargin` over the class centres; see :class:`CosineMarginHead`."""


class _HardNegatives(torch.autograd.Function):
    """out = cos·(t + cos) where cos > threshold (per row) and not the target column, else cos;
    fused: one (B, C) tensor (and a bool mask) per pass."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, cos: Tensor, threshold: Tensor, t: Tensor, index: Tensor
    ) -> Tensor:
        hard = cos > threshold  # (B, C) bool
        hard.scatter_(1, index, False)
        out = (cos + (t - 1.0)).mul_(cos).mul_(hard).add_(cos)  # cos + hard·(cos·(t + cos) − cos)
        ctx.save_for_backward(cos, hard, t)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        cos, hard, t = ctx.saved_tensors
        return (cos * 2.0).add_(t - 1.0).mul_(hard).add_(1.0).mul_(grad), None, None, None
