"""Slow, literal reference implementations of the miners and losses, for the tests.

Everything here is plain Python loops over pairs and triplets, O(B³) time: it spells out the
definitions of :mod:`facerec.mining.triplets` and :class:`facerec.losses.ContrastiveLoss` one
triplet (or pair) at a time, with each distance computed directly from two embedding vectors.
Use it on small batches only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor


def reference_distance(u: Tensor, v: Tensor, distance: str) -> float:
    """Distance between two vectors (D,), computed directly (no matrix identities)."""
    if distance == "euclidean":
        return float(torch.sqrt(((u - v) ** 2).sum()))
    if distance == "squared_euclidean":
        return float(((u - v) ** 2).sum())
    if distance == "cosine":
        return 1.0 - float((u @ v) / (u.norm() * v.norm()))
    raise ValueError(distance)


def reference_distance_matrix(x: Tensor, distance: str) -> list[list[float]]:
    """B×B list of lists of distances between the rows of ``x`` (B, D); diagonal 0."""
    b = x.shape[0]
    return [
        [0.0 if i == j else reference_distance(x[i], x[j], distance) for j in range(b)]
        for i in range(b)
    ]


def _term(d_ap: float, d_an: float, margin: float, soft_margin: bool) -> tuple[float, bool]:
    if soft_margin:
        x = d_ap - d_an
        return math.log1p(math.exp(x)), x > 0
    x = d_ap - d_an + margin
    return max(0.0, x), x > 0


def reference_triplets(
    d: Sequence[Sequence[float]],
    labels: Sequence[int],
    mining: str,
    fallback: str = "largest",
) -> list[tuple[int, int, int]]:
    """The triplets (a, p, n) each strategy uses, by exhaustive loops over the batch.

    batch_all: every valid triplet. batch_hard: per anchor the first positive with the largest
    d_ap and the first negative with the smallest d_an. semi_hard: per anchor-positive pair the
    first negative with the smallest d_an among d_an > d_ap; if none, the first negative with the
    largest (fallback "largest") or smallest ("smallest") d_an.
    """
    b = len(labels)
    out: list[tuple[int, int, int]] = []
    for a in range(b):
        positives = [p for p in range(b) if p != a and labels[p] == labels[a]]
        negatives = [n for n in range(b) if labels[n] != labels[a]]
        if not positives or not negatives:
            continue
        if mining == "batch_all":
            out += [(a, p, n) for p in positives for n in negatives]
        elif mining == "batch_hard":
            hp = positives[0]
            for p in positives:
                if d[a][p] > d[a][hp]:
                    hp = p
            hn = negatives[0]
            for n in negatives:
                if d[a][n] < d[a][hn]:
                    hn = n
            out.append((a, hp, hn))
        elif mining == "semi_hard":
            for p in positives:
                chosen = None
                for n in negatives:
                    if d[a][n] > d[a][p] and (chosen is None or d[a][n] < d[a][chosen]):
                        chosen = n
                if chosen is None:
                    chosen = negatives[0]
                    for n in negatives:
                        better = (
                            d[a][n] > d[a][chosen]
                            if fallback == "largest"
                            else (d[a][n] < d[a][chosen])
                        )
                        if better:
                            chosen = n
                out.append((a, p, chosen))
        else:
            raise ValueError(mining)
    return out


def reference_triplet_loss(
    x: Tensor,
    labels: Sequence[int],
    mining: str,
    margin: float = 0.2,
    distance: str = "euclidean",
    normalize: bool = True,
    soft_margin: bool = False,
    fallback: str = "largest",
) -> dict[str, Any]:
    """Triplet loss on raw embeddings ``x`` (B, D) by loops; returns loss, triplets and stats.

    Keys: loss, triplets, num_triplets, num_active, mean_d_ap, mean_d_an (floats/ints). The loss
    is the mean of the terms over the triplets, except hinge batch-all: mean over active ones.
    """
    x = x.detach().double()
    if normalize:
        x = x / x.norm(dim=1, keepdim=True)
    d = reference_distance_matrix(x, distance)
    labels = [int(v) for v in labels]
    triplets = reference_triplets(d, labels, mining, fallback)
    terms, active = [], []
    for a, p, n in triplets:
        t, act = _term(d[a][p], d[a][n], margin, soft_margin)
        terms.append(t)
        active.append(act)
    n_active = sum(active)
    if mining == "batch_all" and not soft_margin:
        loss = sum(t for t, act in zip(terms, active, strict=True) if act) / max(n_active, 1)
    else:
        loss = sum(terms) / max(len(terms), 1)
    return {
        "loss": loss,
        "triplets": triplets,
        "num_triplets": len(triplets),
        "num_active": n_active,
        "mean_d_ap": sum(d[a][p] for a, p, _ in triplets) / max(len(triplets), 1),
        "mean_d_an": sum(d[a][n] for a, _, n in triplets) / max(len(triplets), 1),
    }


def reference_contrastive_loss(
    x: Tensor,
    labels: Sequence[int],
    margin: float = 1.0,
    pos_margin: float = 0.0,
    distance: str = "euclidean",
    normalize: bool = True,
) -> dict[str, float]:
    """Contrastive loss by a loop over the unordered pairs i < j of ``x`` (B, D).

    Similar pair: ½·max(0, D − pos_margin)²; dissimilar: ½·max(0, margin − D)²; mean over pairs.
    """
    x = x.detach().double()
    if normalize:
        x = x / x.norm(dim=1, keepdim=True)
    labels = [int(v) for v in labels]
    b = len(labels)
    total, active, pairs = 0.0, 0, 0
    d_pos: list[float] = []
    d_neg: list[float] = []
    for i in range(b):
        for j in range(i + 1, b):
            dij = reference_distance(x[i], x[j], distance)
            if labels[i] == labels[j]:
                term = 0.5 * max(0.0, dij - pos_margin) ** 2
                d_pos.append(dij)
            else:
                term = 0.5 * max(0.0, margin - dij) ** 2
                d_neg.append(dij)
            total += term
            active += term > 0
            pairs += 1
    return {
        "loss": total / max(pairs, 1),
        "num_pairs": pairs,
        "num_active": active,
        "mean_d_pos": sum(d_pos) / max(len(d_pos), 1),
        "mean_d_neg": sum(d_neg) / max(len(d_neg), 1),
    }


def dense_batch_all_loss(
    dist: Tensor, labels: Tensor, margin: float, soft_margin: bool = False
) -> Tensor:
    """Batch-all loss through the full (B, B, B) cube with plain autograd (gradient reference)."""
    pos = (labels[:, None] == labels[None, :]) & ~torch.eye(len(labels), dtype=torch.bool)
    neg = labels[:, None] != labels[None, :]
    valid = pos[:, :, None] & neg[:, None, :]
    x = dist[:, :, None] - dist[:, None, :]
    if soft_margin:
        return torch.nn.functional.softplus(x)[valid].mean()
    x = x + margin
    active = valid & (x > 0)
    if not active.any():
        return dist.sum() * 0.0
    return x[active].sum() / active.sum()


def reference_select_triplets(
    embeddings: Tensor,
    labels: Sequence[int],
    selection: str,
    margin: float = 0.2,
    distance: str = "squared_euclidean",
) -> list[tuple[int, int, int]]:
    """Loop reference of :func:`facerec.mining.offline.select_triplets`, exhaustive search."""
    x = embeddings.detach().double()
    x = x / x.norm(dim=1, keepdim=True)
    labels = [int(v) for v in labels]
    n = len(labels)
    out = []
    for a in range(n):
        negatives = [j for j in range(n) if labels[j] != labels[a]]
        if not negatives:
            continue
        d_an = {j: reference_distance(x[a], x[j], distance) for j in negatives}
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            d_ap = reference_distance(x[a], x[p], distance)
            if selection == "hard":
                best = min(negatives, key=lambda j: (d_an[j], j))
            else:
                band = [j for j in negatives if d_ap < d_an[j] < d_ap + margin]
                if not band:
                    continue
                best = min(band, key=lambda j: (d_an[j], j))
            out.append((a, p, best))
    return out


def brute_force_neighbours(centres: Tensor | np.ndarray, k: int) -> np.ndarray:
    """Reference: (C, k) nearest other identities by cosine, from a full (C, C) matrix (float64).

    Ties are broken towards the lower index.
    """
    x = torch.as_tensor(centres).detach().double().cpu().numpy()
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")
    return order[:, :k].astype(np.int64)
