"""Triplet network loss (Hoffer & Ailon 2015, "Deep metric learning using Triplet network").

For a triplet with d₊ = d(a, p) and d₋ = d(a, n), (d₊', d₋') = softmax(d₊, d₋) is compared with
the target (0, 1): L = d₊'² + (d₋' − 1)² = 2·σ(d₊ − d₋)², averaged over the triplets (no margin:
the gradient fades as σ(d₊ − d₋)² does). The triplets are mined on the batch
(:mod:`facerec.mining.triplets`) or, with ``offline: instead``, the batch's offline triplets.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from facerec.errors import ConfigError
from facerec.losses.base import MetricLoss
from facerec.mining import (
    DEFAULT_CHUNK_ELEMENTS,
    Distance,
    Fallback,
    TripletLossResult,
    batch_hard,
    label_masks,
    semi_hard,
    triplet_loss_from_triplets,
)
from facerec.mining.offline import batch_layout_triplets
from facerec.mining.triplets import _anchor_chunks, positives_table

TripletNetMining = Literal["batch_all", "batch_hard", "semi_hard"]
TRIPLETNET_MININGS: tuple[str, ...] = ("batch_all", "batch_hard", "semi_hard")


class TripletNetLoss(MetricLoss):
    """Hoffer & Ailon's triplet-network loss as a metric loss (see the module doc).

    Args:
        mining: ``batch_all`` (default), ``batch_hard`` or ``semi_hard``.
        offline: ``"off"`` (mine the batch) or ``"instead"`` (the batch's offline triplets).
        distance: ``euclidean`` (the paper's), ``squared_euclidean`` or ``cosine``.
        normalize: L2-normalise the embeddings first (the paper does not; with unit vectors
            d ≤ 2, so the softmax stays soft: consider ``normalize: false`` for the paper's setup).
        gather: under DDP, use the global batch (see :mod:`facerec.losses.base`).
        semi_hard_fallback: as :class:`~facerec.losses.TripletLoss`.
        max_chunk_elements: as :class:`~facerec.losses.TripletLoss`.

    ``forward(embeddings (B, D), labels (B,)) -> scalar``. :attr:`stats`: ``active_fraction``
    (share of the triplets still ordered wrongly, d₊ ≥ d₋), ``mean_d_ap``, ``mean_d_an``,
    ``num_valid_triplets``.
    """

    def __init__(
        self,
        mining: TripletNetMining = "batch_all",
        offline: Literal["off", "instead"] = "off",
        distance: Distance = "euclidean",
        normalize: bool = True,
        gather: bool = True,
        semi_hard_fallback: Fallback = "largest",
        max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    ) -> None:
        super().__init__(gather, distance, normalize)
        if mining not in TRIPLETNET_MININGS:
            raise ConfigError(
                f"unknown TripletNetLoss mining {mining!r}; expected one of {TRIPLETNET_MININGS}"
            )
        if offline not in ("off", "instead"):
            raise ConfigError(
                f"unknown TripletNetLoss offline mode {offline!r}; expected 'off' or 'instead'"
            )
        if semi_hard_fallback not in ("largest", "smallest"):
            raise ConfigError(
                f"unknown semi_hard_fallback {semi_hard_fallback!r}; expected 'largest' or "
                "'smallest'"
            )
        if max_chunk_elements < 1:
            raise ConfigError(f"max_chunk_elements must be >= 1, got {max_chunk_elements}")
        self.mining = mining
        self.offline = offline
        self.semi_hard_fallback = semi_hard_fallback
        self.max_chunk_elements = max_chunk_elements

    def compute(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss and stats on the whole batch ``embeddings`` (N, D), ``labels`` (N,)."""
        dist = self.distances(embeddings)  # (N, N)
        if self.offline == "instead":
            triplets = batch_layout_triplets(labels)
        elif self.mining == "batch_all":
            result = self._batch_all(dist, labels)
            return result.loss, result.stats()
        elif self.mining == "batch_hard":
            triplets = batch_hard(dist, labels)
        else:
            triplets = semi_hard(dist, labels, self.semi_hard_fallback, self.max_chunk_elements)
        result = triplet_loss_from_triplets(dist, triplets, 0.0, terms_fn=_terms)
        return result.loss, result.stats()

    def _batch_all(self, dist: Tensor, labels: Tensor) -> TripletLossResult:
        """Mean over every valid triplet, in chunks of anchors: O(B²·P_max) memory."""
        pos, neg = label_masks(labels)
        pos_index, pos_valid = positives_table(pos)  # (B, P)
        b, p_max = pos_index.shape
        d_pos = dist.gather(1, pos_index).masked_fill(~pos_valid, float("-inf"))  # (B, P)
        d_neg = dist.masked_fill(~neg, float("inf"))  # (B, B)
        total = dist.sum() * 0.0
        wrong = torch.zeros((), dtype=torch.long, device=dist.device)
        for rows in _anchor_chunks(b, p_max, self.max_chunk_elements):
            # (c, P, B); d₊ − d₋ = -inf on invalid combinations: a zero term, never counted wrong
            terms, wrong_x = _terms(d_pos[rows].unsqueeze(2), d_neg[rows].unsqueeze(1))
            total = total + terms.sum()
            wrong += wrong_x.sum()
        with torch.no_grad():
            n_pos, n_neg = pos_valid.sum(1), neg.sum(1)
            count = (n_pos * n_neg).sum()
            denom = count.clamp_min(1).to(dist.dtype)
            mean_ap = ((dist * pos).sum(1) * n_neg).sum() / denom
            mean_an = ((dist * neg).sum(1) * n_pos).sum() / denom
        return TripletLossResult(total / denom, count, wrong, mean_ap, mean_an)

    def extra_repr(self) -> str:
        return (
            f"mining={self.mining!r}, distance={self.distance!r}, normalize={self.normalize}, "
            f"gather={self.gather}"
        )


def _terms(d_ap: Tensor, d_an: Tensor) -> tuple[Tensor, Tensor]:
    """Per-triplet loss ‖softmax(d₊, d₋) − (0, 1)‖² = 2·σ(d₊ − d₋)² and "wrongly ordered" mask
    (d₊ ≥ d₋), any matching shapes."""
    return 2.0 * torch.sigmoid(d_ap - d_an) ** 2, d_ap >= d_an
