"""Face-image quality: per-image scores, pair quality and the error-versus-reject curve (ERC).

Two scores, higher is better: ``norm``, the L2 norm of the raw embedding (the quality of
MagFace/AdaFace heads; refused on a model whose output is L2-normalised), and ``stability``, in
the spirit of SER-FIQ (Terhörst et al., CVPR 2020): the mean pairwise cosine of the image's
embeddings under ``passes`` small perturbations (shift, mirror, noise; the same for every image).

:func:`error_versus_reject` is the ERC (Grother & Tabassi 2007; Schlett et al. 2022): the
threshold is fixed once at a FAR on all pairs, then the lowest-quality fraction of pairs is
rejected and the FNMR of the rest measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facerec.errors import ConfigError, DataError

from .verification import tar_at_far

#: The quality scores :class:`QualityScorer` computes.
QUALITY_METHODS = ("norm", "stability")


def resolve_method(method: str) -> str:
    """``--quality``'s method: ``auto`` is ``norm``, whatever the model (on ORL with degraded
    copies, ``tools/bench/quality.py``, the norm ranks them right, AUC 0.67-0.72, ``stability``
    wrong, AUC 0.22-0.37). An unknown method is left to the caller's choices."""
    return "norm" if method == "auto" else method


def feature_norm(embeddings: np.ndarray) -> np.ndarray:
    """(N, D) raw embeddings -> (N,) L2 norms (the MagFace/AdaFace quality)."""
    e = np.asarray(embeddings, np.float64)
    if e.ndim != 2:
        raise DataError(f"embeddings of shape {e.shape}; expected (N, D)")
    return np.linalg.norm(e, axis=1).astype(np.float32)


def embedding_stability(passes: np.ndarray) -> np.ndarray:
    """(M, N, D) embeddings of N images under M perturbations -> (N,) mean pairwise cosine
    similarity over the M(M-1)/2 pairs of passes (1 = the embedding never moved)."""
    p = np.asarray(passes, np.float64)
    if p.ndim != 3 or p.shape[0] < 2:
        raise DataError(f"embeddings of shape {p.shape}; expected (M >= 2 passes, N, D)")
    u = p / np.maximum(np.linalg.norm(p, axis=2, keepdims=True), 1e-12)
    s = u.sum(axis=0)  # sum_i sum_j <u_i, u_j> = |sum u|^2; the diagonal contributes M
    m = p.shape[0]
    return (((s * s).sum(axis=1) - m) / (m * (m - 1))).astype(np.float32)


def perturbation_plan(
    passes: int, size: tuple[int, int], seed: int = 0, shift: float = 0.04, noise: float = 4.0
) -> list[dict[str, Any]]:
    """The ``passes`` perturbations (the same for every image): pass 0 is the image itself;
    each other pass shifts by up to ``shift`` of the size (at least 1 pixel, edges repeated),
    mirrors every second pass, and adds Gaussian noise of ``noise`` grey levels (fixed per pass).
    """
    rng = np.random.default_rng(seed)
    h, w = size
    mh, mw = max(1, round(shift * h)), max(1, round(shift * w))
    plan: list[dict[str, Any]] = [{"dy": 0, "dx": 0, "flip": False, "noise": None}]
    for k in range(1, passes):
        dy, dx = int(rng.integers(-mh, mh + 1)), int(rng.integers(-mw, mw + 1))
        n = rng.normal(0.0, noise, (h, w, 3)).astype(np.float32) if noise > 0 else None
        plan.append({"dy": dy, "dx": dx, "flip": k % 2 == 1, "noise": n})
    return plan


