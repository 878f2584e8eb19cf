"""Verification metrics against independent references: scikit-learn and slow loops."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import KFold

from facerec.errors import DataError
from facerec.metrics.verification import (
    INSIGHTFACE_DISTANCE_THRESHOLDS,
    STRATIFIED_FOLDS,
    accuracy_at_threshold,
    auc,
    best_threshold_accuracy,
    check_folds,
    eer,
    far_key,
    fold_ids,
    kfold_accuracy,
    pair_scores,
    roc,
    stratified_fold_ids,
    tar_at_far,
    verification_report,
)


def fixed_scores(n: int = 6000, seed: int = 0, decimals: int | None = None):
    """Scores of a plausible verifier: genuine ~ N(0.6, 0.15), impostor ~ N(0.1, 0.15)."""
    rng = np.random.default_rng(seed)
    issame = np.zeros(n, dtype=bool)
    issame[rng.permutation(n)[: n // 2]] = True
    s = np.where(issame, rng.normal(0.6, 0.15, n), rng.normal(0.1, 0.15, n))
    s = np.clip(s, -1, 1)
    return (np.round(s, decimals) if decimals is not None else s), issame


def insightface_kfold(dist: np.ndarray, issame: np.ndarray, n_folds: int = 10):
    """insightface's calculate_roc accuracy as it is written there (the reference): a loop
    over sklearn KFold folds and over thresholds, accuracy = mean(less(dist, t) == issame)."""
    thresholds = np.arange(0, 4, 0.01)
    accs, chosen = [], []
    for train, test in KFold(n_splits=n_folds, shuffle=False).split(np.arange(dist.size)):
        train_acc = np.zeros(thresholds.size)
        for k, t in enumerate(thresholds):
            train_acc[k] = np.mean(np.less(dist[train], t) == issame[train])
        best = int(np.argmax(train_acc))
        accs.append(np.mean(np.less(dist[test], thresholds[best]) == issame[test]))
        chosen.append(thresholds[best])
    return np.array(accs), np.array(chosen)


def test_kfold_matches_insightface_loops_on_embeddings():
    rng = np.random.default_rng(1)
    n, d = 6000, 16
    issame = rng.random(n) < 0.5
    e1 = rng.normal(size=(n, d))
    e2 = np.where(issame[:, None], e1 + rng.normal(scale=1.2, size=(n, d)), rng.normal(size=(n, d)))
    # insightface: L2-normalise, squared L2 distance, thresholds 0..4 step 0.01
    n1 = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    n2 = e2 / np.linalg.norm(e2, axis=1, keepdims=True)
    dist = np.sum((n1 - n2) ** 2, axis=1)
    ref_acc, ref_thr = insightface_kfold(dist, issame)
    # insightface's .bin protocol: 10 contiguous folds (read_bin sets them)
    res = kfold_accuracy(pair_scores(e1, e2), issame, folds=fold_ids(n, 10))
    np.testing.assert_allclose(res.fold_accuracies, ref_acc)
    np.testing.assert_allclose(res.fold_thresholds, 1 - ref_thr / 2, atol=1e-12)
    assert res.accuracy_mean == pytest.approx(ref_acc.mean())
    assert res.accuracy_std == pytest.approx(ref_acc.std())
    assert 0.6 < res.accuracy_mean < 1.0


def slow_kfold(scores, issame, folds, thresholds):
    """Score-space k-fold with "same when score > t", by loops."""
    accs = []
    for f in np.unique(folds):
        train = [i for i in range(scores.size) if folds[i] != f]
        test = [i for i in range(scores.size) if folds[i] == f]
        train_acc = [np.mean([(scores[i] > t) == issame[i] for i in train]) for t in thresholds]
        t = thresholds[int(np.argmax(train_acc))]
        accs.append(np.mean([(scores[i] > t) == issame[i] for i in test]))
    return np.array(accs)


@pytest.mark.parametrize("n_folds", [10, 7])
def test_kfold_on_fixed_tied_scores_matches_slow_loop(n_folds):
    # scores quantised to the threshold grid: ties with thresholds must follow "score > t"
    scores, issame = fixed_scores(613, seed=2, decimals=2)
    thresholds = np.linspace(1, -1, 81)
    folds = fold_ids(scores.size, n_folds)
    ref = slow_kfold(scores, issame, folds, thresholds)
    res = kfold_accuracy(scores, issame, thresholds=thresholds, folds=folds)
    np.testing.assert_allclose(res.fold_accuracies, ref)
    # without folds: stratified ones, the same as passing them
    strat = stratified_fold_ids(issame, n_folds)
    res_s = kfold_accuracy(scores, issame, n_folds=n_folds, thresholds=thresholds)
    np.testing.assert_allclose(res_s.fold_accuracies, slow_kfold(scores, issame, strat, thresholds))
    # explicit folds (as from pairs.txt), interleaved rather than contiguous
    folds2 = np.arange(scores.size) % 3
    ref2 = slow_kfold(scores, issame, folds2, thresholds)
    res2 = kfold_accuracy(scores, issame, thresholds=thresholds, folds=folds2)
    np.testing.assert_allclose(res2.fold_accuracies, ref2)


@pytest.mark.parametrize("n", [6000, 6007, 25])
def test_fold_ids_match_sklearn_kfold(n):
    ids = fold_ids(n, 10)
    for f, (_, test) in enumerate(KFold(10, shuffle=False).split(np.arange(n))):
        np.testing.assert_array_equal(np.nonzero(ids == f)[0], test)


def test_default_grid_is_insightface_distance_grid():
    assert INSIGHTFACE_DISTANCE_THRESHOLDS.size == 400
    assert INSIGHTFACE_DISTANCE_THRESHOLDS[-1] == pytest.approx(3.99)


@pytest.mark.parametrize("decimals", [None, 2])
def test_roc_and_auc_match_sklearn(decimals):
    scores, issame = fixed_scores(3000, seed=3, decimals=decimals)
    fpr, tpr, thr = roc(scores, issame)
    rf, rt, rth = roc_curve(issame, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, rf)
    np.testing.assert_allclose(tpr, rt)
    assert np.isinf(thr[0]) and np.isinf(rth[0])
    np.testing.assert_allclose(thr[1:], rth[1:])
    cf, ct, cth = roc(scores, issame, drop_intermediate=True)
    rf, rt, rth = roc_curve(issame, scores, drop_intermediate=True)
    np.testing.assert_allclose(cf, rf)
    np.testing.assert_allclose(ct, rt)
    np.testing.assert_allclose(cth[1:], rth[1:])
    assert auc(fpr, tpr) == pytest.approx(sk_auc(rf, rt), abs=1e-12)
    assert auc(cf, ct) == pytest.approx(roc_auc_score(issame, scores), abs=1e-12)


def test_eer_matches_interpolated_roc_crossing():
    scores, issame = fixed_scores(4000, seed=4)
    rate, thr = eer(scores, issame)
    fpr, tpr, _ = roc_curve(issame, scores)
    ref = brentq(lambda x: 1.0 - x - np.interp(x, fpr, tpr), 0.0, 1.0)
    assert rate == pytest.approx(ref, abs=1e-6)
    # at the returned threshold the two error rates are within one pair of each other
    far = np.mean(scores[~issame] >= thr)
    frr = np.mean(scores[issame] < thr)
    assert abs(far - frr) <= 2.0 / min(issame.sum(), (~issame).sum())


def test_best_threshold_accuracy_is_exhaustive_optimum():
    scores, issame = fixed_scores(500, seed=5, decimals=2)
    acc, thr = best_threshold_accuracy(scores, issame)
    u = np.unique(scores)
    candidates = np.r_[u[0] - 1, (u[1:] + u[:-1]) / 2, u[-1] + 1]
    brute = max(np.mean((scores > t) == issame) for t in candidates)
    assert acc == pytest.approx(brute)
    assert accuracy_at_threshold(scores, issame, thr) == pytest.approx(acc)
    # the threshold lies strictly between scores: ">" and ">=" agree
    assert np.mean((scores >= thr) == issame) == pytest.approx(acc)
    # perfectly separable scores give accuracy 1 with a threshold between the classes
    acc, thr = best_threshold_accuracy(np.array([0.9, 0.8, 0.1, 0.2]), [1, 1, 0, 0])
    assert acc == 1.0 and 0.2 < thr < 0.8


def brute_tar_at_far(scores, issame, far):
    pos, neg = scores[issame], scores[~issame]
    best = (0.0, np.inf, 0.0)
    for t in np.r_[np.inf, np.unique(scores)]:
        f = np.mean(neg >= t)
        if f <= far:
            tar = np.mean(pos >= t)
            if tar > best[0] or (tar == best[0] and t < best[1]):
                best = (tar, t, f)
    return best


def test_tar_at_far_matches_brute_force_and_flags_unresolvable():
    scores, issame = fixed_scores(2000, seed=6)
    n_neg = int((~issame).sum())
    res = tar_at_far(scores, issame, (1e-1, 1e-2, 1e-3, 1e-4))
    for r in res:
        tar, _, f = brute_tar_at_far(scores, issame, r.far)
        assert r.tar == pytest.approx(tar)
        assert r.achieved_far == pytest.approx(f) and r.achieved_far <= r.far
        # the calibrated threshold reproduces the numbers
        assert np.mean(scores[issame] >= r.threshold) == pytest.approx(r.tar)
        assert np.mean(scores[~issame] >= r.threshold) == pytest.approx(r.achieved_far)
        assert r.resolvable == (r.far * n_neg >= 1)
        assert r.n_impostors == n_neg
    assert [r.resolvable for r in res] == [True, True, True, False]  # 1000 impostors
    # unresolvable: the threshold sits above every impostor score
    assert res[-1].threshold > scores[~issame].max()
    assert res[-1].achieved_far == 0.0
    # float32 scores: the calibrated thresholds hold when applied in float32 too
    s32 = scores.astype(np.float32)
    for r in tar_at_far(s32, issame, (1e-1, 1e-4)):
        assert np.mean(s32[~issame] >= r.threshold) == pytest.approx(r.achieved_far)
        assert np.mean(s32[issame] >= r.threshold) == pytest.approx(r.tar)


def test_report_has_every_number_and_strict_json_values():
    scores, issame = fixed_scores(1000, seed=7)
    rep = verification_report(scores, issame, fars=(1e-1, 1e-4))
    assert set(rep["tar_at_far"]) == {"1e-1", "1e-4"}
    assert rep["tar_at_far"]["1e-4"]["resolvable"] is False
    assert rep["num_pairs"] == 1000 and rep["folds"] == 10
    assert len(rep["fold_accuracies"]) == 10
    assert rep["roc"]["thresholds"][0] is None
    assert rep["auc"] == pytest.approx(roc_auc_score(issame, scores))
    assert rep["min_resolvable_far"] == pytest.approx(1 / (~issame).sum())


def test_far_key_and_input_errors():
    assert [far_key(f) for f in (1e-1, 1e-4, 1e-6)] == ["1e-1", "1e-4", "1e-6"]
    with pytest.raises(DataError, match="flags"):
        kfold_accuracy(np.zeros(5), np.zeros(4, bool))
    with pytest.raises(DataError, match="NaN"):
        roc(np.array([np.nan, 0.1]), np.array([True, False]))
    with pytest.raises(DataError, match="genuine"):
        roc(np.array([0.3, 0.1]), np.array([True, True]))


def test_stratified_folds_balance_a_file_sorted_by_class():
    """The issue-21 case: 150 genuine pairs, then 150 impostor pairs, 2 folds. Contiguous folds
    held one class each and printed 1.33 %; stratified folds give the separable data's accuracy."""
    rng = np.random.default_rng(0)
    issame = np.r_[np.ones(150, bool), np.zeros(150, bool)]
    scores = np.where(issame, rng.normal(0.6, 0.1, 300), rng.normal(0.1, 0.1, 300))
    ids = stratified_fold_ids(issame, 2)
    for f in (0, 1):
        assert (issame[ids == f]).sum() == 75 and (~issame[ids == f]).sum() == 75
    np.testing.assert_array_equal(ids, stratified_fold_ids(issame, 2))  # seeded
    res = kfold_accuracy(scores, issame, n_folds=2)
    best, _ = best_threshold_accuracy(scores, issame)
    assert res.accuracy_mean > 0.97 and abs(res.accuracy_mean - best) < 0.02
    # odd sizes: fold sizes differ by at most one, each class by at most one
    y = rng.random(1003) < 0.3
    ids = stratified_fold_ids(y, 10)
    assert np.ptp(np.bincount(ids)) <= 1
    assert np.ptp(np.bincount(ids[y], minlength=10)) <= 1


