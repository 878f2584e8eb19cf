"""Online triplet mining on a (B, B) distance matrix, vectorised, in O(B²) memory.

A *valid triplet* (a, p, n) has a ≠ p, y_a = y_p ≠ y_n; d_ap = dist[a, p], d_an = dist[a, n].
Its term is the hinge [d_ap − d_an + α]₊ (*active* when positive) or the soft margin
log(1 + exp(d_ap − d_an)) (*active* when d_ap > d_an). ``tests/mining_reference.py`` spells out
each strategy as a plain loop:

* **batch-all**: every valid triplet; hinge: the sum over active triplets / their number (0 when
  none), soft margin: the mean over all valid triplets.
* **batch-hard**: per anchor with a positive and a negative, the largest d_ap and smallest d_an;
  the mean over those anchors.
* **semi-hard** (TensorFlow's ``triplet_semihard_loss``): per anchor-positive pair whose anchor has
  a negative, the negative with the smallest d_an > d_ap (strictly); if there is none, the
  fallback: ``"largest"`` d_an (TensorFlow) or ``"smallest"``. The mean over all the pairs.

Ties go to the lowest index. Batch-all and semi-hard walk the anchors in chunks of (chunk, P_max,
B) "d_ap − d_an" slices (P_max = most positives of an anchor), at most ``max_chunk_elements``
each. Batch-all differentiates analytically: its gradient with respect to ``dist`` is a (B, B)
weight matrix attached by a small autograd function (first derivatives only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from facerec.errors import ConfigError, FacerecError

Mining = Literal["batch_hard", "batch_all", "semi_hard"]
MININGS: tuple[str, ...] = ("batch_hard", "batch_all", "semi_hard")
Fallback = Literal["largest", "smallest"]
DEFAULT_CHUNK_ELEMENTS = 1 << 22  # 4 Mi elements: 16 MiB per float32 temporary


class Triplets(NamedTuple):
    """Index triplets into the batch, each (T,) int64."""

    anchor: Tensor
    positive: Tensor
    negative: Tensor


@dataclass
class TripletLossResult:
    """A mined triplet loss and its statistics (scalars; all but ``loss`` carry no gradient):
    the triplets the loss is defined over, how many are active, and their mean d_ap and d_an."""

    loss: Tensor
    num_triplets: Tensor
    num_active: Tensor
    mean_d_ap: Tensor
    mean_d_an: Tensor

    def stats(self) -> dict[str, Tensor]:
        """Detached scalars: active_fraction, mean_d_ap, mean_d_an, num_valid_triplets."""
        n = self.num_triplets.to(self.mean_d_ap.dtype)
        return {
            "active_fraction": (self.num_active.to(n.dtype) / n.clamp_min(1)).detach(),
            "mean_d_ap": self.mean_d_ap.detach(),
            "mean_d_an": self.mean_d_an.detach(),
            "num_valid_triplets": self.num_triplets.detach().to(n.dtype),
        }


def check_mining(mining: str) -> None:
    """Raise :class:`ConfigError` unless ``mining`` is one of :data:`MININGS`."""
    if mining not in MININGS:
        raise ConfigError(
            f"unknown triplet mining {mining!r}; expected one of {', '.join(map(repr, MININGS))}"
        )


def _check_inputs(dist: Tensor, labels: Tensor) -> None:
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise FacerecError(f"distance matrix must be square (B, B), got shape {tuple(dist.shape)}")
    if labels.ndim != 1 or labels.shape[0] != dist.shape[0]:
        raise FacerecError(
            f"labels must be (B,) = ({dist.shape[0]},) to match the distance matrix, "
            f"got shape {tuple(labels.shape)}"
        )


def label_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(positive, negative) boolean masks (B, B): same label off the diagonal; different label."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def positives_table(pos: Tensor) -> tuple[Tensor, Tensor]:
    """Each anchor's positives, from the (B, B) positive mask: ``index`` (B, P_max) int64 in
    ascending order, padded with the anchor's own index, and ``valid`` (B, P_max) bool."""
    b = pos.shape[0]
    counts = pos.sum(dim=1)
    p_max = int(counts.max()) if b else 0
    valid = torch.arange(p_max, device=pos.device) < counts.unsqueeze(1)
    index = torch.arange(b, device=pos.device).unsqueeze(1).repeat(1, p_max)
    # both in row-major order: row r's first counts[r] slots take its positives, ascending
    index[valid] = torch.nonzero(pos, as_tuple=True)[1]
    return index, valid


