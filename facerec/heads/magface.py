"""MagFace (Meng et al., CVPR 2021): ArcFace with a magnitude-dependent margin and regulariser."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facerec.errors import ConfigError
from facerec.heads.base import CosineMarginHead, Margin, arc_target, check_float, margin_logits


class MagFaceMargin(Margin):
    """MagFace margin.

    a = clip(‖x‖, l_a, u_a) (not detached: the margin is how the magnitude learns quality);
    m(a) = (u_m − l_m)/(u_a − l_a)·(a − l_a) + l_m; target s·cos(θ_y + m(a)) with the ArcFace
    fallback s·(cos θ_y − m(a)·sin m(a)) where θ_y + m(a) > π; others s·cos θ_j.
    :meth:`regularizer` returns λ_g·mean(g(a)), g(a) = a/u_a² + 1/a, to add to the loss.

    Args:
        scale: s, default 64.0.
        l_a: lower end of the magnitude range, default 10.0.
        u_a: upper end of the magnitude range, default 110.0.
        l_m: margin (radians) at ``l_a``, default 0.45.
        u_m: margin (radians) at ``u_a``, default 0.8.
        lambda_g: weight of the regulariser, default 35.0 (the paper's code; FaceX-Zoo uses 20).
    """

    def __init__(
        self,
        scale: float = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_m: float = 0.45,
        u_m: float = 0.8,
        lambda_g: float = 35.0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.scale = check_float("scale", scale, name, low=0.0, low_open=True)
        self.l_a = check_float("l_a", l_a, name, low=0.0, low_open=True)
        self.u_a = check_float("u_a", u_a, name, low=0.0, low_open=True)
        self.l_m = check_float("l_m", l_m, name, low=0.0, high=math.pi)
        self.u_m = check_float("u_m", u_m, name, low=0.0, high=math.pi)
        self.lambda_g = check_float("lambda_g", lambda_g, name, low=0.0)
        if self.l_a >= self.u_a:
            raise ConfigError(f"{name}: l_a must be below u_a, got l_a={l_a}, u_a={u_a}.")
        if self.l_m > self.u_m:
            raise ConfigError(f"{name}: l_m must not exceed u_m, got l_m={l_m}, u_m={u_m}.")

    def margin_of(self, norms: Tensor) -> Tensor:
        """(B, 1) ‖x‖ -> (B, 1) margin m(a) in radians, a = clip(‖x‖, l_a, u_a)."""
        a = norms.clamp(min=self.l_a, max=self.u_a)
        return (self.u_m - self.l_m) / (self.u_a - self.l_a) * (a - self.l_a) + self.l_m

    def forward(self, cos: Tensor, labels: Tensor, norms: Tensor) -> Tensor:
        s = self.scale
        margin = self.margin_of(norms)  # (B, 1), with the gradient to ‖x‖
        return margin_logits(cos, labels, s, lambda c, m: s * arc_target(c, m), margin)

    def regularizer(self, x: Tensor) -> Tensor:
        """(B, D) embeddings -> scalar λ_g·mean(a/u_a² + 1/a)."""
        a = torch.linalg.vector_norm(x, dim=1).clamp(min=self.l_a, max=self.u_a)
        return self.lambda_g * torch.mean(a / (self.u_a**2) + 1.0 / a)


class MagFaceHead(CosineMarginHead, margin=MagFaceMargin):
    """:class:`MagFaceMargin` over the class centres; see :class:`CosineMarginHead`."""
