"""ArcFace (Deng et al., CVPR 2019): additive angular margin, target logit s·cos(θ_y + m).

Sub-center ArcFace (Deng et al., ECCV 2020) is the same margin over K centres per class.
"""

from __future__ import annotations

import math

from torch import Tensor

from facerec.heads.base import CosineMarginHead, Margin, arc_target, check_float, margin_logits


class ArcFaceMargin(Margin):
    """Additive angular margin: logits s·cos θ_j for j ≠ y and s·cos(θ_y + m) for the target.

    Where θ_y + m > π (cos θ_y < cos(π − m)) the target becomes s·(cos θ_y − m·sin m), so it
    keeps decreasing in θ_y; with ``easy_margin`` the margin is applied only where cos θ_y > 0
    instead. Unlike insightface's current code (margin under ``torch.no_grad``, straight-through
    gradient, no fallback) the gradient goes through the margin exactly.

    Args:
        scale: s, default 64.0.
        margin: m in radians, default 0.5 (≈ 28.6°), in [0, π).
        easy_margin: default False.
    """

    def __init__(self, scale: float = 64.0, margin: float = 0.5, easy_margin: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        self.scale = check_float("scale", scale, name, low=0.0, low_open=True)
        self.margin = check_float("margin", margin, name, low=0.0, high=math.pi)
        self.easy_margin = bool(easy_margin)

    def forward(self, cos: Tensor, labels: Tensor, norms: Tensor) -> Tensor:
        s, m, easy = self.scale, self.margin, self.easy_margin
        return margin_logits(cos, labels, s, lambda c: s * arc_target(c, m, easy_margin=easy))


class ArcFaceHead(CosineMarginHead, margin=ArcFaceMargin):
    """:class:`ArcFaceMargin` over the class centres; see :class:`CosineMarginHead`."""


class SubCenterArcFaceHead(CosineMarginHead):
    """:class:`ArcFaceMargin` over the best of ``k`` sub-centres per class: ``weight`` row c·K + k
    is sub-centre k of class c (insightface's and pytorch-metric-learning's layout);
    cos θ_j = max_k cos(x, w_{j,k}), the gradient reaching the maximising sub-centre only.

    Args:
        k: sub-centres per class, default 3 (K times the matrix products).
        scale: s, as :class:`ArcFaceMargin`.
        margin: m in radians, as :class:`ArcFaceMargin`.
        easy_margin: as :class:`ArcFaceMargin`.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        k: int = 3,
        scale: float = 64.0,
        margin: float = 0.5,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embedding_dim, num_classes, ArcFaceMargin(scale, margin, easy_margin), k)