def perturb(images: np.ndarray, step: dict[str, Any]) -> np.ndarray:
    """Apply one step of :func:`perturbation_plan` to (N, H, W, 3) uint8 images."""
    x = images
    dy, dx = step["dy"], step["dx"]
    if dy or dx:
        h, w = x.shape[1:3]
        rows = np.clip(np.arange(h) - dy, 0, h - 1)
        cols = np.clip(np.arange(w) - dx, 0, w - 1)
        x = x[:, rows][:, :, cols]
    if step["flip"]:
        x = x[:, :, ::-1]
    if step["noise"] is not None:
        x = np.clip(x.astype(np.float32) + step["noise"], 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(x)


class QualityScorer:
    """An embedder whose "embedding" is the (N, 1) quality of each image, so the one embedding
    loop scores images as it embeds them.

    ``embedder``: anything with ``input_size``, ``resize_mode`` and ``__call__(uint8) -> (N, D)``;
    ``passes``: perturbed embeddings per image for ``stability`` (>= 2), drawn from ``seed``.
    ConfigError for an unknown method, < 2 passes, or ``norm`` on L2-normalised output.
    """

    def __init__(self, embedder: Any, method: str = "stability", passes: int = 8, seed: int = 0):
        if method not in QUALITY_METHODS:
            raise ConfigError(
                f"quality method {method!r} is not known; "
                f"expected one of {', '.join(QUALITY_METHODS)}"
            )
        if method == "stability" and passes < 2:
            raise ConfigError(f"quality passes must be >= 2, got {passes}")
        normalized = getattr(embedder, "normalized_output", None)
        if normalized is None:
            normalized = getattr(getattr(embedder, "preprocess", None), "normalized_output", False)
        if method == "norm" and normalized:
            raise ConfigError(
                "quality method 'norm' needs raw embeddings but this model returns L2-normalised "
                "ones (exported with --l2-normalize); use the 'stability' quality or the checkpoint"
            )
        self.embedder = embedder
        self.method = method
        self.input_size = tuple(embedder.input_size)
        self.resize_mode = embedder.resize_mode
        self.plan = (
            perturbation_plan(passes, self.input_size, seed) if method == "stability" else []
        )

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 at ``input_size`` -> (N, 1) float32 qualities."""
        if self.method == "norm":
            q = feature_norm(np.asarray(self.embedder(images), np.float32))
        else:
            embs = [np.asarray(self.embedder(perturb(images, s)), np.float32) for s in self.plan]
            q = embedding_stability(np.stack(embs))
        return q.reshape(-1, 1)


def quality_auc(good: np.ndarray, bad: np.ndarray) -> float:
    """P(quality of a random ``good`` image > that of a random ``bad`` one), ties counting 1/2:
    1 = the score always ranks the degraded images lower, 0.5 = no better than chance."""
    g = np.asarray(good, np.float64).reshape(-1)
    b = np.asarray(bad, np.float64).reshape(-1)
    if not g.size or not b.size:
        raise DataError("quality AUC needs at least one good and one bad image")
    allq = np.concatenate([g, b])
    order = np.argsort(allq, kind="mergesort")
    ranks = np.empty(allq.size)
    # average 1-based ranks over ties
    _, start, counts = np.unique(allq[order], return_index=True, return_counts=True)
    ranks[order] = np.repeat(start + (counts + 1) / 2.0, counts)
    r_good = ranks[: g.size].sum()
    return float((r_good - g.size * (g.size + 1) / 2.0) / (g.size * b.size))


def pair_quality(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """The quality of a pair: that of its worse image (min), as in the ERC literature."""
    return np.minimum(np.asarray(q1, np.float64), np.asarray(q2, np.float64))


@dataclass
class ErrorRejectCurve:
    """The error-versus-reject curve at a threshold set at ``far`` on all pairs.

    ``fnmr`` and ``kept_genuine`` are of the genuine pairs kept at each ``reject`` fraction;
    ``area`` is the mean FNMR over the range (trapezoid), lower is better; ``area_oracle`` that of
    rejecting the failing genuine pairs first (the best possible), ``area_random`` the FNMR at 0.
    """

    reject: np.ndarray
    fnmr: np.ndarray
    kept_genuine: np.ndarray
    threshold: float
    far: float
    area: float
    area_oracle: float
    area_random: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists and floats) for results files and reports."""
        scalars = ("threshold", "far", "area", "area_oracle", "area_random")
        return {
            "reject": [float(r) for r in self.reject],
            "fnmr": [float(f) for f in self.fnmr],
            "kept_genuine": [int(k) for k in self.kept_genuine],
            **{k: getattr(self, k) for k in scalars},
        }


def _fnmr_after_reject(
    order: np.ndarray, genuine: np.ndarray, miss: np.ndarray, reject: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Reject the first ``round(r * n)`` pairs of ``order``; FNMR of the genuine ones left."""
    n = order.size
    fnmr, kept = [], []
    for r in reject:
        keep = order[round(float(r) * n) :]
        g = genuine[keep]
        k = int(g.sum())
        kept.append(k)
        fnmr.append(float(miss[keep][g].mean()) if k else float("nan"))
    return np.asarray(fnmr), np.asarray(kept)


def _area(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(y)
    if ok.sum() < 2 or x[-1] <= x[0]:
        return float(np.nanmean(y)) if ok.any() else float("nan")
    return float(np.trapezoid(y[ok], x[ok]) / (x[ok][-1] - x[ok][0]))


def error_versus_reject(
    scores: np.ndarray,
    issame: np.ndarray,
    quality: np.ndarray,
    far: float = 1e-2,
    reject: Sequence[float] | np.ndarray | None = None,
) -> ErrorRejectCurve:
    """The ERC of (P,) pair scores ("same" when score >= threshold), (P,) labels and (P,) pair
    qualities (:func:`pair_quality`), rejecting the ``reject`` fractions (default 0, 0.05, ...,
    0.5) of lowest quality; equal qualities are rejected in their given order."""
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(issame).reshape(-1).astype(bool)
    q = np.asarray(quality, np.float64).reshape(-1)
    if not (s.size == y.size == q.size):
        raise DataError(
            f"{s.size} scores, {y.size} same/different flags and {q.size} qualities; "
            "expected one of each per pair"
        )
    if not np.all(np.isfinite(q)):
        raise DataError("some pair qualities are NaN or infinite; expected finite qualities")
    if not y.any() or y.all():
        raise DataError("the ERC needs genuine and impostor pairs; got only one kind")
    r = np.linspace(0.0, 0.5, 11) if reject is None else np.asarray(reject, np.float64)
    if r.ndim != 1 or not r.size or r.min() < 0 or r.max() >= 1 or np.any(np.diff(r) <= 0):
        raise ConfigError("reject fractions must be ascending, in [0, 1)")
    t = tar_at_far(s, y, [far])[0].threshold
    miss = s < t
    fnmr, kept = _fnmr_after_reject(np.argsort(q, kind="mergesort"), y, miss, r)
    # the oracle rejects failing genuine pairs first, then the rest (genuine or not)
    oracle = np.argsort(~(y & miss), kind="mergesort")
    fnmr_o, _ = _fnmr_after_reject(oracle, y, miss, r)
    area, area_oracle = _area(r, fnmr), _area(r, fnmr_o)
    return ErrorRejectCurve(
        r, fnmr, kept, float(t), float(far), area, area_oracle, float(miss[y].mean())
    )


def drop_below(quality: np.ndarray, min_quality: float) -> np.ndarray:
    """Boolean mask of the rows kept by ``--min-quality``: quality >= ``min_quality``."""
    return np.asarray(quality, np.float64).reshape(-1) >= float(min_quality)
