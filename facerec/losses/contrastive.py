"""Contrastive loss (Hadsell, Chopra & LeCun 2006) over every pair of the (gathered) batch.

L = (1 − Y)·½·max(0, D − m₊)² + Y·½·max(0, m − D)² (Y = 1 for a dissimilar pair, D the
distance), averaged over all B·(B − 1)/2 pairs i < j, zero terms included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from facerec.errors import ConfigError
from facerec.losses.base import MetricLoss
from facerec.mining import Distance


class ContrastiveLoss(MetricLoss):
    """Hadsell et al.'s contrastive loss, averaged over all pairs of the batch.

    Args:
        margin: m, dissimilar pairs closer than m are pushed apart (> 0).
        pos_margin: m₊ ≥ 0, similar pairs closer than m₊ are left alone (0: the paper's ½·D²).
        distance: ``"euclidean"`` (the paper's), ``"squared_euclidean"`` or ``"cosine"``.
        normalize: L2-normalise the embeddings first.
        gather: under DDP, use every pair of the global batch (see :mod:`facerec.losses.base`).

    ``forward(embeddings (B, D), labels (B,)) -> scalar``. :attr:`stats` after a forward:
    ``active_fraction`` (share of the pairs with a non-zero term), ``mean_d_pos``,
    ``mean_d_neg`` (mean distance of the similar / dissimilar pairs), ``num_pairs``,
    ``num_pos_pairs``.
    """

    def __init__(
        self,
        margin: float = 1.0,
        pos_margin: float = 0.0,
        distance: Distance = "euclidean",
        normalize: bool = True,
        gather: bool = True,
    ) -> None:
        super().__init__(gather, distance, normalize)
        if margin <= 0:
            raise ConfigError(f"contrastive margin must be > 0, got {margin}")
        if pos_margin < 0 or pos_margin >= margin:
            raise ConfigError(
                f"contrastive pos_margin must be in [0, margin={margin}), got {pos_margin}"
            )
        self.margin = float(margin)
        self.pos_margin = float(pos_margin)

    def compute(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss and stats on the whole batch ``embeddings`` (N, D), ``labels`` (N,)."""
        n = embeddings.shape[0]
        dist = self.distances(embeddings)  # (N, N)
        upper = torch.ones(n, n, dtype=torch.bool, device=dist.device).triu_(diagonal=1)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        pos, neg = same & upper, ~same & upper
        hinge = torch.where(same, F.relu(dist - self.pos_margin), F.relu(self.margin - dist))
        terms = 0.5 * hinge**2  # (N, N)
        num_pairs = upper.sum()
        loss = dist.sum() * 0.0 if n < 2 else terms[upper].sum() / num_pairs
        with torch.no_grad():
            num_pos, num_neg = pos.sum(), neg.sum()
            return loss, {
                "active_fraction": ((terms > 0) & upper).sum()
                / num_pairs.clamp_min(1).to(dist.dtype),
                "mean_d_pos": (dist * pos).sum() / num_pos.clamp_min(1).to(dist.dtype),
                "mean_d_neg": (dist * neg).sum() / num_neg.clamp_min(1).to(dist.dtype),
                "num_pairs": num_pairs,
                "num_pos_pairs": num_pos,
            }

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, pos_margin={self.pos_margin}, distance={self.distance!r}, "
            f"normalize={self.normalize}, gather={self.gather}"
        )
