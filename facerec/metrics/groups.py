"""Per-group (fairness) verification metrics (pure NumPy).

:func:`group_report` gives each group of pairs (e.g. RFW's races) its own
:func:`~facerec.metrics.verification.verification_report` and the spread between groups: of the
k-fold accuracy, of the TAR at each FAR (over the groups that resolve it), and of FMR/FNMR at one
deployed threshold (by default FAR 1e-3 on all pairs), applied to every group, as fairness
studies report. A pair labelled None (e.g. across groups) is in no group but still counts
towards the deployed threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facerec.errors import DataError

from .verification import (
    DEFAULT_FARS,
    STRATIFIED_FOLDS,
    _check,
    check_folds,
    far_key,
    tar_at_far,
    verification_report,
)

#: The FAR whose threshold on all pairs is the shared (deployed) threshold, by default.
DEPLOYED_FAR = 1e-3


def _labels(groups: Sequence[str | None] | np.ndarray, n: int) -> list[str | None]:
    labels = [None if g is None or (isinstance(g, str) and not g) else str(g) for g in groups]
    if len(labels) != n:
        raise DataError(f"{len(labels)} group labels for {n} pairs; expected one per pair")
    return labels


def _group_folds(
    name: str, y: np.ndarray, folds: np.ndarray | None, n_folds: int, fold_method: str
) -> tuple[np.ndarray | None, int, str, str | None]:
    """``(folds or None, n_folds, fold_method, warning)`` of one group: the benchmark's folds
    where each keeps both classes, else stratified folds (fewer for a small class), warned."""
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise DataError(
            f"group {name!r} has {n_pos} genuine and {n_neg} impostor pairs; expected at least "
            "one of each (every group needs both to be verified)"
        )
    why = ""
    if folds is not None:
        try:
            check_folds(y, folds)
            return folds, n_folds, fold_method, None
        except DataError as e:
            why = str(e)
    fewest = min(n_pos, n_neg)
    k = min(n_folds, fewest)
    if k < 2:
        kind = "genuine" if n_pos == fewest else "impostor"
        raise DataError(
            f"group {name!r} has {fewest} {kind} pair; expected at least 2 genuine and 2 "
            "impostor pairs per group for k-fold accuracy"
        )
    if not why and k == n_folds:
        return None, n_folds, STRATIFIED_FOLDS, None
    reason = (
        f"the benchmark's folds do not fit its pairs ({why})"
        if why
        else f"it has only {fewest} pairs of a class for {n_folds} folds"
    )
    return None, k, STRATIFIED_FOLDS, f"group {name!r}: {k} folds stratified by class, as {reason}"


def _spread_of(values: dict[str, float]) -> dict:
    """max, min, their groups, max − min and max / min (None when min is 0) of ``values``."""
    hi, lo = max(values, key=values.__getitem__), min(values, key=values.__getitem__)
    vmax, vmin = values[hi], values[lo]
    return {
        "max": vmax,
        "min": vmin,
        "highest": hi,
        "lowest": lo,
        "gap": vmax - vmin,
        "ratio": vmax / vmin if vmin > 0 else None,
    }


def group_report(
    scores: np.ndarray,
    issame: np.ndarray,
    groups: Sequence[str | None] | np.ndarray,
    folds: np.ndarray | None = None,
    n_folds: int = 10,
    fars: Sequence[float] = DEFAULT_FARS,
    deployed_far: float = DEPLOYED_FAR,
    fold_method: str = "given by the benchmark",
) -> dict:
    """Per-group verification and the spread between groups, as a JSON-ready dict.

    Args:
        groups: (N,) group label of each pair; None (or "") leaves the pair out of every group.
        folds: (N,) benchmark folds, used per group where each keeps both classes, else
            ``n_folds`` stratified folds (with a warning); None: stratified folds.
        deployed_far: the FAR whose threshold on all N pairs is applied to every group.

    ``groups`` holds each label's verification_report plus fmr, fnmr, false_matches and
    false_non_matches at the deployed threshold; ``spread`` the :func:`_spread_of` accuracy, fmr,
    fnmr and, per FAR, tar_at_far (None where fewer than two groups resolve it). DataError for
    labels of another length, no labelled pair, or a group short of either class.
    """
    s, y = _check(scores, issame)
    labels = _labels(groups, s.size)
    fid = None if folds is None else np.asarray(folds).reshape(-1)
    if fid is not None and fid.size != s.size:
        raise DataError(f"{fid.size} fold ids for {s.size} pairs; expected one per pair")
    names = sorted({g for g in labels if g is not None})
    if not names:
        raise DataError(f"none of the {s.size} pairs has a group; expected a group per pair")
    lab = np.array([g if g is not None else "" for g in labels], dtype=object)
    warnings: list[str] = []
    if len(names) == 1:
        warnings.append(f"only one group ({names[0]!r}): there is no spread to measure")
    dep = tar_at_far(s, y, [deployed_far])[0]
    per: dict[str, dict] = {}
    for g in names:
        m = lab == g
        gs, gy = s[m], y[m]
        gf, k, method, warn = _group_folds(
            g, gy, None if fid is None else fid[m], n_folds, fold_method
        )
        if warn:
            warnings.append(warn)
        try:
            rep = verification_report(gs, gy, gf, k, list(fars), method)
        except DataError as e:
            raise DataError(f"group {g!r}: {e}") from None
        fm = int(np.sum(gs[~gy] >= dep.threshold))
        fnm = int(np.sum(gs[gy] < dep.threshold))
        n_imp, n_gen = int((~gy).sum()), int(gy.sum())
        rep.update(false_matches=fm, false_non_matches=fnm, fmr=fm / n_imp, fnmr=fnm / n_gen)
        per[g] = rep
    tar_spread: dict[str, dict | None] = {}
    for far in fars:
        key = far_key(far)
        ok = {g: r["tar_at_far"][key]["tar"] for g, r in per.items()
              if r["tar_at_far"][key]["resolvable"]}  # fmt: skip
        tar_spread[key] = {**_spread_of(ok), "groups": len(ok)} if len(ok) >= 2 else None
    n_in = int(sum(r["num_pairs"] for r in per.values()))
    return {
        "num_pairs": int(s.size),
        "num_grouped_pairs": n_in,
        "num_excluded_pairs": int(s.size) - n_in,
        "deployed": {
            "far": float(deployed_far),
            **{k: getattr(dep, k) for k in ("threshold", "achieved_far", "resolvable")},
            "rule": "same when score >= threshold",
        },
        "groups": per,
        "spread": {
            "accuracy": _spread_of({g: r["accuracy_mean"] for g, r in per.items()}),
            "tar_at_far": tar_spread,
            **{k: _spread_of({g: r[k] for g, r in per.items()}) for k in ("fmr", "fnmr")},
        },
        "warnings": warnings,
    }
