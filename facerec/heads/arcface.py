"""ArcFace (Deng et al., CVPR 2019): additive angular margin, target logit s·cos(θ_y + m)."""

from __future__ import annotations

import math

from torch import Tensor

from facerec.heads.base import (
    CosineMarginHead,
    _check_float,
    arc_target,
    margin_logits,
)

__all__ = ["ArcFaceHead"]


class ArcFaceHead(CosineMarginHead):
    """Additive angular margin head.

    Logits: s·cos θ_j for j ≠ y and s·cos(θ_y + m) for the target, where θ is the angle between
    the embedding and the L2-normalised class centre. Where θ_y + m > π (cos θ_y < cos(π − m))
    the target becomes s·(cos θ_y − m·sin m), so it keeps decreasing in θ_y; with
    ``easy_margin`` the margin is applied only where cos θ_y > 0 instead. Unlike insightface's
    current code (margin under ``torch.no_grad``, straight-through gradient, no fallback) the
    gradient goes through the margin exactly.

    Args:
        embedding_dim: D.
        num_classes: C.
        scale: s, default 64.0.
        margin: m in radians, default 0.5 (≈ 28.6°), in [0, π).
        easy_margin: default False.

    Shapes: embeddings (B, D) float (any dtype), labels (B,) int64 -> logits (B, C) float32.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.5,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        name = type(self).__name__
        self.scale = _check_float("scale", scale, name, low=0.0, low_open=True)
        self.margin = _check_float("margin", margin, name, low=0.0, high=math.pi)
        self.easy_margin = bool(easy_margin)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, scale={self.scale}, margin={self.margin}, "
            f"easy_margin={self.easy_margin}"
        )

    def apply_margin(self, cos: Tensor, labels: Tensor, norms: Tensor) -> Tensor:
        """(B, C') cosines, (B,) labels (−1 = no target here), (B, 1) norms (unused) -> logits."""
        s, m, easy = self.scale, self.margin, self.easy_margin
        return margin_logits(cos, labels, s, lambda c: s * arc_target(c, m, easy_margin=easy))
