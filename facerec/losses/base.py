"""Common base of the metric-learning losses (triplet, contrastive, ...).

Under DDP with ``gather=True`` every rank computes the loss L on the global batch (embeddings
gathered with :func:`facerec.base.distributed.all_gather_with_grad`, in rank order; every rank
must pass the same B) and returns ``L + (W − 1)·(L − L.detach())``: value L, gradient W·∇_local L,
so that after DDP averages over the W ranks the parameters get exactly ∇L, as in one process.
With ``gather=False`` each rank's loss covers its own batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerec.base import distributed
from facerec.errors import FacerecError
from facerec.mining import Distance, check_distance, pairwise_distances


class MetricLoss(nn.Module, ABC):
    """Base class: ``forward(embeddings (B, D) raw, labels (B,)) -> scalar Tensor``.

    Subclasses implement :meth:`compute` on the (gathered) batch, which ``forward`` runs in
    float32 with autocast off; :attr:`stats` then holds its detached scalars (logged).
    """

    stats: dict[str, Tensor]

    def __init__(
        self, gather: bool = True, distance: Distance = "euclidean", normalize: bool = True
    ) -> None:
        super().__init__()
        check_distance(distance)
        self.gather = gather
        self.distance = distance
        self.normalize = normalize
        self.stats = {}

    def distances(self, embeddings: Tensor) -> Tensor:
        """(N, D) -> (N, N) ``distance`` between the rows (L2-normalised first if ``normalize``)."""
        if self.normalize:
            embeddings = F.normalize(embeddings, dim=1)
        return pairwise_distances(embeddings, distance=self.distance)

    @abstractmethod
    def compute(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss (scalar) and detached scalar statistics on a whole batch (N, D), (N,)."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Scalar loss of ``embeddings`` (B, D) with ``labels`` (B,); sets :attr:`stats`."""
        name = type(self).__name__
        if embeddings.ndim != 2:
            raise FacerecError(
                f"{name} expects embeddings of shape (B, D), got {tuple(embeddings.shape)}"
            )
        if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
            raise FacerecError(
                f"{name} expects labels of shape (B,) = ({embeddings.shape[0]},) matching the "
                f"embeddings, got {tuple(labels.shape)}"
            )
        if labels.is_floating_point() or labels.is_complex():
            raise FacerecError(f"{name} expects integer class labels, got dtype {labels.dtype}")
        world = distributed.world_size() if self.gather else 1
        if world > 1:
            embeddings = distributed.all_gather_with_grad(embeddings)
            labels = distributed.all_gather_nograd(labels)
        # Distances from half-precision dot products are too coarse to mine on (2 − 2·cos loses
        # ~1e-3): compute in float32 whatever the autocast context.
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            if embeddings.dtype in (torch.float16, torch.bfloat16):
                embeddings = embeddings.float()
            loss, stats = self.compute(embeddings, labels)
        self.stats = {k: v.detach() for k, v in stats.items()}
        return loss + (world - 1.0) * (loss - loss.detach()) if world > 1 else loss
