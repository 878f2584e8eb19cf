"""CenterLoss (Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition",
ECCV 2016): pull each embedding towards a running centre of its class."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facerec.base.distributed import all_gather_nograd
from facerec.errors import FacerecError
from facerec.heads.base import check_batch, check_float, check_positive_int


class CenterLoss(nn.Module):
    """L_c = ½·(1/B)·Σ_i ‖x_i − c_{y_i}‖², with centres updated by the paper's rule, not by SGD.

    Averaged over the batch as in Wen et al.'s Caffe layer; the caller multiplies it by λ and adds
    it to the softmax loss. No gradient flows into the centres: they are a buffer (zeros at start,
    in the state_dict, C·D·4 bytes on every rank), moved in training mode by c_j ← c_j − α·Δc_j,
    Δc_j = Σ_{i: y_i = j}(c_j − x_i)/(1 + n_j), over the GLOBAL batch (all-gathered; every rank
    passes the same B and applies the same deterministic update).

    Args: ``num_classes`` C, ``embedding_dim`` D, ``alpha`` α in [0, 1]. Shapes: embeddings
    (B, D) (computed in float32), labels (B,) int64 in [0, C) -> scalar float32 loss.
    """

    centers: Tensor

    def __init__(self, num_classes: int, embedding_dim: int, alpha: float = 0.5) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes, "CenterLoss")
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim, "CenterLoss")
        self.alpha = check_float("alpha", alpha, "CenterLoss", low=0.0, high=1.0)
        self.register_buffer("centers", torch.zeros(num_classes, embedding_dim))

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, "
            f"alpha={self.alpha}"
        )

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """(B, D) embeddings, (B,) int64 labels -> scalar loss; then, in training, the update."""
        check_batch("CenterLoss", embeddings, labels, self.embedding_dim)
        if labels.is_floating_point() or labels.is_complex():
            raise FacerecError(
                f"CenterLoss: labels must be integer class indices, got {labels.dtype}."
            )
        labels = labels.long()
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = embeddings.to(dtype)
            diff = x - self.centers.index_select(0, labels).to(dtype)  # (B, D)
            loss = 0.5 * diff.pow(2).sum(dim=1).mean()
            if self.training:
                self._update(x.detach(), labels)
        return loss

    @torch.no_grad()
    def _update(self, x: Tensor, labels: Tensor) -> None:
        """c_j ← c_j − α·Σ_{i: y_i = j}(c_j − x_i)/(1 + n_j) over the global batch, by an (N, N)
        same-label product (deterministic: no atomic adds whose order could differ by rank)."""
        x = all_gather_nograd(x)  # (N, D)
        labels = all_gather_nograd(labels)  # (N,)
        centers = self.centers.index_select(0, labels).to(x.dtype)  # (N, D) c_{y_i}
        same = (labels.unsqueeze(0) == labels.unsqueeze(1)).to(x.dtype)  # (N, N)
        count = same.sum(dim=1, keepdim=True)  # (N, 1) n_{y_i}
        # Σ_{k: y_k = y_i}(c_{y_i} − x_k) = n_{y_i}·c_{y_i} − Σ_{k: y_k = y_i} x_k
        delta = (count * centers - same @ x) / (1.0 + count)  # (N, D) Δc_{y_i}
        new = (centers - self.alpha * delta).to(self.centers.dtype)
        # Take every class's value from its first row, so that rows with the same label write
        # bit-identical values and the (unspecified) order of duplicate writes cannot matter.
        first = same.argmax(dim=1)  # first index k with y_k = y_i
        self.centers.index_copy_(0, labels, new.index_select(0, first))
