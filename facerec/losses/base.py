"""Common base of the metric-learning losses (triplet, contrastive, ...).

A :class:`MetricLoss` maps raw embeddings (B, D) and labels (B,) to a scalar loss, so it can be
used alone or added to a margin head's loss. After each forward, :attr:`MetricLoss.stats` holds
detached scalar tensors (what the LightningModule logs).

Global batch under DDP (``gather=True``)
----------------------------------------
With ``gather=True`` in a distributed run, every rank gathers the embeddings (with
:func:`facerec.base.distributed.all_gather_with_grad`: its own slice keeps its gradient, the others
are constants) and the labels of all ranks, in rank order, and computes the loss L over the *global*
batch, identical on every rank. Rank r's backward then yields ∂L/∂(its embeddings), the part of
the global gradient that flows through its own samples; DDP *averages* parameter gradients over
the W ranks, which would give (1/W)·∇L. So the returned loss is
``L + (W − 1)·(L − L.detach())``: its value is L (what gets logged) and its gradient is W·∇_local L,
so that after DDP's averaging the parameters receive exactly ∇L of the global-batch loss, as in a
single process on the concatenated batch. Every rank must pass the same batch size B (PKSampler
guarantees it; use ``drop_last`` otherwise). With ``gather=False`` each rank's loss covers its own
batch only, and DDP averages those per-rank gradients as for any other loss.
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

    Subclasses implement :meth:`compute` on the (possibly gathered) batch; ``forward`` checks the
    inputs, gathers under DDP, runs :meth:`compute` in float32 with autocast off (half-precision
    embeddings are upcast), records :attr:`stats` and applies the DDP gradient scaling.
    ``distance`` and ``normalize`` are what :meth:`distances` computes.
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
        return scale_gradient(loss, float(world)) if world > 1 else loss


def scale_gradient(loss: Tensor, factor: float) -> Tensor:
    """Same value as ``loss``, gradient multiplied by ``factor``: L + (f − 1)·(L − L.detach())."""
    return loss + (factor - 1.0) * (loss - loss.detach())


__all__ = ["MetricLoss", "scale_gradient"]
