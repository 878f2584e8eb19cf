"""1:N identification with FAISS: index building, chunked search, CMC, open-set DIR@FAR.

Embeddings are L2-normalised, so inner product = cosine similarity. The index comes from
:func:`facerec.mining.faiss_index.build_index`: exact ``flat`` by default, ``ivf`` and ``hnsw``
trade exactness for speed on large galleries; GPU FAISS when the installed faiss has GPUs (flat and
IVF). Queries are searched in chunks so the (chunk, k) result and FAISS's working memory stay
bounded whatever the number of probes.

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
    """Exact top-k inner-product search by chunked matrix products (reference and baseline).

    Queries go ``chunk_size`` at a time and the gallery ``gallery_chunk`` rows at a time (default:
    as many as keep the similarity block under ``max_elements`` floats, 512 MiB), the partial
    top-k merged, so memory stays bounded whatever the sizes. Same outputs as
    :func:`faiss_search` (ties may order differently).
    """
    g = torch.as_tensor(
        np.asarray(gallery, np.float32) if isinstance(gallery, np.ndarray) else gallery
    )
    g = g.to(device, torch.float32)
    qs = torch.as_tensor(
        np.asarray(queries, np.float32) if isinstance(queries, np.ndarray) else queries
    )
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
                pi = pi + t
                if best_s is None:
                    best_s, best_i = ps, pi
                else:
                    cs, ci = torch.cat([best_s, ps], 1), torch.cat([best_i, pi], 1)
                    best_s, j = cs.topk(k, dim=1)
                    best_i = ci.gather(1, j)
            out_s.append(best_s.cpu())
            out_i.append(best_i.cpu())
    return torch.cat(out_s).numpy(), torch.cat(out_i).numpy().astype(np.int64)


def rank_identities(
    scores: np.ndarray, ids: np.ndarray, gallery_labels: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Collapse image neighbours to identities: best score per identity, in order.

    Args:
        scores, ids: (Q, K) image search results, descending.
        gallery_labels: (G,) int identity of each gallery row.
        k: identities to keep.

    Returns:
        ``(id_scores, id_labels)``: (Q, k) float32 and (Q, k) int64, padded with -inf / -1 when
        fewer than k distinct identities were among the neighbours.
    """
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
    """Cumulative match characteristic: (Q, k) ranked identities, (Q,) truth -> (k,) rates.

    ``cmc[r - 1]`` = fraction of probes whose identity is among the first r.
    """
    hit = id_labels == np.asarray(probe_labels).reshape(-1, 1)
    first = np.where(hit.any(1), hit.argmax(1), id_labels.shape[1])
    counts = np.bincount(first, minlength=id_labels.shape[1] + 1)[: id_labels.shape[1]]
    return np.cumsum(counts) / max(1, id_labels.shape[0])


@dataclass
class DirAtFar:
    """Open-set detection-and-identification rate at one false-positive identification rate.

    Attributes:
        far: target FPIR (fraction of non-mated searches whose top score passes the threshold).
        dir: fraction of mated probes whose true identity is rank 1 with score >= threshold.
        threshold: the calibrated top-1 score threshold (accept when score >= it).
        achieved_far: the FPIR reached at that threshold.
        resolvable: False when ``far * n_nonmated < 1`` (no non-mated search may pass; the
            threshold then lies above every non-mated score).
        n_nonmated: number of non-mated searches.
    """

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
    """DIR at each FPIR: the lowest threshold letting at most ``floor(far·n)`` non-mated pass.

    Args:
        mated_top1_scores: (M,) top-1 identity score of each mated probe.
        mated_top1_correct: (M,) bool, rank-1 identity is the true one.
        nonmated_top1_scores: (U,) top-1 score of each non-mated search (U >= 1).
    """
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
        if allowed >= neg.size:
            thr = -np.inf
        else:
            thr = float(np.nextafter(dtype.type(neg[allowed]), dtype.type(np.inf)))
        if math.isinf(thr):
            thr = float(min(neg.min(), ms.min() if ms.size else neg.min()))
        rate = float(np.mean(mc & (ms >= thr))) if ms.size else float("nan")
        out.append(
            DirAtFar(
                far=float(far),
                dir=rate,
                threshold=thr,
                achieved_far=float(np.mean(neg >= thr)),
                resolvable=far * neg.size >= 1.0,
                n_nonmated=int(neg.size),
            )
        )
    return out


@dataclass
class IdentificationResult:
    """Closed- and open-set results of :func:`identify`.

    Attributes:
        cmc: (K,) closed-set CMC over mated probes (rank 1 ... K).
        rank1, rank5, rank10: CMC at those ranks (nan when K is smaller).
        num_mated: probes whose identity is in the gallery.
        num_nonmated: non-mated searches (probes of unenrolled identities plus distractors).
        dir_at_far: open-set results, empty without non-mated searches.
        mated_top1_scores: (M,) top-1 identity score of each mated probe.
        nonmated_top1_scores: (U,) top-1 score of each non-mated search.
    """

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
    """Closed-set CMC and open-set DIR@FAR from normalised embeddings.

    Args:
        gallery: (G, D) unit rows; gallery_labels: (G,) int identities.
        probes: (P, D) unit rows; probe_labels: (P,) int, -1 (or any label not in the gallery)
            for a probe of an unenrolled identity, which is a non-mated search.
        distractors: optional (U, D) unit rows searched as non-mated probes.
        kind: FAISS index kind. max_rank: K of the CMC.
    """
    gallery_labels = np.asarray(gallery_labels, np.int64)
    probe_labels = np.asarray(probe_labels, np.int64)
    index = build_index(gallery, kind=kind, use_gpu=use_gpu)
    per_id = int(np.bincount(gallery_labels - gallery_labels.min()).max())
    n_ids = int(np.unique(gallery_labels).size)
    k_ids = min(max_rank, n_ids)
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
