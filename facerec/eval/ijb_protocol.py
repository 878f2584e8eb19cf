"""IJB-B / IJB-C protocol maths: template pooling, pair scoring, the 1:1 table, 1:N search.

Pure numpy + torch, vectorised and in bounded memory, exact to insightface's ``eval_ijbc.py``
(1:1) and ``ijb_1n.py`` (1:N). Image features f_i (N, D) are flip-summed raw embeddings,
optionally L2-normalised (insightface's mode N0; the default N1 keeps the norm as a quality
weight) and weighted by the faceness score s_i (mode D1, default). A template feature is the sum
over its media of the mean over each media's images, L2-normalised: ``t = sum_i (s_i / n_i) f_i``
with n_i the images of image i's media in its template. A pair score is the cosine of the two
template features.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from facerec.errors import DataError
from facerec.metrics.verification import auc, far_key, roc, tar_table

#: The FARs of the published IJB TAR@FAR tables.
IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
#: The FPIRs of ``ijb_1n.py``.
IJB_FPIRS = (1e-2, 1e-1)
#: The ranks reported for closed-set identification.
IJB_RANKS = (1, 5, 10)


@dataclass
class Templates:
    """Pooled templates: ids (T,) int64 sorted; features (T, D) float32 unit rows (a zero row
    when all weights are zero); num_images and num_media (T,) int64 per template."""

    ids: np.ndarray
    features: np.ndarray
    num_images: np.ndarray
    num_media: np.ndarray

    def index_of(self, template_ids: np.ndarray, what: str = "template") -> np.ndarray:
        """Row of each id of ``template_ids`` (K,) -> (K,) int64; DataError for unknown ids."""
        q = np.asarray(template_ids, np.int64).reshape(-1)
        pos = np.minimum(np.searchsorted(self.ids, q), self.ids.size - 1)
        bad = self.ids[pos] != q
        if np.any(bad):
            k = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{what} {int(q[k])} has no image ({int(bad.sum())} such ids); expected every "
                "template id to appear in the face_tid_mid list"
            )
        return pos


def pool_templates(
    features: np.ndarray,
    templates: np.ndarray,
    medias: np.ndarray,
    weights: np.ndarray | None = None,
    normalize_images: bool = False,
    chunk: int = 65536,
) -> Templates:
    """Media pooling then template pooling of (N, D) image features (see the module docstring):
    ``weights`` the (N,) faceness scores (None: all 1), ``normalize_images`` insightface's N0
    mode, ``chunk`` the images per block when computing image norms."""
    f = np.asarray(features)
    t = np.asarray(templates).reshape(-1)
    m = np.asarray(medias).reshape(-1)
    if f.ndim != 2 or f.shape[0] != t.size:
        raise DataError(f"features of shape {f.shape} for {t.size} images; expected (images, dim)")
    if t.shape != m.shape:
        raise DataError(f"{t.size} template ids but {m.size} media ids; expected one per image")
    f = np.ascontiguousarray(f, dtype=np.float32)
    # coefficient of image i: its weight / the images of its media in its template
    ids, row = np.unique(t, return_inverse=True)
    m_ids, m_row = np.unique(m, return_inverse=True)
    key = row.astype(np.int64) * max(1, m_ids.size) + m_row
    key_ids, key_row, key_count = np.unique(key, return_inverse=True, return_counts=True)
    w = np.ones(t.size) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.shape != t.shape:
        raise DataError(f"{w.size} image weights for {t.size} images; expected one per image")
    coef = w / key_count[key_row]
    num_media = np.bincount(key_ids // max(1, m_ids.size), minlength=ids.size).astype(np.int64)
    if normalize_images:
        blocks = range(0, max(1, f.shape[0]), chunk)
        norms = np.concatenate([np.linalg.norm(f[s : s + chunk], axis=1) for s in blocks])
        coef = coef / np.maximum(norms.astype(np.float64), 1e-12)
    n_t = ids.size
    order = np.argsort(row, kind="stable")
    crow = np.zeros(n_t + 1, np.int64)
    np.cumsum(np.bincount(row, minlength=n_t), out=crow[1:])
    with warnings.catch_warnings():  # torch calls sparse CSR "beta"; CSR x dense on CPU is fine
        warnings.simplefilter("ignore", UserWarning)
        mat = torch.sparse_csr_tensor(
            torch.from_numpy(crow),
            torch.from_numpy(order.astype(np.int64)),
            torch.from_numpy(coef[order].astype(np.float32)),
            size=(n_t, f.shape[0]),
        )
        pooled = (mat @ torch.from_numpy(f)).numpy()
    norm = np.sqrt(np.einsum("ij,ij->i", pooled, pooled, dtype=np.float64))[:, None]
    pooled *= (1.0 / np.where(norm > 0, norm, np.inf)).astype(np.float32)
    return Templates(ids.astype(np.int64), pooled, np.diff(crow), num_media)


def pair_scores(
    features: np.ndarray,
    rows1: np.ndarray,
    rows2: np.ndarray,
    block: int = 1024,
    density: float = 0.02,
    gather_chunk: int = 1024,
) -> np.ndarray:
    """Dot products of feature rows ``rows1[k]``, ``rows2[k]``: (T, D), (P,), (P,) -> (P,) float32.

    Pairs are ordered (smaller row first) and grouped by blocks of ``block`` first rows. A block
    whose pairs fill at least ``density`` of its (rows x distinct second rows) grid is scored by
    one matrix product (IJB-B), a sparser one by gathering ``gather_chunk`` row pairs at a time
    (IJB-C). Memory: one (block, T) grid and O(P) indices.
    """
    x = np.ascontiguousarray(features, dtype=np.float32)
    a = np.asarray(rows1, np.int64).reshape(-1)
    b = np.asarray(rows2, np.int64).reshape(-1)
    if a.shape != b.shape:
        raise DataError(f"{a.size} first and {b.size} second templates; expected pairs")
    n_t = x.shape[0]
    out = np.empty(a.size, np.float32)
    if a.size == 0:
        return out
    if min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_t:
        raise DataError(f"pair rows outside 0..{n_t - 1}; expected template rows")
    small = np.int32 if n_t < 2**31 else np.int64  # index arrays: half the memory
    r1, r2 = np.minimum(a, b).astype(small), np.maximum(a, b).astype(small)
    del a, b
    n_blocks = -(-n_t // block)
    blk = r1 // block
    blk = blk.astype(np.uint16) if n_blocks <= 65536 else blk
    order = np.argsort(blk, kind="stable")  # radix sort for uint16
    bounds = np.zeros(n_blocks + 1, np.int64)
    np.cumsum(np.bincount(blk, minlength=n_blocks), out=bounds[1:])
    xt = torch.from_numpy(x)
    seen = np.zeros(n_t, bool)
    for b in range(n_blocks):  # one step per block of templates, vectorised inside
        sel = order[bounds[b] : bounds[b + 1]]
        if sel.size == 0:
            continue
        lo = b * block
        rows = min(block, n_t - lo)
        c = r2[sel]
        seen[:] = False
        seen[c] = True
        cols = np.flatnonzero(seen)
        if sel.size >= density * rows * cols.size:
            col_of = np.cumsum(seen) - 1
            grid = (xt[lo : lo + rows] @ xt[torch.from_numpy(cols)].T).numpy()
            flat = (r1[sel] - lo).astype(np.int64) * grid.shape[1]
            flat += col_of[c]
            out[sel] = np.take(grid.reshape(-1), flat)
        else:
            a = r1[sel]
            for s in range(0, sel.size, gather_chunk):
                e = s + gather_chunk
                out[sel[s:e]] = np.einsum("nd,nd->n", x[a[s:e]], x[c[s:e]])
    return out


def nearest_far_tar(
    fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray, fars: tuple[float, ...]
) -> dict[str, dict]:
    """insightface's TAR@FAR rule: for each target x the ROC point with the smallest
    ``|fpr - x|``, ties to the later point (higher TPR); its FPR can exceed x. -> ``{far_key:
    {"tar", "fpr", "threshold"}}`` (threshold None for the +inf start point)."""
    f, t, th = fpr[::-1], tpr[::-1], thresholds[::-1]
    out = {}
    for x in fars:
        i = int(np.argmin(np.abs(f - x)))
        thr = None if math.isinf(th[i]) else float(th[i])
        out[far_key(x)] = {"tar": float(t[i]), "fpr": float(f[i]), "threshold": thr}
    return out


def reduced_roc(
    fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray, points_per_decade: int = 40
) -> dict[str, list]:
    """A ROC thinned for storage: the first and last points and, for each of a log FPR grid
    (``points_per_decade``, from 1/(impostors) to 1), the last point with ``fpr <=`` it."""
    pos = fpr[fpr > 0]
    lo = math.floor(math.log10(float(pos.min()))) if pos.size else 0
    grid = np.logspace(lo, 0, (0 - lo) * points_per_decade + 1)
    idx = np.searchsorted(fpr, grid, side="right") - 1
    keep = np.unique(np.r_[0, idx[idx >= 0], fpr.size - 1])
    return {
        "fpr": fpr[keep].tolist(),
        "tpr": tpr[keep].tolist(),
        "thresholds": [None if math.isinf(v) else float(v) for v in thresholds[keep]],
    }


def verification_1to1(
    scores: np.ndarray, labels: np.ndarray, fars: tuple[float, ...] = IJB_FARS
) -> dict:
    """Every 1:1 number of (P,) pair scores and (P,) labels (1 mated), JSON-ready: the counts,
    ``auc``, ``tar_at_far_nearest`` (:func:`nearest_far_tar`), ``tar_at_far`` (calibrated,
    :func:`facerec.metrics.verification.tar_table`) and ``roc`` (:func:`reduced_roc`) of
    scikit-learn's ROC with collinear points dropped, as insightface calls it."""
    y = np.asarray(labels).reshape(-1).astype(bool)
    fpr, tpr, thr = roc(scores, y, drop_intermediate=True)
    return {
        "num_pairs": int(y.size),
        "num_genuine": int(y.sum()),
        "num_impostor": int((~y).sum()),
        "auc": auc(fpr, tpr),
        "tar_at_far_nearest": nearest_far_tar(fpr, tpr, thr, fars),
        "tar_at_far": tar_table(scores, y, fars),
        "roc": reduced_roc(fpr, tpr, thr),
    }


