"""Pair-verification metrics on similarity scores (pure NumPy).

Scores are cosines of L2-normalised embeddings, higher = same person. insightface's squared L2
distance threshold ``t`` ("same" when ``2 - 2 * score < t``) is the score threshold ``1 - t / 2``.
Two conventions, each its reference's: :func:`kfold_accuracy` and
:func:`best_threshold_accuracy` predict "same" when ``score > threshold`` (insightface);
:func:`roc`, :func:`tar_at_far` and :func:`eer` when ``score >= threshold``, every threshold
one of the scores (scikit-learn's ``roc_curve``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facerec.errors import DataError

#: insightface's distance grid (0 ... 3.99, step 0.01) as score thresholds, in its order (ties
#: go to the smallest distance, as there).
INSIGHTFACE_DISTANCE_THRESHOLDS = np.arange(0, 4, 0.01)
INSIGHTFACE_SCORE_THRESHOLDS = 1.0 - INSIGHTFACE_DISTANCE_THRESHOLDS / 2.0

#: The false-accept rates at which TAR and calibrated thresholds are reported.
DEFAULT_FARS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def _check(scores: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to float64 scores (N,) and bool labels (N,)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(issame).reshape(-1)
    if s.shape != y.shape:
        raise DataError(
            f"{s.size} scores but {y.size} same/different flags; expected one flag per score"
        )
    if s.size == 0:
        raise DataError("no pairs to evaluate; expected at least one scored pair")
    if not np.all(np.isfinite(s)):
        raise DataError("some pair scores are NaN or infinite; expected finite similarities")
    return s, y.astype(bool)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows to unit length: (N, D) -> (N, D), float64 kept, else float32; a zero row stays zero."""
    x = np.asarray(x)
    x = x if x.dtype == np.float64 else x.astype(np.float32, copy=False)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def pair_scores(emb1: np.ndarray, emb2: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows: (N, D), (N, D) -> (N,) float64 (zero row: 0)."""
    a = np.asarray(emb1, dtype=np.float64)
    b = np.asarray(emb2, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise DataError(
            f"pair embeddings of shapes {a.shape} and {b.shape}; expected two equal (N, D) arrays"
        )
    return np.einsum("nd,nd->n", l2_normalize(a), l2_normalize(b))


def accuracy_at_threshold(scores: np.ndarray, issame: np.ndarray, threshold: float) -> float:
    """Fraction of pairs classified correctly when "same" means ``score > threshold``."""
    s, y = _check(scores, issame)
    return float(np.mean((s > threshold) == y))


def best_threshold_accuracy(scores: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """``(accuracy, threshold)``: the best accuracy of "same when ``score > threshold``" on
    these (N,) scores and (N,) bool labels, in-sample (:func:`kfold_accuracy` is the protocol).

    Exact, O(N log N). The threshold is the midpoint between the neighbouring distinct scores of
    the cut (``>`` and ``>=`` agree there); among equally good cuts the highest one.
    """
    s, y = _check(scores, issame)
    order = np.argsort(-s, kind="stable")
    ss, ys = s[order], y[order]
    n = s.size
    n_neg = n - int(ys.sum())
    tp = np.concatenate([[0], np.cumsum(ys)])  # (N+1,)
    # cut k = "the top k scores are predicted same", valid only between distinct scores.
    valid = np.r_[True, ss[:-1] > ss[1:], True]
    correct = np.where(valid, tp + (n_neg - (np.arange(n + 1) - tp)), -1)
    best = int(np.argmax(correct))  # first = fewest accepted = highest threshold
    if best == 0:
        thr = float(ss[0]) + 1e-6 * max(1.0, abs(float(ss[0])))
    elif best == n:
        thr = float(ss[-1]) - 1e-6 * max(1.0, abs(float(ss[-1])))
    else:
        hi, lo = float(ss[best - 1]), float(ss[best])
        thr = (hi + lo) / 2.0
        if not lo < thr < hi:  # neighbouring floats: fall back to the strict rule's cut
            thr = lo
    return float(correct[best]) / n, thr


def _check_n_folds(n_folds: int, n: int) -> None:
    if n_folds < 2 or n_folds > n:
        raise DataError(f"{n_folds} folds for {n} pairs; expected 2 <= folds <= number of pairs")


def fold_ids(n: int, n_folds: int = 10) -> np.ndarray:
    """Fold index (N,) of each pair as scikit-learn's ``KFold(n_folds)``: contiguous folds in
    file order, the first ``n % n_folds`` one pair larger."""
    _check_n_folds(n_folds, n)
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


@dataclass
class KFoldResult:
    """Result of :func:`kfold_accuracy`: mean and std (ddof=0, as insightface) of the (F,)
    per-fold test accuracies, the (F,) thresholds chosen on the other folds and their mean."""

    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: np.ndarray
    fold_thresholds: np.ndarray
    threshold_mean: float


def stratified_fold_ids(issame: np.ndarray, n_folds: int = 10, seed: int = 0) -> np.ndarray:
    """Fold index (N,) of each pair, stratified: each class shuffled with ``seed`` and dealt to
    the folds in turn, so every fold holds the same share (within one pair) of both classes
    whatever the file's order. For benchmarks that define no folds."""
    y = np.asarray(issame, dtype=bool).reshape(-1)
    _check_n_folds(n_folds, y.size)
    rng = np.random.default_rng(seed)
    # the impostors continue the genuine pairs' deal, so fold sizes differ by <= 1
    order = np.concatenate([rng.permutation(np.flatnonzero(y == cls)) for cls in (True, False)])
    out = np.empty(y.size, dtype=np.int64)
    out[order] = np.arange(y.size) % n_folds
    return out


#: How folds are made where a benchmark defines none (results.json's ``fold_method``).
STRATIFIED_FOLDS = "stratified by class, seed 0"


def check_folds(
    issame: np.ndarray, folds: np.ndarray | None = None, n_folds: int = 10
) -> np.ndarray:
    """The (N,) fold of each pair for the k-fold protocol, checked before any scoring.

    ``folds``: (N,) folds the benchmark defines, kept as they are; None: ``n_folds`` folds
    stratified by class, seed 0 (:func:`stratified_fold_ids`). DataError for fewer pairs of a
    class than ``n_folds``, a given fold of one class, one fold only, or ``folds`` of another
    length (a set of one class only is left to the metrics that need both).
    """
    y = np.asarray(issame, dtype=bool).reshape(-1)
    if folds is None:
        fewest = min(int(y.sum()), int((~y).sum()))
        if 0 < fewest < n_folds:
            kind = "genuine" if int(y.sum()) == fewest else "impostor"
            raise DataError(
                f"{fewest} {kind} pairs cannot fill {n_folds} folds; expected at most "
                f"--folds {max(fewest, 2)} for these pairs (every fold needs both classes)"
            )
        return stratified_fold_ids(y, n_folds)
    fid = np.asarray(folds).reshape(-1)
    if fid.shape != y.shape:
        raise DataError(f"{fid.size} fold ids for {y.size} pairs; expected one per pair")
    uniq = np.unique(fid)
    if uniq.size < 2:
        raise DataError("all pairs are in one fold; expected at least two folds")
    one_class = [int(f) for f in uniq if np.unique(y[fid == f]).size < 2]
    if one_class and y.any() and not y.all():
        f = one_class[0]
        raise DataError(
            f"fold {f + 1} of the {uniq.size} the file defines holds only "
            f"{'genuine' if y[fid == f].all() else 'impostor'} pairs ({len(one_class)} such "
            "folds); expected every fold to hold both classes (a threshold learnt without one "
            "class is meaningless), as the benchmark's own folds do"
        )
    return fid


def kfold_accuracy(
    scores: np.ndarray,
    issame: np.ndarray,
    n_folds: int = 10,
    thresholds: np.ndarray | None = None,
    folds: np.ndarray | None = None,
) -> KFoldResult:
    """K-fold verification accuracy: each fold tested ("same" when ``score > threshold``) at
    the threshold with the best accuracy on the other folds.

    ``thresholds``: (T,) candidates, the first best one wins (default: insightface's distance
    grid as scores, 1.0, 0.995, ..., -0.995). ``folds``/``n_folds``: as :func:`check_folds`.
    """
    s, y = _check(scores, issame)
    thr = INSIGHTFACE_SCORE_THRESHOLDS if thresholds is None else np.asarray(thresholds, float)
    thr = thr.reshape(-1)
    if thr.size == 0:
        raise DataError("empty threshold list; expected at least one candidate threshold")
    fid = check_folds(y, folds, n_folds)
    uniq, sizes = np.unique(fid, return_counts=True)
    # correct[f, t] = pairs of fold f classified correctly at threshold t, by sorted counting.
    correct = np.zeros((uniq.size, thr.size), dtype=np.int64)
    for i, f in enumerate(uniq):
        pos = np.sort(s[(fid == f) & y])
        neg = np.sort(s[(fid == f) & ~y])
        tp = pos.size - np.searchsorted(pos, thr, side="right")  # pos with score > t
        tn = np.searchsorted(neg, thr, side="right")  # neg with score <= t
        correct[i] = tp + tn
    # each fold's threshold: the first best on the other folds
    best = np.argmax((correct.sum(axis=0) - correct) / (s.size - sizes)[:, None], axis=1)
    chosen = thr[best]
    accs = correct[np.arange(uniq.size), best] / sizes
    return KFoldResult(float(accs.mean()), float(accs.std()), accs, chosen, float(np.mean(chosen)))


def roc(
    scores: np.ndarray, issame: np.ndarray, drop_intermediate: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr, thresholds)``, identical to ``sklearn.metrics.roc_curve(issame,
    scores, drop_intermediate=...)``: thresholds from ``inf`` down through every distinct score.
    Needs at least one genuine and one impostor pair.
    """
    s, y = _check(scores, issame)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataError(
            f"{n_pos} genuine and {n_neg} impostor pairs; expected at least one of each for a ROC"
        )
    order = np.argsort(-s, kind="mergesort")
    ss, ys = s[order], y[order]
    last = np.r_[np.nonzero(ss[:-1] != ss[1:])[0], ss.size - 1]  # last index of each score run
    tps = np.cumsum(ys)[last]
    fps = (last + 1) - tps
    thr = ss[last]  # one point per distinct score, descending
    if drop_intermediate and fps.size > 2:
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos], np.r_[np.inf, thr]


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under a ROC curve by the trapezoidal rule (``fpr`` non-decreasing)."""
    return float(np.trapezoid(np.asarray(tpr, np.float64), np.asarray(fpr, np.float64)))


def eer(scores: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """``(eer, threshold)``: at the first ROC point where ``1 - tpr <= fpr``, the EER linearly
    interpolated from the previous point, and that point's threshold."""
    fpr, tpr, thr = roc(scores, issame)
    diff = (1.0 - tpr) - fpr  # decreasing from 1 (fpr = tpr = 0) to -1: i >= 1, d0 > 0 >= d1
    i = int(np.argmax(diff <= 0))
    d0, d1 = diff[i - 1], diff[i]
    rate = fpr[i - 1] + d0 / (d0 - d1) * (fpr[i] - fpr[i - 1])
    return float(rate), float(thr[i])


@dataclass
class TarAtFar:
    """The best TAR with FAR <= ``far``, its threshold ("same" when score >= it) and the FAR
    reached there. ``resolvable`` is False when ``far * n_impostors < 1``: the target cannot be
    measured and the numbers are those at FAR 0."""

    far: float
    tar: float
    threshold: float
    achieved_far: float
    resolvable: bool
    n_impostors: int


def tar_at_far(
    scores: np.ndarray, issame: np.ndarray, fars: tuple[float, ...] | list[float] = DEFAULT_FARS
) -> list[TarAtFar]:
    """:class:`TarAtFar` at each target FAR: the ROC point with the highest TPR whose FPR does
    not exceed it (the lowest threshold admitting at most ``floor(far * n_impostors)``)."""
    s, y = _check(scores, issame)
    raw = np.asarray(scores)
    dtype = raw.dtype if raw.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    fpr, tpr, thr = roc(s, y)
    n_neg = int((~y).sum())
    out = []
    for far in fars:
        i = int(np.nonzero(fpr <= far + 1e-15)[0][-1])  # tpr non-decreasing: the last is best
        t = float(thr[i])
        if math.isinf(t):  # nothing accepted: just above the top score, in the scores' precision
            t = float(np.nextafter(dtype.type(s.max()), dtype.type(np.inf)))
        out.append(TarAtFar(float(far), float(tpr[i]), t, float(fpr[i]), far * n_neg >= 1.0, n_neg))
    return out


def far_key(far: float) -> str:
    """Canonical text of a FAR, as used in metric names and JSON keys: 1e-4 -> "1e-4"."""
    mant, exp = f"{far:.0e}".split("e")
    return f"{mant}e{int(exp)}" if float(f"{far:.0e}") == far else repr(float(far))


def tar_table(scores: np.ndarray, issame: np.ndarray, fars: Sequence[float]) -> dict:
    """:func:`tar_at_far` as results.json holds it: ``{far_key: {tar, threshold, achieved_far,
    resolvable}}`` for (N,) scores and (N,) bool labels."""
    keys = ("tar", "threshold", "achieved_far", "resolvable")
    return {
        far_key(t.far): {k: getattr(t, k) for k in keys} for t in tar_at_far(scores, issame, fars)
    }


def verification_report(
    scores: np.ndarray,
    issame: np.ndarray,
    folds: np.ndarray | None = None,
    n_folds: int = 10,
    fars: tuple[float, ...] | list[float] = DEFAULT_FARS,
    fold_method: str = "given by the benchmark",
) -> dict:
    """Every verification number for one set of scored pairs, as a JSON-ready dict.

    ``fold_method`` says where given ``folds`` came from (without them: :data:`STRATIFIED_FOLDS`).
    ``tar_at_far`` is :func:`tar_table`'s; ``roc`` is {fpr, tpr, thresholds}, +inf as None.
    """
    s, y = _check(scores, issame)
    kf = kfold_accuracy(s, y, n_folds=n_folds, folds=folds)
    best_acc, best_thr = best_threshold_accuracy(s, y)
    fpr, tpr, thr = roc(s, y, drop_intermediate=True)
    rate, eer_thr = eer(s, y)
    n_neg = int((~y).sum())
    return {
        "num_pairs": int(s.size),
        "num_genuine": int(y.sum()),
        "num_impostor": n_neg,
        "folds": int(kf.fold_accuracies.size),
        "fold_method": STRATIFIED_FOLDS if folds is None else fold_method,
        "accuracy_mean": kf.accuracy_mean,
        "accuracy_std": kf.accuracy_std,
        "fold_accuracies": kf.fold_accuracies.tolist(),
        "fold_thresholds": kf.fold_thresholds.tolist(),
        "threshold_mean": kf.threshold_mean,
        "best_accuracy": best_acc,
        "best_threshold": best_thr,
        "auc": auc(fpr, tpr),
        "eer": rate,
        "eer_threshold": eer_thr,
        "min_resolvable_far": 1.0 / n_neg if n_neg else None,
        "tar_at_far": tar_table(s, y, fars),
        "roc": {
            "fpr": fpr.tolist(),
            "tpr": tpr.tolist(),
            "thresholds": [None if math.isinf(v) else float(v) for v in thr],
        },
    }