def test_file_folds_with_one_class_are_refused():
    issame = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    with pytest.raises(DataError, match="fold 1 of the 2 the file defines holds only genuine"):
        kfold_accuracy(np.linspace(0, 1, 20), issame, folds=fold_ids(20, 2))
    with pytest.raises(
        DataError, match=r"fold 1 of the 10 .* only impostor pairs \(10 such folds\)"
    ):
        check_folds(issame[::-1], fold_ids(20, 10))
    # folds given are kept as they are (an LFW pairs.txt's: each fold P genuine then P impostor)
    lfw = np.repeat(np.arange(3), 4)
    same = np.tile([True, True, False, False], 3)
    np.testing.assert_array_equal(check_folds(same, lfw), lfw)
    with pytest.raises(DataError, match="12 fold ids for 11 pairs"):
        check_folds(same[:11], lfw)
    # made folds: too few of a class for n_folds is refused, else stratified (seed 0)
    with pytest.raises(DataError, match="2 impostor pairs cannot fill 3 folds"):
        check_folds(np.r_[np.ones(8, bool), np.zeros(2, bool)], None, 3)
    np.testing.assert_array_equal(check_folds(same, None, 2), stratified_fold_ids(same, 2))
    rep = verification_report(np.linspace(0, 1, 12), same, lfw, fold_method="LFW pairs.txt")
    assert rep["fold_method"] == "LFW pairs.txt" and rep["folds"] == 3
    rep = verification_report(np.linspace(0, 1, 12), same, None, 2)
    assert rep["fold_method"] == STRATIFIED_FOLDS == "stratified by class, seed 0"
