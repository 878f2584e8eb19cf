"""Triplet loss with online mining (batch-hard, batch-all, FaceNet semi-hard).

FaceNet (Schroff et al. 2015): L = [d(a, p) − d(a, n) + α]₊, α = 0.2; Hermans et al. 2017:
batch-hard and batch-all mining on P×K batches and the soft margin log(1 + exp(·)). The exact
mining and averaging rules are in :mod:`facerec.mining.triplets`.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from facerec.errors import ConfigError
from facerec.losses.base import MetricLoss
from facerec.mining import (
    DEFAULT_CHUNK_ELEMENTS,
    Distance,
    Fallback,
    Mining,
    check_mining,
    mined_triplet_loss,
    triplet_loss_from_triplets,
)
from facerec.mining.offline import batch_layout_triplets

Offline = Literal["off", "instead", "alongside"]


class TripletLoss(MetricLoss):
    """Triplet margin loss over the (gathered) batch with online mining.

    Args:
        margin: α in [d_ap − d_an + α]₊ (≥ 0). Not used when ``soft_margin`` is true.
        mining: ``"batch_hard"`` (mean over anchors of the hardest positive/negative triplet),
            ``"batch_all"`` (mean over the active valid triplets) or ``"semi_hard"`` (FaceNet /
            TensorFlow: one negative per anchor-positive pair, mean over the pairs).
        distance: ``"euclidean"``, ``"squared_euclidean"`` or ``"cosine"`` (1 − cos).
        normalize: L2-normalise the embeddings first (FaceNet's hypersphere).
        soft_margin: use log(1 + exp(d_ap − d_an)) instead of the hinge (Hermans et al.).
        gather: under DDP, mine over the global batch (see :mod:`facerec.losses.base`).
        semi_hard_fallback: negative for a semi-hard pair without any d_an > d_ap: ``"largest"``
            d_an (TensorFlow, default) or ``"smallest"`` (the hardest negative).
        max_chunk_elements: bound on the (chunk, B) temporaries of batch-all and semi-hard.
        offline: ``"off"`` (online mining only), ``"instead"`` (the batch is offline-selected
            triplets laid out as [a, p, n, …] by ``OfflineTripletBatches`` (``data.sampler``); the
            loss is the mean of their terms and ``mining`` is not used) or ``"alongside"`` (those
            triplets' loss plus the online-mined loss on the same batch; the offline triplets'
            stats are logged with an ``offline_`` prefix).

    ``forward(embeddings (B, D), labels (B,)) -> scalar``. :attr:`stats` after a forward:
    ``active_fraction`` (share of the mined triplets with a non-zero hinge, or with d_ap > d_an
    under the soft margin), ``mean_d_ap``, ``mean_d_an`` and ``num_valid_triplets`` (the number
    of triplets the loss averages over before the active filter: every valid triplet for
    batch-all, one per anchor for batch-hard, one per anchor-positive pair for semi-hard).
    """

    def __init__(
        self,
        margin: float = 0.2,
        mining: Mining = "batch_hard",
        distance: Distance = "euclidean",
        normalize: bool = True,
        soft_margin: bool = False,
        gather: bool = True,
        semi_hard_fallback: Fallback = "largest",
        max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
        offline: Offline = "off",
    ) -> None:
        super().__init__(gather, distance, normalize)
        check_mining(mining)
        if offline not in ("off", "instead", "alongside"):
            raise ConfigError(
                f"unknown TripletLoss offline mode {offline!r}; expected 'off', 'instead' or "
                "'alongside'"
            )
        self.offline = offline
        if margin < 0:
            raise ConfigError(f"triplet margin must be >= 0, got {margin}")
        if semi_hard_fallback not in ("largest", "smallest"):
            raise ConfigError(
                f"unknown semi_hard_fallback {semi_hard_fallback!r}; expected 'largest' or "
                "'smallest'"
            )
        if max_chunk_elements < 1:
            raise ConfigError(f"max_chunk_elements must be >= 1, got {max_chunk_elements}")
        self.margin = float(margin)
        self.mining = mining
        self.soft_margin = soft_margin
        self.semi_hard_fallback = semi_hard_fallback
        self.max_chunk_elements = max_chunk_elements

    def compute(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss and stats on the whole batch ``embeddings`` (N, D), ``labels`` (N,)."""
        dist = self.distances(embeddings)  # (N, N)
        if self.offline != "off":
            off = triplet_loss_from_triplets(
                dist, batch_layout_triplets(labels), self.margin, self.soft_margin
            )
            if self.offline == "instead":
                return off.loss, off.stats()
        result = mined_triplet_loss(
            dist,
            labels,
            mining=self.mining,
            margin=self.margin,
            soft_margin=self.soft_margin,
            semi_hard_fallback=self.semi_hard_fallback,
            max_chunk_elements=self.max_chunk_elements,
        )
        if self.offline == "alongside":
            offline_stats = {f"offline_{k}": v for k, v in off.stats().items()}
            return result.loss + off.loss, {**result.stats(), **offline_stats}
        return result.loss, result.stats()

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, mining={self.mining!r}, distance={self.distance!r}, "
            f"normalize={self.normalize}, soft_margin={self.soft_margin}, gather={self.gather}, "
            f"offline={self.offline!r}"
        )
