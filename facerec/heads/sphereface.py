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
    if m == 0:
        return prev
    for _ in range(m - 1):
        prev, cur = cur, 2.0 * cos_t * cur - prev
    return cur


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

    Target ‖x‖·(λ·cos θ_y + ψ(θ_y))/(1 + λ), others ‖x‖·cos θ_j, with integer ``margin`` m and
    λ = max(lambda_min, base·(1 + gamma·iteration)^(−power)); the buffer ``iteration`` counts
    training-mode forward calls (after reading it). ``feature_norm``: ‖x‖ is replaced by the
    fixed ``scale`` s (F-Norm).
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
