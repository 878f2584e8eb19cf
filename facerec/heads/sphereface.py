"""SphereFace / A-Softmax (Liu et al., CVPR 2017): multiplicative angular margin with annealing."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facerec.errors import ConfigError
from facerec.heads.base import (
    CosineMarginHead,
    Margin,
    check_float,
    check_positive_int,
    margin_logits,
)


def chebyshev_cos_multiple(cos_t: Tensor, m: int) -> Tensor:
    """cos(m·θ) from cos θ by the Chebyshev recurrence T_{n+1} = 2c·T_n − T_{n−1} (any shape)."""
    prev, cur = torch.ones_like(cos_t), cos_t
    for _ in range(m - 1):
        prev, cur = cur, 2.0 * cos_t * cur - prev
    return cur if m else prev


def sphereface_psi(cos_t: Tensor, m: int) -> Tensor:
    """ψ(θ) = (−1)^k·cos(mθ) − 2k with k = ⌊θ·m/π⌋ ∈ {0..m−1}, from cos θ (any shape).

    k counts the thresholds cos(jπ/m), j = 1..m−1, at or above cos θ (no arccos, no gradient).
    """
    k = torch.zeros_like(cos_t)
    for j in range(1, m):
        k = k + (cos_t <= math.cos(j * math.pi / m)).to(cos_t.dtype)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)  # (−1)^k
    return sign * chebyshev_cos_multiple(cos_t, m) - 2.0 * k


class SphereFaceMargin(Margin):
    """A-Softmax margin with the annealed target of the released Caffe code.

    Target logit ‖x‖·(λ·cos θ_y + ψ(θ_y))/(1 + λ), other logits ‖x‖·cos θ_j, where
    ψ(θ) = (−1)^k·cos(mθ) − 2k, k = ⌊θm/π⌋ and
    λ = max(lambda_min, base·(1 + gamma·iteration)^(−power)). ``iteration`` is a buffer (saved
    in the state_dict) read before and incremented once by each training-mode call of
    :meth:`forward`, so the first step uses λ = base (as the Caffe layer's counter, it
    counts forward passes: with gradient accumulation, micro-batches). Every DDP rank makes the
    same calls, so λ is the same on every rank. With ``base = lambda_min = 0`` the
    target is ‖x‖·ψ(θ_y), pytorch-metric-learning's SphereFaceLoss (which has no λ).

    ``feature_norm=True`` gives the F-Norm variant: ‖x‖ is replaced by the fixed scale s
    everywhere (normalised features). In the default W-Norm form the gradient flows through ‖x‖.

    Args:
        margin: integer multiplicative angular margin m >= 1 (θ_y is multiplied by m; θ in
            radians), default 4.
        base: λ at iteration 0, default 1000.0.
        gamma: default 0.12.
        power: default 1.0.
        lambda_min: floor of λ, default 5.0.
        feature_norm: default False.
        scale: s for the F-Norm variant, default 64.0 (unused otherwise).
    """

    iteration: Tensor

    def __init__(
        self,
        margin: int = 4,
        base: float = 1000.0,
        gamma: float = 0.12,
        power: float = 1.0,
        lambda_min: float = 5.0,
        feature_norm: bool = False,
        scale: float = 64.0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(margin, float) and margin.is_integer():
            margin = int(margin)
        self.margin = check_positive_int("margin", margin, name)
        if self.margin > 16:
            raise ConfigError(f"{name}: margin must be an integer in [1, 16], got {margin!r}.")
        self.base = check_float("base", base, name, low=0.0)
        self.gamma = check_float("gamma", gamma, name, low=0.0)
        self.power = check_float("power", power, name, low=0.0)
        self.lambda_min = check_float("lambda_min", lambda_min, name, low=0.0)
        self.feature_norm = bool(feature_norm)
        self.scale = check_float("scale", scale, name, low=0.0, low_open=True)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.int64))

    def current_lambda(self) -> Tensor:
        """λ for the current ``iteration`` (0-d float64)."""
        it = self.iteration.to(torch.float64)
        lam = self.base * torch.pow(1.0 + self.gamma * it, -self.power)
        return torch.clamp(lam, min=self.lambda_min)

    def forward(self, cos: Tensor, labels: Tensor, norms: Tensor) -> Tensor:
        lam = self.current_lambda().to(cos.dtype)
        if self.training:
            self.iteration += 1
        m = self.margin

        def mixed(c: Tensor) -> Tensor:
            return (lam * c + sphereface_psi(c, m)) / (1.0 + lam)

        if self.feature_norm:
            s = self.scale
            return margin_logits(cos, labels, s, lambda c: s * mixed(c))
        return margin_logits(cos, labels, norms, lambda c, n: n * mixed(c), norms)


class SphereFaceHead(CosineMarginHead, margin=SphereFaceMargin):
    """:class:`SphereFaceMargin` over the class centres; see :class:`CosineMarginHead`."""
