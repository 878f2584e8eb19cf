"""Plain softmax classifier and NormFace (Wang et al., 2017) normalised softmax."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerec.heads.base import CosineMarginHead, Margin, MarginHead, check_float, compute_dtype


class SoftmaxHead(MarginHead):
    """Plain linear classifier with bias: logits = x·Wᵀ + b (labels ignored)."""

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__(embedding_dim, num_classes)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim).normal_(0.0, 0.01))
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        self._check_inputs(embeddings, labels)
        dtype = compute_dtype(embeddings)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return F.linear(embeddings.to(dtype), self.weight.to(dtype), self.bias.to(dtype))


class NormFaceMargin(Margin):
    """NormFace: softmax with L2-normalised class weights and no bias; no margin.

    * W-Norm (``feature_norm=False``, default): logit_j = ‖x‖·cos θ_j (= x·ŵ_j); the gradient
      goes through ‖x‖ and ``scale`` is unused.
    * F-Norm (``feature_norm=True``): features normalised too, logit_j = s·cos θ_j. NormFace
      showed a fixed s is needed for the normalised softmax to converge; 30 is our default (the
      AM-Softmax value), not a number from the NormFace paper, which also learns s.

    Args:
        feature_norm: pick F-Norm instead of W-Norm, default False.
        scale: s for F-Norm, default 30.0.
    """

    def __init__(self, feature_norm: bool = False, scale: float = 30.0) -> None:
        super().__init__()
        self.feature_norm = bool(feature_norm)
        self.scale = check_float("scale", scale, type(self).__name__, low=0.0, low_open=True)

    def forward(self, cos: Tensor, labels: Tensor, norms: Tensor) -> Tensor:
        return cos * self.scale if self.feature_norm else cos * norms


class NormFaceHead(CosineMarginHead, margin=NormFaceMargin):
    """:class:`NormFaceMargin` over the class centres; see :class:`CosineMarginHead`."""
