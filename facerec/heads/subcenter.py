"""Sub-center ArcFace (Deng et al., ECCV 2020): K centres per class, ArcFace on the closest."""

from __future__ import annotations

import math

from torch import Tensor

from facerec.heads.base import (
    CosineMarginHead,
    _check_float,
    _check_positive_int,
    arc_target,
    margin_logits,
    normalized_cosine,
)

__all__ = ["SubCenterArcFaceHead"]


class SubCenterArcFaceHead(CosineMarginHead):
    """ArcFace over the best of K sub-centres per class.

    ``weight`` is (num_classes·K, D); row c·K + k is sub-centre k of class c (the layout of
    insightface and of pytorch-metric-learning's SubCenterArcFaceLoss, whose W is this
    transposed). cos θ_j = max_k cos(x, w_{j,k}); the gradient goes to the maximising
    sub-centre only. Then ArcFace exactly as :class:`~facerec.heads.ArcFaceHead`.

    Args:
        embedding_dim: D.
        num_classes: C.
        k: sub-centres per class, default 3.
        scale: s, default 64.0.
        margin: m in radians, default 0.5.
        easy_margin: default False.

    Shapes: embeddings (B, D), labels (B,) int64 -> logits (B, C) float32. Costs K times the
    matrix products and a (B, C·K) intermediate.
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
        name = type(self).__name__
        k = _check_positive_int("k", k, name)
        super().__init__(embedding_dim, num_classes, centres_per_class=k)
        self.k = k
        self.scale = _check_float("scale", scale, name, low=0.0, low_open=True)
        self.margin = _check_float("margin", margin, name, low=0.0, high=math.pi)
        self.easy_margin = bool(easy_margin)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, k={self.k}, scale={self.scale}, margin={self.margin}, "
            f"easy_margin={self.easy_margin}"
        )

    def _class_cosine(self, x: Tensor, weight: Tensor) -> Tensor:
        """(B, D), (C·K, D) -> (B, C): the maximum cosine over each class's sub-centres."""
        cos = normalized_cosine(x, weight)
        if self.k == 1:
            return cos
        return cos.view(x.shape[0], -1, self.k).max(dim=2).values

    def apply_margin(self, cos: Tensor, labels: Tensor, norms: Tensor) -> Tensor:
        """(B, C') class cosines, (B,) labels (−1 = no target here), (B, 1) norms -> logits."""
        s, m, easy = self.scale, self.margin, self.easy_margin
        return margin_logits(cos, labels, s, lambda c: s * arc_target(c, m, easy_margin=easy))
