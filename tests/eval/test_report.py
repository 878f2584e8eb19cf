"""The console table of ``facerec eval`` (facerec.eval.report.format_table)."""

from __future__ import annotations

from facerec.eval.report import format_table


def _verification(folds: int) -> dict:
    far = {"tar": 0.5, "threshold": 0.3, "resolvable": True}
    return {
        "num_pairs": 600, "accuracy_mean": 0.9, "accuracy_std": 0.01, "auc": 0.95, "eer": 0.1,
        "folds": folds, "tar_at_far": {"1e-2": far}, "threshold_mean": 0.3, "eer_threshold": 0.31,
    }  # fmt: skip


def test_title_names_the_folds_the_benchmarks_used() -> None:
    """An LFW pairs.txt whose header gives 5 folds is titled 5-fold, not --folds' 10."""
    one = {"settings": {"folds": 10}, "models": {"m": {"verification": {"lfw": _verification(5)}}}}
    table = format_table(one)
    assert "Verification (5-fold)" in table and "10-fold" not in table
    two = {
        "settings": {"folds": 10},
        "models": {"m": {"verification": {"lfw": _verification(5), "synth": _verification(10)}}},
    }
    assert "Verification (k-fold: lfw 5, synth 10)" in format_table(two)
