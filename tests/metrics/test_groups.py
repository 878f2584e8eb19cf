"""Per-group verification: hand-made scores whose per-group numbers are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.errors import DataError
from facerec.metrics.groups import group_report
from facerec.metrics.verification import verification_report

# Per fold (2 folds, the same scores in each):
#   A: genuine 0.9 x4; impostors 0.1, 0.1, 0.5, 0.6 -> any cut in [0.6, 0.9) is perfect: acc 1.
#   B: genuine 0.9 x3, 0.05; impostors 0.1 x3, 0.6 -> best cut in [0.6, 0.9): 7/8 = 0.875.
A_GEN, A_IMP = [0.9] * 4, [0.1, 0.1, 0.5, 0.6]
B_GEN, B_IMP = [0.9, 0.9, 0.9, 0.05], [0.1, 0.1, 0.1, 0.6]


def _data():
    scores, same, groups, folds = [], [], [], []
    for fold in (0, 1):
        for g, gen, imp in (("A", A_GEN, A_IMP), ("B", B_GEN, B_IMP)):
            scores += gen + imp
            same += [True] * len(gen) + [False] * len(imp)
            groups += [g] * (len(gen) + len(imp))
            folds += [fold] * (len(gen) + len(imp))
    return np.array(scores), np.array(same), groups, np.array(folds)


def test_known_per_group_numbers_and_spread():
    s, y, g, f = _data()
    # all 16 impostors: 0.6 x4, 0.5 x2, 0.1 x10 -> FAR 0.375 = 6/16 admits the 0.6 and 0.5 ones:
    # the shared threshold is 0.5 ("same" when score >= 0.5).
    rep = group_report(s, y, g, f, n_folds=2, fars=[0.25], deployed_far=0.375)
    a, b = rep["groups"]["A"], rep["groups"]["B"]
    assert (rep["num_pairs"], rep["num_grouped_pairs"], rep["num_excluded_pairs"]) == (32, 32, 0)
    assert a["accuracy_mean"] == 1.0 and b["accuracy_mean"] == 0.875
    assert b["fold_accuracies"] == [0.875, 0.875]
    # TAR at FAR 0.25 (2 of 8 impostors): A accepts every genuine pair, B 6 of 8.
    assert a["tar_at_far"]["0.25"]["tar"] == 1.0
    assert b["tar_at_far"]["0.25"]["tar"] == 0.75
    assert rep["deployed"]["threshold"] == 0.5
    assert rep["deployed"]["achieved_far"] == 0.375
    # at 0.5: A's impostors 0.5, 0.6 match in both folds (4 of 8), B's 0.6 (2 of 8);
    # B's genuine 0.05 fail (2 of 8), A's none.
    assert (a["fmr"], a["false_matches"], a["fnmr"]) == (0.5, 4, 0.0)
    assert (b["fmr"], b["false_non_matches"], b["fnmr"]) == (0.25, 2, 0.25)
    sp = rep["spread"]
    assert sp["accuracy"] == {
        "max": 1.0,
        "min": 0.875,
        "highest": "A",
        "lowest": "B",
        "gap": 0.125,
        "ratio": 1.0 / 0.875,
    }
    t = sp["tar_at_far"]["0.25"]
    assert (t["highest"], t["lowest"], t["ratio"], t["groups"]) == ("A", "B", 1.0 / 0.75, 2)
    assert (sp["fmr"]["highest"], sp["fmr"]["ratio"], sp["fmr"]["gap"]) == ("A", 2.0, 0.25)
    assert (sp["fnmr"]["highest"], sp["fnmr"]["ratio"]) == ("B", None)  # A's FNMR is 0
    assert rep["warnings"] == []


def test_each_group_is_verification_report_of_its_pairs():
    s, y, g, f = _data()
    rep = group_report(s, y, g, f, n_folds=2, fars=[0.25, 0.5], deployed_far=0.375)
    m = np.array(g) == "B"
    own = verification_report(s[m], y[m], f[m], 2, [0.25, 0.5])
    got = {k: v for k, v in rep["groups"]["B"].items() if k in own}
    assert got == own


def test_excluded_pairs_are_counted_and_set_the_shared_threshold():
    s, y, g, f = _data()
    # two cross-group impostors scoring 0.95, labelled None: no group's rates include them, but
    # at FAR 2/18 the shared threshold on all pairs lies just above them (0.95 is admitted).
    s = np.r_[s, 0.95, 0.95]
    y = np.r_[y, False, False]
    f = np.r_[f, 0, 1]
    rep = group_report(s, y, [*g, None, None], f, n_folds=2, fars=[0.25], deployed_far=2 / 18)
    assert (rep["num_grouped_pairs"], rep["num_excluded_pairs"]) == (32, 2)
    assert rep["deployed"]["threshold"] == 0.9  # the lowest score admitting only those two
    assert rep["groups"]["A"]["accuracy_mean"] == 1.0
    assert rep["groups"]["A"]["fmr"] == 0.0 and rep["groups"]["B"]["fnmr"] == 0.25


def test_unresolvable_far_has_no_ratio():
    s, y, g, f = _data()
    rep = group_report(s, y, g, f, n_folds=2, fars=[0.01], deployed_far=0.375)
    assert rep["spread"]["tar_at_far"]["1e-2"] is None  # 0.01 * 8 impostors < 1 in each group


def test_group_folds_fall_back_to_stratified_with_a_warning():
    s, y, g, _ = _data()
    # the benchmark's folds put all of group A's pairs in fold 0: restricted to A, one fold
    f = np.array([0 if x == "A" else i % 2 for i, x in enumerate(g)])
    rep = group_report(s, y, g, f, n_folds=2, fars=[0.25])
    assert rep["groups"]["A"]["fold_method"].startswith("stratified")
    assert rep["groups"]["B"]["folds"] == 2
    assert len(rep["warnings"]) == 1 and "group 'A': 2 folds stratified" in rep["warnings"][0]


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (lambda y, g: ~((np.array(g) == "B") & ~y), r"group 'B' has 8 genuine and 0 impostor"),
        (lambda y, g: ~((np.array(g) == "A") & y), r"group 'A' has 0 genuine and 8 impostor"),
    ],
)
def test_group_without_a_class_is_refused(keep, message):
    s, y, g, f = _data()
    m = keep(y, g)
    with pytest.raises(DataError, match=message):
        group_report(s[m], y[m], list(np.array(g)[m]), f[m], n_folds=2)


def test_bad_labels_are_refused():
    s, y, g, f = _data()
    with pytest.raises(DataError, match="31 group labels for 32 pairs"):
        group_report(s, y, g[:-1], f)
    with pytest.raises(DataError, match="none of the 32 pairs has a group"):
        group_report(s, y, [None] * 32, f)
