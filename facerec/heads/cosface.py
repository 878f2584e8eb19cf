"""CosFace / AM-Softmax (Wang et al., 2018): additive cosine margin, target s·(cos θ_y − m)."""

from __future__ import annotations

from torch import Tensor

from facerec.heads.base import CosineMarginHead, Margin, check_float, margin_logits


class CosFaceMargin(Margin):
    """Additive cosine margin: logits s·cos θ_j, target s·(cos θ_y − m).

    Args:
        scale: s, default 64.0.
        margin: m (a cosine offset, dimensionless), default 0.35 (AM-Softmax paper: s = 30,
            m = 0.35; insightface's CosFace configs use m = 0.4).
    """

    def __init__(self, scale: float = 64.0, margin: float = 0.35) -> None:
        super().__init__()
        name = type(self).__name__
        self.scale = check_float("scale", scale, name, low=0.0, low_open=True)
        self.margin = check_float("margin", margin, name, low=0.0, high=2.0)

    def forward(self, cos: Tensor, labels: Tensor, norms: Tensor) -> Tensor:
        s, m = self.scale, self.margin
        return margin_logits(cos, labels, s, lambda c: s * (c - m))


class CosFaceHead(CosineMarginHead, margin=CosFaceMargin):
    """:class:`CosFaceMargin` over the class centres; see :class:`CosineMarginHead`."""