def _anchor_chunks(batch: int, p_max: int, max_chunk_elements: int) -> list[slice]:
    """Slices of anchors such that a (chunk, p_max, batch) temporary stays within the bound."""
    step = max(1, max_chunk_elements // max(batch * p_max, 1))
    return [slice(s, s + step) for s in range(0, batch if p_max else 0, step)]


def batch_hard(dist: Tensor, labels: Tensor) -> Triplets:
    """Batch-hard :class:`Triplets` of ``dist`` (B, B), ``labels`` (B,), anchors ascending."""
    _check_inputs(dist, labels)
    with torch.no_grad():
        pos, neg = label_masks(labels)
        hardest_pos = dist.masked_fill(~pos, float("-inf")).argmax(dim=1)
        hardest_neg = dist.masked_fill(~neg, float("inf")).argmin(dim=1)
        anchors = torch.nonzero(pos.any(dim=1) & neg.any(dim=1)).squeeze(1)
        return Triplets(anchors, hardest_pos[anchors], hardest_neg[anchors])


def semi_hard(
    dist: Tensor,
    labels: Tensor,
    fallback: Fallback = "largest",
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Triplets:
    """Semi-hard :class:`Triplets` of ``dist`` (B, B), ``labels`` (B,), in (anchor, positive)
    order."""
    _check_inputs(dist, labels)
    if fallback not in ("largest", "smallest"):
        raise ConfigError(
            f"unknown semi-hard fallback {fallback!r}; expected 'largest' or 'smallest'"
        )
    with torch.no_grad():
        pos, neg = label_masks(labels)
        pos_index, pos_valid = positives_table(pos)  # (B, P)
        pos_valid &= neg.any(dim=1, keepdim=True)  # the anchor needs a negative
        d_neg = dist.masked_fill(~neg, float("inf"))  # (B, B): only negatives are finite
        if fallback == "largest":
            fallback_neg = dist.masked_fill(~neg, float("-inf")).argmax(dim=1)  # (B,)
        else:
            fallback_neg = d_neg.argmin(dim=1)
        neg_index = torch.zeros_like(pos_index)  # (B, P)
        b, p_max = pos_index.shape
        for rows in _anchor_chunks(b, p_max, max_chunk_elements):
            d_an = d_neg[rows].unsqueeze(1)  # (c, 1, B)
            d_ap = dist[rows].gather(1, pos_index[rows]).unsqueeze(2)  # (c, P, 1)
            # nearest negative with d_an > d_ap; +inf where there is none
            nearest, nearest_idx = torch.where(d_an > d_ap, d_an, float("inf")).min(dim=2)
            neg_index[rows] = torch.where(
                nearest < float("inf"), nearest_idx, fallback_neg[rows].unsqueeze(1)
            )
        anchors = torch.arange(b, device=dist.device).unsqueeze(1).expand(b, p_max)
        return Triplets(anchors[pos_valid], pos_index[pos_valid], neg_index[pos_valid])


def _terms(d_ap: Tensor, d_an: Tensor, margin: float, soft_margin: bool) -> tuple[Tensor, Tensor]:
    """Per-triplet loss terms and active mask (any matching shapes)."""
    x = d_ap - d_an if soft_margin else d_ap - d_an + margin
    return (F.softplus(x) if soft_margin else F.relu(x)), x > 0


def triplet_loss_from_triplets(
    dist: Tensor,
    triplets: Triplets,
    margin: float,
    soft_margin: bool = False,
    terms_fn: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
) -> TripletLossResult:
    """Mean of the per-triplet terms over ``triplets`` (0, still attached to ``dist``, if none).

    ``terms_fn(d_ap, d_an) -> (terms, active)`` replaces the hinge / soft margin. Differentiable
    with respect to ``dist`` (B, B).
    """
    a, p, n = triplets
    d_ap, d_an = dist[a, p], dist[a, n]  # (T,)
    if terms_fn is None:
        terms, active = _terms(d_ap, d_an, margin, soft_margin)
    else:
        terms, active = terms_fn(d_ap, d_an)
    count = torch.tensor(a.shape[0], device=dist.device)
    if a.shape[0] == 0:
        zero = dist.sum() * 0.0
        return TripletLossResult(zero, count, count.clone(), zero.detach(), zero.detach())
    return TripletLossResult(
        terms.mean(), count, active.sum(), d_ap.detach().mean(), d_an.detach().mean()
    )


def batch_all(
    dist: Tensor,
    labels: Tensor,
    margin: float,
    soft_margin: bool = False,
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> TripletLossResult:
    """Batch-all triplet loss of ``dist`` (B, B), ``labels`` (B,), in chunks of anchors."""
    _check_inputs(dist, labels)
    device = dist.device
    acc = torch.float64 if device.type != "mps" else torch.float32
    with torch.no_grad():
        pos, neg = label_masks(labels)
        # sums and comparisons in at least float32
        d = dist.float() if dist.dtype in (torch.float16, torch.bfloat16) else dist
        pos_index, pos_valid = positives_table(pos)  # (B, P)
        n_pos = pos_valid.sum(dim=1)  # (B,)
        n_neg = neg.sum(dim=1)  # (B,)
        # Invalid combinations become -inf (d_ap = -inf on padding, d_an = +inf on non-negatives),
        # so their hinge, softplus and sigmoid are all exactly 0 without a (c, P, B) mask.
        d_neg = d.masked_fill(~neg, float("inf"))  # (B, B)
        d_pos = d.gather(1, pos_index).masked_fill(~pos_valid, float("-inf"))  # (B, P)
        if not soft_margin:
            d_pos = d_pos + margin
        weights = torch.zeros_like(d)  # d loss_sum / d dist, before normalisation
        total = torch.zeros((), dtype=acc, device=device)
        n_active = torch.zeros((), dtype=torch.long, device=device)
        b, p_max = pos_index.shape
        for rows in _anchor_chunks(b, p_max, max_chunk_elements):
            x = d_pos[rows].unsqueeze(2) - d_neg[rows].unsqueeze(1)  # (c, P, B): d_ap (+α) - d_an
            if soft_margin:
                total += F.softplus(x).sum().to(acc)
                grad = torch.sigmoid(x)  # d softplus(x)/dx
                n_active += (x > 0).sum()
            else:
                grad = (x > 0).to(d.dtype)  # d [x]+/dx
                total += x.clamp_min_(0).sum().to(acc)
                n_active += grad.sum().to(torch.long)
            # d term/d d_ap = grad, d term/d d_an = -grad; the padding scatters 0 on the diagonal
            weights[rows] = (-grad.sum(dim=1)).scatter_add_(1, pos_index[rows], grad.sum(dim=2))
        n_valid = (n_pos * n_neg).sum()
        safe_norm = (n_valid if soft_margin else n_active).clamp_min(1).to(acc)
        value = (total / safe_norm).to(dist.dtype)
        w = (weights / safe_norm.to(weights.dtype)).to(dist.dtype)
        # mean d_ap over valid triplets weights each pair by its anchor's negatives, and so on
        n_triplets = n_valid.clamp_min(1).to(acc)
        mean_ap = (((d * pos).sum(dim=1).to(acc) * n_neg).sum() / n_triplets).to(dist.dtype)
        mean_an = (((d * neg).sum(dim=1).to(acc) * n_pos).sum() / n_triplets).to(dist.dtype)
    loss = _ValueWithGradient.apply(dist, value, w)
    return TripletLossResult(loss, n_valid, n_active, mean_ap, mean_an)


class _ValueWithGradient(torch.autograd.Function):
    """``value + Σ weights ⊙ (dist − dist.detach())`` without any (B, B) work forward."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, dist: Tensor, value: Tensor, weights: Tensor
    ) -> Tensor:
        ctx.save_for_backward(weights)
        return value.clone()

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, None, None]:
        (weights,) = ctx.saved_tensors
        return grad * weights, None, None


def mined_triplet_loss(
    dist: Tensor,
    labels: Tensor,
    mining: Mining = "batch_hard",
    margin: float = 0.2,
    soft_margin: bool = False,
    semi_hard_fallback: Fallback = "largest",
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> TripletLossResult:
    """Triplet loss of ``mining`` on ``dist`` (B, B) and ``labels`` (B,); see the module doc."""
    check_mining(mining)
    if mining == "batch_all":
        return batch_all(dist, labels, margin, soft_margin, max_chunk_elements)
    if mining == "batch_hard":
        triplets = batch_hard(dist, labels)
    else:
        triplets = semi_hard(dist, labels, semi_hard_fallback, max_chunk_elements)
    return triplet_loss_from_triplets(dist, triplets, margin, soft_margin)
