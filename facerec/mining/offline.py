"""Offline triplet selection (FaceNet, Schroff et al. 2015 §3.1) with FAISS.

For every anchor-positive pair (a, p) of an embedded subset a negative n is chosen, with d the
distance between L2-normalised embeddings and α the margin: ``"hard"``, n = argmin d(a, n);
``"semi_hard"``, the argmin within FaceNet's band d(a, p) < d(a, n) < d(a, p) + α (pairs without
one are dropped). Candidates are the anchor's ``search_k`` nearest neighbours in the subset
(exact when it covers the subset); a pair the candidates cannot decide (no candidate negative,
or none beyond d(a, p)) is dropped. Ties go to the nearer FAISS rank, then the lower index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from facerec.errors import ConfigError, FacerecError
from facerec.mining.distances import check_distance
from facerec.mining.triplets import Triplets, label_masks

Selection = Literal["hard", "semi_hard"]
SELECTIONS: tuple[str, ...] = ("hard", "semi_hard")


def _to_distance(sq: Tensor, distance: str) -> Tensor:
    """Squared Euclidean between unit vectors -> ``distance``."""
    sq = sq.clamp_min(0.0)
    if distance == "squared_euclidean":
        return sq
    if distance == "euclidean":
        return sq.sqrt()
    return sq / 2.0  # cosine distance 1 − cos = ‖a − b‖²/2 on the unit sphere


def select_triplets(
    embeddings: Tensor | np.ndarray,
    labels: Tensor | np.ndarray | Sequence[int],
    selection: Selection = "semi_hard",
    margin: float = 0.2,
    distance: str = "squared_euclidean",
    search_k: int = 200,
) -> np.ndarray:
    """One negative for every anchor-positive pair of (N, D) ``embeddings`` (normalised inside)
    with (N,) integer ``labels``: (T, 3) int64 rows (anchor, positive, negative), ordered by
    anchor then positive. ``margin`` is in units of ``distance`` (FaceNet: squared Euclidean).
    """
    import faiss

    if selection not in SELECTIONS:
        raise ConfigError(f"unknown offline selection {selection!r}; expected one of {SELECTIONS}")
    check_distance(distance)
    if margin < 0:
        raise ConfigError(f"offline selection margin must be >= 0, got {margin}")
    x = embeddings if isinstance(embeddings, Tensor) else torch.as_tensor(np.asarray(embeddings))
    y = torch.as_tensor(np.asarray(labels)).long()
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise FacerecError(
            f"select_triplets needs embeddings (N, D) and labels (N,), got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    n = x.shape[0]
    empty = np.zeros((0, 3), dtype=np.int64)
    if n < 3:
        return empty
    x = torch.nn.functional.normalize(x.detach().double().cpu(), dim=1)
    k = int(min(max(int(search_k), 1) + 1, n))
    xf = x.float().numpy()
    index = faiss.IndexFlatL2(xf.shape[1])  # exact
    index.add(xf)
    _, nbr = index.search(xf, k)  # (N, k) ascending distance (self usually first)
    nbr_t = torch.from_numpy(nbr).long()
    valid = nbr_t >= 0
    nbr_t = nbr_t.clamp_min(0)
    # exact distances (float64) to the candidates and to the positives
    d_cand = _to_distance(((x.unsqueeze(1) - x[nbr_t]) ** 2).sum(-1), distance)  # (N, k)
    cand_neg = valid & (y[nbr_t] != y.unsqueeze(1))  # (N, k)
    # re-sort candidates by exact distance (stable: FAISS rank breaks ties)
    d_sort, order = torch.sort(d_cand.masked_fill(~cand_neg, float("inf")), dim=1, stable=True)
    nbr_sorted = nbr_t.gather(1, order)
    has_neg = torch.isfinite(d_sort[:, 0])

    a_idx, p_idx = torch.nonzero(label_masks(y)[0], as_tuple=True)  # anchor, then positive
    keep = has_neg[a_idx]
    if selection == "hard":
        neg = nbr_sorted[a_idx, 0]
    else:
        d_ap = _to_distance(((x[a_idx] - x[p_idx]) ** 2).sum(-1), distance)  # (T,)
        negs: list[Tensor] = []
        in_band: list[Tensor] = []
        chunk = max(1, (1 << 22) // k)
        for s in range(0, a_idx.shape[0], chunk):
            a, dap = a_idx[s : s + chunk], d_ap[s : s + chunk]
            d_a = d_sort[a]  # (c, k), +inf past the negatives
            # first candidate with d_an > d_ap; if none, the 0th, whose d_an <= d_ap is out of band
            first = (d_a > dap.unsqueeze(1)).to(torch.int8).argmax(dim=1, keepdim=True)
            d_first = d_a.gather(1, first).squeeze(1)
            negs.append(nbr_sorted[a].gather(1, first).squeeze(1))
            in_band.append((d_first > dap) & (d_first < dap + margin))
        neg = torch.cat(negs) if negs else torch.zeros(0, dtype=torch.long)
        keep = keep & (torch.cat(in_band) if in_band else keep)
    if not bool(keep.any()):
        return empty
    return torch.stack([a_idx[keep], p_idx[keep], neg[keep]], dim=1).numpy().astype(np.int64)


def batch_layout_triplets(labels: Tensor) -> Triplets:
    """The :class:`Triplets` of an offline batch laid out as [a₀, p₀, n₀, a₁, …] (``labels``
    (3·T,)); FacerecError unless every consecutive three has y_a = y_p ≠ y_n."""
    b = labels.shape[0]
    if b % 3 != 0 or b == 0:
        raise FacerecError(
            f"offline triplet loss needs a batch of 3·T images laid out as (anchor, positive, "
            f"negative) triplets, got {b} images; use data.sampler: "
            "facerec.data.offline_triplets.OfflineTripletBatches"
        )
    a, p, n = torch.arange(b, device=labels.device).view(-1, 3).T  # the columns of [a, p, n] rows
    if not bool((labels[a] == labels[p]).all() and (labels[a] != labels[n]).all()):
        raise FacerecError(
            "offline triplet loss: the batch is not laid out as (anchor, positive, negative) "
            "triplets (labels of a and p must agree, of a and n differ); use "
            "data.sampler: facerec.data.offline_triplets.OfflineTripletBatches"
        )
    return Triplets(a, p, n)
