"""1:N identification with FAISS (:func:`facerec.mining.faiss_index.build_index`): chunked
search of L2-normalised embeddings, CMC, open-set DIR@FAR.

Closed-set ranks are by identity: an identity's score is the best score over its gallery images,
and rank r means the true identity is among the r best identities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from facerec.errors import DataError
from facerec.mining.faiss_index import IndexKind, build_index, faiss_search


def torch_search(
    gallery: np.ndarray | torch.Tensor,
    queries: np.ndarray | torch.Tensor,
    k: int,
    chunk_size: int = 1024,
    device: str = "cpu",
    gallery_chunk: int | None = None,
    max_elements: int = 1 << 27,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner-product search by chunked matrix products, as :func:`faiss_search`
    (ties may order differently): ``chunk_size`` queries against ``gallery_chunk`` gallery rows
    at a time (default: a similarity block under ``max_elements`` floats), top-k merged."""
    g, qs = (
        torch.as_tensor(np.asarray(x, np.float32) if isinstance(x, np.ndarray) else x)
        for x in (gallery, queries)
    )
    g = g.to(device, torch.float32)
    k = min(int(k), g.shape[0])
    gc = gallery_chunk or max(k, min(g.shape[0], max_elements // max(1, chunk_size)))
    out_s, out_i = [], []
    with torch.inference_mode():
        for s in range(0, qs.shape[0], chunk_size):
            q = qs[s : s + chunk_size].to(device, torch.float32)
            best_s = best_i = None
            for t in range(0, g.shape[0], gc):
                sim = q @ g[t : t + gc].T
                ps, pi = sim.topk(min(k, sim.shape[1]), dim=1)
                if best_s is None:
                    best_s, best_i = ps, pi + t
                else:
                    cs, ci = torch.cat([best_s, ps], 1), torch.cat([best_i, pi + t], 1)
                    best_s, j = cs.topk(k, dim=1)
                    best_i = ci.gather(1, j)
            out_s.append(best_s.cpu())
            out_i.append(best_i.cpu())
    return torch.cat(out_s).numpy(), torch.cat(out_i).numpy().astype(np.int64)


def rank_identities(
    scores: np.ndarray, ids: np.ndarray, gallery_labels: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Collapse (Q, K) descending image search results to the best ``k`` identities (by
    ``gallery_labels`` (G,)): -> (Q, k) float32 scores and (Q, k) int64 labels, padded with
    -inf / -1 when fewer than k distinct identities were among the neighbours."""
    q = scores.shape[0]
    out_s = np.full((q, k), -np.inf, np.float32)
    out_l = np.full((q, k), -1, np.int64)
    labs = np.where(ids >= 0, gallery_labels[np.clip(ids, 0, None)], -1)
    for r in range(q):
        _, first = np.unique(labs[r], return_index=True)
        first = np.sort(first[labs[r][first] >= 0])[:k]
        out_s[r, : first.size] = scores[r, first]
        out_l[r, : first.size] = labs[r, first]
    return out_s, out_l


def cmc(id_labels: np.ndarray, probe_labels: np.ndarray) -> np.ndarray:
    """Cumulative match characteristic: (Q, k) ranked identities, (Q,) truth -> (k,) rates;
    ``cmc[r - 1]`` = fraction of probes whose identity is among the first r."""
    hit = id_labels == np.asarray(probe_labels).reshape(-1, 1)
    first = np.where(hit.any(1), hit.argmax(1), id_labels.shape[1])
    counts = np.bincount(first, minlength=id_labels.shape[1] + 1)[: id_labels.shape[1]]
    return np.cumsum(counts) / max(1, id_labels.shape[0])


@dataclass
class DirAtFar:
    """Open-set detection-and-identification rate (``dir``: mated probes right at rank 1 with
    score >= ``threshold``) at a target FPIR ``far``; ``resolvable`` is False when
    ``far * n_nonmated < 1`` (the threshold then lies above every non-mated score)."""

    far: float
    dir: float
    threshold: float
    achieved_far: float
    resolvable: bool
    n_nonmated: int


def dir_at_far(
    mated_top1_scores: np.ndarray,
    mated_top1_correct: np.ndarray,
    nonmated_top1_scores: np.ndarray,
    fars: tuple[float, ...] | list[float] = (1e-1, 1e-2, 1e-3),
) -> list[DirAtFar]:
    """DIR at each FPIR: the lowest threshold letting at most ``floor(far·n)`` of the (U,)
    non-mated top-1 scores pass, from the (M,) mated top-1 scores and whether each is right."""
    raw_neg = np.asarray(nonmated_top1_scores)
    # the threshold is made in the scores' own precision (float32 from FAISS), so that it
    # separates the same scores whether it is applied in float32 or in float64
    dtype = raw_neg.dtype if raw_neg.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    ms = np.asarray(mated_top1_scores, np.float64)
    mc = np.asarray(mated_top1_correct, bool)
    neg = np.sort(raw_neg.astype(np.float64))[::-1]
    if neg.size == 0:
        raise DataError("open-set DIR needs non-mated searches; expected distractor images")
    out = []
    for far in fars:
        allowed = math.floor(far * neg.size + 1e-9)
        thr = -np.inf
        if allowed < neg.size:
            thr = float(np.nextafter(dtype.type(neg[allowed]), dtype.type(np.inf)))
        if math.isinf(thr):
            thr = float(min(neg.min(), ms.min() if ms.size else neg.min()))
        rate = float(np.mean(mc & (ms >= thr))) if ms.size else float("nan")
        achieved = float(np.mean(neg >= thr))
        out.append(DirAtFar(float(far), rate, thr, achieved, far * neg.size >= 1.0, int(neg.size)))
    return out


@dataclass
class IdentificationResult:
    """Closed- and open-set results of :func:`identify`: the (K,) CMC over mated probes and its
    rank 1/5/10 (nan when K is smaller); non-mated searches are probes of unenrolled identities
    plus distractors; ``dir_at_far`` is empty without them."""

    cmc: np.ndarray
    rank1: float
    rank5: float
    rank10: float
    num_mated: int
    num_nonmated: int
    dir_at_far: list[DirAtFar]
    mated_top1_scores: np.ndarray
    nonmated_top1_scores: np.ndarray


def identify(
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    probes: np.ndarray,
    probe_labels: np.ndarray,
    distractors: np.ndarray | None = None,
    kind: IndexKind = "flat",
    max_rank: int = 10,
    fars: tuple[float, ...] | list[float] = (1e-1, 1e-2, 1e-3),
    chunk_size: int = 4096,
    use_gpu: bool | None = None,
) -> IdentificationResult:
    """Closed-set CMC (K = ``max_rank``) and open-set DIR@FAR of (G, D) and (P, D) unit rows
    with int labels; a probe whose label is not in the gallery (-1) and each optional (U, D)
    distractor row is a non-mated search. ``kind``: the FAISS index kind."""
    gallery_labels = np.asarray(gallery_labels, np.int64)
    probe_labels = np.asarray(probe_labels, np.int64)
    index = build_index(gallery, kind=kind, use_gpu=use_gpu)
    per_id = int(np.bincount(gallery_labels - gallery_labels.min()).max())
    k_ids = min(max_rank, int(np.unique(gallery_labels).size))
    k_img = min(k_ids * per_id, gallery.shape[0])
    extra = distractors if distractors is not None else np.zeros((0, gallery.shape[1]), np.float32)
    queries = np.concatenate([np.asarray(probes, np.float32), np.asarray(extra, np.float32)])
    s, i = faiss_search(index, queries, k_img, chunk_size)
    id_s, id_l = rank_identities(s, i, gallery_labels, k_ids)
    np_ = probes.shape[0]
    mated = np.isin(probe_labels, gallery_labels)
    curve = cmc(id_l[:np_][mated], probe_labels[mated])
    curve = np.concatenate([curve, np.full(max_rank - k_ids, curve[-1] if curve.size else 0.0)])

    def at(r: int) -> float:
        return float(curve[r - 1]) if r <= max_rank and mated.any() else float("nan")

    mated_s = id_s[:np_][mated, 0]
    correct = id_l[:np_][mated, 0] == probe_labels[mated]
    nonmated_s = np.concatenate([id_s[:np_][~mated, 0], id_s[np_:, 0]])
    dirs = dir_at_far(mated_s, correct, nonmated_s, fars) if nonmated_s.size else []
    return IdentificationResult(
        cmc=curve,
        rank1=at(1),
        rank5=at(5),
        rank10=at(10),
        num_mated=int(mated.sum()),
        num_nonmated=int(nonmated_s.size),
        dir_at_far=dirs,
        mated_top1_scores=mated_s,
        nonmated_top1_scores=nonmated_s,
    )