def identification_1n(
    probe_features: np.ndarray,
    probe_subjects: np.ndarray,
    gallery_features: np.ndarray,
    gallery_subjects: np.ndarray,
    fpirs: tuple[float, ...] = IJB_FPIRS,
    ranks: tuple[int, ...] = IJB_RANKS,
    chunk: int = 1024,
) -> dict:
    """Search (Q, D) unit probe templates in a (G, D) gallery with one template per subject
    (DataError otherwise), ``chunk`` probes at a time.

    A probe is mated when its subject is in the gallery; its rank is 1 + the gallery templates
    scoring strictly above its mate. Returns the counts, ``rank{k}`` (closed set over mated
    probes), ``tpir_at_fpir_insightface`` (``ijb_1n.py``: threshold = the ceil(mated * fpir)-th
    largest non-mate score of mated probes, TPIR = mated probes whose mate scores above it) and
    ``tpir_at_fpir`` (open set, NIST: the threshold admits at most floor(fpir * non-mated)
    non-mated top scores, TPIR = mated probes at rank 1 above it; empty without non-mated).
    """
    q = np.ascontiguousarray(probe_features, dtype=np.float32)
    g = np.ascontiguousarray(gallery_features, dtype=np.float32)
    ps = np.asarray(probe_subjects, np.int64).reshape(-1)
    gs = np.asarray(gallery_subjects, np.int64).reshape(-1)
    if q.shape[0] != ps.size or g.shape[0] != gs.size or q.shape[1:] != g.shape[1:]:
        raise DataError(
            f"probes {q.shape} with {ps.size} subjects, gallery {g.shape} with {gs.size}; "
            "expected one subject per template and equal feature sizes"
        )
    uniq, counts = np.unique(gs, return_counts=True)
    if np.any(counts > 1):
        raise DataError(
            f"gallery subject {int(uniq[np.argmax(counts > 1)])} has {int(counts.max())} "
            "templates; expected one gallery template per subject (as IJB's G1/G2)"
        )
    if gs.size == 0:
        raise DataError("empty gallery; expected at least one gallery template")
    order = np.argsort(gs)
    pos = np.minimum(np.searchsorted(gs[order], ps), gs.size - 1)
    mated = gs[order][pos] == ps
    mate = np.where(mated, order[pos], -1)
    n_m = int(mated.sum())
    n_n = ps.size - n_m
    k_max = max([math.ceil(n_m * x) for x in fpirs] + [1])
    mate_score = np.full(ps.size, -np.inf, np.float32)
    top_score = np.full(ps.size, -np.inf, np.float32)
    rank = np.zeros(ps.size, np.int64)
    neg_top: list[np.ndarray] = []
    gt = torch.from_numpy(g)
    for s in range(0, ps.size, chunk):  # one step per block of probes
        e = min(ps.size, s + chunk)
        sim = (torch.from_numpy(q[s:e]) @ gt.T).numpy()
        top_score[s:e] = sim.max(axis=1)
        r = np.flatnonzero(mated[s:e])
        ms = sim[r, mate[s:e][r]]
        mate_score[s:e][r] = ms
        rank[s:e][r] = 1 + (sim[r] > ms[:, None]).sum(axis=1)
        neg = sim[r].copy()
        neg[np.arange(r.size), mate[s:e][r]] = -np.inf
        neg = neg.reshape(-1)
        if neg.size > k_max:
            neg = np.partition(neg, neg.size - k_max)[neg.size - k_max :].copy()  # not a view
        neg_top.append(neg)
    out: dict = {
        "num_probes": int(ps.size),
        "num_mated": n_m,
        "num_nonmated": n_n,
        "num_gallery": int(gs.size),
        **{f"rank{k}": float(np.mean(rank[mated] <= k)) if n_m else None for k in ranks},
    }
    negs = np.sort(np.concatenate(neg_top))[::-1] if neg_top else np.zeros(0, np.float32)
    negs = negs[np.isfinite(negs)]
    ins = {}
    for x in fpirs:
        k = math.ceil(n_m * x)
        if n_m == 0 or k < 1 or k > negs.size:
            continue
        th = float(negs[k - 1])
        ins[far_key(x)] = {"tpir": float(np.mean(mate_score[mated] > th)), "threshold": th}
    out["tpir_at_fpir_insightface"] = ins
    nist = {}
    if n_n and n_m:
        non = np.sort(top_score[~mated])[::-1]
        hit1 = rank[mated] == 1
        for x in fpirs:
            k = math.floor(x * n_n + 1e-9)
            th = float(non[k]) if k < n_n else -math.inf
            nist[far_key(x)] = {
                "tpir": float(np.mean(hit1 & (mate_score[mated] > th))),
                "threshold": th if math.isfinite(th) else None,
                "achieved_fpir": float(np.mean(top_score[~mated] > th)),
                "resolvable": x * n_n >= 1.0,
            }
    out["tpir_at_fpir"] = nist
    return out
