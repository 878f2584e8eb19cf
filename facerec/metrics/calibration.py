"""Match confidence: a verification score -> the probability that the pair is one identity.

:func:`fit_calibration` fits a map on all of a benchmark's pairs; held-out predictions (stratified
k-fold, fixed seed) give the ECE (``sum_b n_b / N * |mean predicted_b - observed rate_b|`` over
equal-width bins), the Brier score and the reliability diagram. Maps: ``logistic`` (Platt,
``p = sigmoid(a * score + b)``, Newton / IRLS, ridge 1e-6) and ``isotonic`` (pool-adjacent-
violators knots, interpolated linearly, flat beyond the ends as scikit-learn's ``clip``).
Thresholds at the FARs are :func:`facerec.metrics.verification.tar_at_far`'s on all pairs, kept
where ``far * n_impostors >= 1``. A :class:`Calibration` is stored as plain JSON data, checked
field by field on reading (DataError in one line); nothing is evaluated or unpickled.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facerec.errors import ConfigError, DataError

from .verification import DEFAULT_FARS, far_key, tar_at_far

METHODS = ("logistic", "isotonic")
DEFAULT_BINS = 15
DEFAULT_FOLDS = 5
#: the version of :meth:`Calibration.to_dict`'s layout
FORMAT = 1
#: the key of the calibration in a checkpoint's ``facerec`` entry and in ONNX metadata
CHECKPOINT_KEY = "calibration"
ONNX_KEY = "facerec.calibration"
_RIDGE = 1e-6


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # exact and overflow-free


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"calibration method {method!r} is not known; expected one of {METHODS}")


def fit_logistic(scores: np.ndarray, same: np.ndarray, max_iter: int = 100) -> tuple[float, float]:
    """Platt scaling: ``(a, b)`` of ``p = sigmoid(a * score + b)`` by Newton / IRLS."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(same, np.float64)
    x = np.stack([s, np.ones_like(s)], 1)
    prior = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    w = np.array([0.0, math.log(prior / (1 - prior))])
    for _ in range(max_iter):
        p = _sigmoid(x @ w)
        grad = x.T @ (p - y) + _RIDGE * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + _RIDGE * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(w[0]), float(w[1])


def fit_isotonic(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: knots ``(x, y)``, x increasing, y non-decreasing in [0, 1].

    Equal scores are pooled first; each pooled block contributes its first and last score as
    knots (one knot for a block of one score), so interpolation is flat inside a block.
    """
    xs, inv = np.unique(np.asarray(scores, np.float64), return_inverse=True)
    wsum = np.bincount(inv).astype(np.float64)
    ysum = np.bincount(inv, weights=np.asarray(same, np.float64))
    blocks: list[list[Any]] = []  # [mean, weight, first, last distinct-score index]
    for i in range(xs.size):
        blocks.append([ysum[i] / wsum[i], wsum[i], i, i])
        while len(blocks) > 1 and blocks[-2][0] >= blocks[-1][0]:
            v2, w2, _, hi = blocks.pop()
            v1, w1, lo, _ = blocks[-1]
            blocks[-1] = [(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, lo, hi]
    kx: list[float] = []
    ky: list[float] = []
    for v, _, lo, hi in blocks:
        ends = (lo,) if hi == lo else (lo, hi)
        kx += [float(xs[j]) for j in ends]
        ky += [v] * len(ends)
    return np.asarray(kx), np.clip(np.asarray(ky), 0.0, 1.0)


def predict(method: str, parameters: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    """The probability of "same identity" for ``scores`` under a fitted map."""
    _check_method(method)
    s = np.asarray(scores, np.float64)
    if method == "logistic":
        return _sigmoid(parameters["a"] * s + parameters["b"])
    x = np.asarray(parameters["x"], np.float64)
    return np.interp(s, x, np.asarray(parameters["y"], np.float64))


def _fit(method: str, scores: np.ndarray, same: np.ndarray) -> dict[str, Any]:
    if method == "logistic":
        return dict(zip("ab", fit_logistic(scores, same), strict=True))
    return {k: v.tolist() for k, v in zip("xy", fit_isotonic(scores, same), strict=True)}


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of the reliability diagram: [lo, hi) of the predicted probability (the last bin
    includes 1); mean and observed rate of "same" are None for an empty bin."""

    lo: float
    hi: float
    mean_predicted: float | None
    observed: float | None
    count: int


def reliability(
    prob: np.ndarray, same: np.ndarray, bins: int = DEFAULT_BINS
) -> list[ReliabilityBin]:
    """The reliability diagram of ``prob`` against the labels ``same``, equal-width bins."""
    p = np.asarray(prob, np.float64)
    y = np.asarray(same, np.float64)
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        mean, obs = (float(p[m].mean()), float(y[m].mean())) if n else (None, None)
        out.append(ReliabilityBin(b / bins, (b + 1) / bins, mean, obs, n))
    return out


def ece(prob: np.ndarray, same: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error with ``bins`` equal-width bins (15 by default)."""
    n = len(prob)
    return float(
        sum(
            r.count / n * abs(r.mean_predicted - r.observed)  # type: ignore[operator]
            for r in reliability(prob, same, bins)
            if r.count
        )
    )


def brier(prob: np.ndarray, same: np.ndarray) -> float:
    """Brier score: the mean squared difference between probability and label."""
    p = np.asarray(prob, np.float64)
    return float(np.mean((p - np.asarray(same, np.float64)) ** 2))


def stratified_folds(same: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """A fold index (0..folds-1) per pair: each class shuffled with ``seed`` and dealt in turn."""
    y = np.asarray(same, bool)
    rng = np.random.default_rng(seed)
    out = np.empty(y.size, np.int64)
    for cls in (True, False):
        idx = np.nonzero(y == cls)[0]
        out[rng.permutation(idx)] = np.arange(idx.size) % folds
    return out


@dataclass
class Calibration:
    """A fitted score -> P(same identity) map with its check and the thresholds at FARs.

    ``parameters``: ``{"a", "b"}`` (logistic) or ``{"x": [...], "y": [...]}`` (isotonic knots);
    ``thresholds``: ``{far: score threshold}`` ("same" when ``score >= threshold``); ``ece``,
    ``brier`` and ``reliability`` are of the held-out fold predictions; ``n_*`` count the pairs
    it was fitted on; ``folds``, ``seed``, ``bins`` say how it was checked.
    """

    method: str
    parameters: dict[str, Any]
    thresholds: dict[float, float]
    ece: float
    brier: float
    n_pairs: int
    n_genuine: int
    n_impostor: int
    benchmark: str = ""
    folds: int = DEFAULT_FOLDS
    seed: int = 0
    bins: int = DEFAULT_BINS
    reliability: list[ReliabilityBin] = field(default_factory=list)

    def probability(self, scores: np.ndarray | float) -> np.ndarray:
        """P(same identity) for cosine ``scores`` (an array, or a 0-d array for one score)."""
        return predict(self.method, self.parameters, np.asarray(scores, np.float64))

    def threshold(self, far: float) -> float:
        """The score threshold at ``far`` (ConfigError naming the stored FARs if it has none)."""
        for f, t in self.thresholds.items():
            if math.isclose(f, far, rel_tol=1e-9):
                return t
        have = ", ".join(far_key(f) for f in self.thresholds) or "none"
        raise ConfigError(
            f"no threshold at FAR {far_key(far)} in the calibration (fitted on "
            f"{self.n_impostor} impostor pairs); expected one of: {have}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (the layout :meth:`from_dict` reads)."""
        return {
            "format": FORMAT,
            **{k: getattr(self, k) for k in _FIELDS[1:]},
            "parameters": dict(self.parameters),
            "thresholds": [{"far": f, "threshold": t} for f, t in self.thresholds.items()],
            "reliability": [
                [r.lo, r.hi, r.mean_predicted, r.observed, r.count] for r in self.reliability
            ],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON (the ONNX metadata value)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str, source: str = "calibration") -> Calibration:
        """:meth:`from_dict` of JSON text (DataError in one line if it is not JSON)."""
        try:
            entry = json.loads(text, parse_constant=_no_constant)
        except (ValueError, TypeError) as e:
            raise DataError(f"{source}: the calibration is not valid JSON ({e})") from None
        return cls.from_dict(entry, source)

    @classmethod
    def from_dict(cls, entry: Any, source: str = "calibration") -> Calibration:
        """Check every field of a stored calibration; DataError in one line naming the first bad
        one and what was expected."""
        return _parse(entry, source)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


_FIELDS = (
    "format method parameters thresholds ece brier n_pairs n_genuine n_impostor benchmark "
    "folds seed bins reliability"
).split()


def _parse(entry: Any, source: str) -> Calibration:
    def bad(key: str, why: str) -> DataError:
        return DataError(f"{source}: bad calibration entry {key!r}: {why}")

    def num(v: Any, key: str, lo: float = -math.inf, hi: float = math.inf) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise bad(key, f"{v!r} (expected a finite number)")
        if not lo <= v <= hi:
            raise bad(key, f"{v!r} (expected a number in [{lo:g}, {hi:g}])")
        return float(v)

    def count(v: Any, key: str, lo: int = 0) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise bad(key, f"{v!r} (expected a whole number >= {lo})")
        return int(v)

    if not isinstance(entry, dict):
        raise DataError(
            f"{source}: the calibration is a {type(entry).__name__}; expected a dict as "
            "facerec writes it"
        )
    unknown = sorted(set(map(str, entry)) - set(_FIELDS))
    missing = [k for k in _FIELDS if k not in entry]
    if unknown:
        raise bad(unknown[0], f"not a calibration field (expected only {', '.join(_FIELDS)})")
    if missing:
        raise bad(missing[0], "missing")
    if entry["format"] != FORMAT or isinstance(entry["format"], bool):
        raise bad("format", f"{entry['format']!r} (expected {FORMAT}; written by another version?)")
    method = entry["method"]
    if method not in METHODS:
        raise bad("method", f"{method!r} (expected one of {', '.join(METHODS)})")
    par = entry["parameters"]
    if not isinstance(par, dict):
        raise bad("parameters", f"a {type(par).__name__} (expected a dict)")
    keys = ("a", "b") if method == "logistic" else ("x", "y")
    if set(par) != set(keys):
        raise bad("parameters", f"keys {sorted(map(str, par))} (expected {' and '.join(keys)})")
    if method == "logistic":
        parameters: dict[str, Any] = {k: num(par[k], f"parameters.{k}") for k in keys}
    else:
        xs, ys = par["x"], par["y"]
        if not (isinstance(xs, list) and isinstance(ys, list) and 0 < len(xs) == len(ys)):
            raise bad("parameters", "x and y must be non-empty lists of the same length")
        x = [num(v, "parameters.x") for v in xs]
        y = [num(v, "parameters.y", 0.0, 1.0) for v in ys]
        if (np.diff(x) < 0).any() or (np.diff(y) < 0).any():
            raise bad("parameters", "x and y must be non-decreasing (an isotonic map)")
        parameters = {"x": x, "y": y}
    thr = entry["thresholds"]
    if not isinstance(thr, list):
        raise bad("thresholds", f"a {type(thr).__name__} (expected a list of {{far, threshold}})")
    thresholds: dict[float, float] = {}
    for item in thr:
        if not (isinstance(item, dict) and set(item) == {"far", "threshold"}):
            raise bad("thresholds", f"{item!r} (expected {{'far': F, 'threshold': T}})")
        f = num(item["far"], "thresholds.far", 0.0, 1.0)
        if f <= 0.0 or f in thresholds:
            raise bad("thresholds", f"FAR {f!r} (expected distinct FARs in (0, 1])")
        thresholds[f] = num(item["threshold"], "thresholds.threshold")
    if (np.diff([t for _, t in sorted(thresholds.items())]) > 0).any():  # by rising FAR
        raise bad(
            "thresholds",
            "a lower FAR with a lower threshold (expected thresholds to rise as the FAR falls)",
        )
    n_pairs = count(entry["n_pairs"], "n_pairs", 2)
    n_gen = count(entry["n_genuine"], "n_genuine", 1)
    n_imp = count(entry["n_impostor"], "n_impostor", 1)
    if n_gen + n_imp != n_pairs:
        raise bad("n_pairs", f"{n_pairs} (expected n_genuine + n_impostor = {n_gen + n_imp})")
    bench = entry["benchmark"]
    if not isinstance(bench, str) or len(bench) > 500:
        raise bad("benchmark", f"{bench!r} (expected a name of at most 500 characters)")
    bins = count(entry["bins"], "bins", 1)
    rel = entry["reliability"]
    if not (isinstance(rel, list) and len(rel) in (0, bins)):
        raise bad("reliability", f"expected a list of {bins} bins [lo, hi, mean, observed, count]")
    rows = []
    for r in rel:
        if not (isinstance(r, list) and len(r) == 5):
            raise bad("reliability", f"{r!r} (expected [lo, hi, mean, observed, count])")
        n = count(r[4], "reliability.count")
        mean = None if r[2] is None and not n else num(r[2], "reliability.mean", 0.0, 1.0)
        obs = None if r[3] is None and not n else num(r[3], "reliability.observed", 0.0, 1.0)
        lo = num(r[0], "reliability.lo", 0.0, 1.0)
        rows.append(ReliabilityBin(lo, num(r[1], "reliability.hi", 0.0, 1.0), mean, obs, n))
    return Calibration(
        method=method,
        parameters=parameters,
        thresholds=dict(sorted(thresholds.items(), reverse=True)),
        ece=num(entry["ece"], "ece", 0.0, 1.0),
        brier=num(entry["brier"], "brier", 0.0, 1.0),
        n_pairs=n_pairs,
        n_genuine=n_gen,
        n_impostor=n_imp,
        benchmark=bench,
        folds=count(entry["folds"], "folds", 2),
        seed=count(entry["seed"], "seed"),
        bins=bins,
        reliability=rows,
    )


def fit_calibration(
    scores: np.ndarray,
    same: np.ndarray,
    method: str = "isotonic",
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    bins: int = DEFAULT_BINS,
    benchmark: str = "",
    fars: tuple[float, ...] = DEFAULT_FARS,
) -> Calibration:
    """Fit score -> P(same identity) on (N,) pair scores and (N,) bool labels (True: genuine)
    and check it by a ``folds``-fold stratified check dealt with ``seed``.

    ConfigError for an unknown method, folds < 2 or bins < 1; DataError for scores and labels of
    different lengths, a non-finite score, or fewer than ``folds`` pairs of either class.
    """
    _check_method(method)
    if folds < 2 or bins < 1:
        raise ConfigError(f"folds {folds} and bins {bins}: expected folds >= 2 and bins >= 1")
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(same).reshape(-1)
    if s.size != y.size:
        raise DataError(f"{s.size} scores and {y.size} labels; expected one label per score")
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise DataError("labels other than 0/1 or True/False; expected True for a genuine pair")
        y = y.astype(bool)
    if not np.isfinite(s).all():
        raise DataError(f"{int((~np.isfinite(s)).sum())} scores are not finite; expected numbers")
    n_gen, n_imp = int(y.sum()), int((~y).sum())
    if min(n_gen, n_imp) < folds:
        raise DataError(
            f"{n_gen} genuine and {n_imp} impostor pairs; expected at least {folds} of each "
            f"for a {folds}-fold check"
        )
    fold = stratified_folds(y, folds, seed)
    held = np.empty(s.size)
    for k in range(folds):
        test = fold == k
        held[test] = predict(method, _fit(method, s[~test], y[~test]), s[test])
    thresholds = {t.far: t.threshold for t in tar_at_far(s, y, list(fars)) if t.resolvable}
    return Calibration(
        method=method,
        parameters=_fit(method, s, y),
        thresholds=thresholds,
        ece=ece(held, y, bins),
        brier=brier(held, y),
        n_pairs=int(s.size),
        n_genuine=n_gen,
        n_impostor=n_imp,
        benchmark=benchmark,
        folds=folds,
        seed=seed,
        bins=bins,
        reliability=reliability(held, y, bins),
    )


def calibration_in_checkpoint(ckpt: Any, source: str = "checkpoint") -> Calibration | None:
    """The calibration stored in a checkpoint dict's ``facerec`` entry (None when it has none)."""
    meta = ckpt.get("facerec") if isinstance(ckpt, dict) else None
    entry = meta.get(CHECKPOINT_KEY) if isinstance(meta, dict) else None
    if entry is None:
        return None
    return Calibration.from_dict(entry, f"{source}: facerec.{CHECKPOINT_KEY}")


def calibration_in_onnx_props(props: dict[str, str], source: str = "<onnx>") -> Calibration | None:
    """The calibration stored in ONNX ``metadata_props`` under :data:`ONNX_KEY` (or None)."""
    text = props.get(ONNX_KEY)
    return None if text is None else Calibration.from_json(text, f"{source}: metadata {ONNX_KEY}")


def format_calibration(cal: Calibration) -> str:
    """A few lines for the console: the method, the held-out ECE and Brier, the thresholds."""
    text = (
        f"calibration ({cal.method}, {cal.benchmark or 'pairs'}: {cal.n_genuine} genuine + "
        f"{cal.n_impostor} impostor pairs): held-out ECE {cal.ece:.4f} ({cal.bins} equal-width "
        f"bins, {cal.folds}-fold), Brier {cal.brier:.4f}"
    )
    if cal.thresholds:
        text += "\n  thresholds: " + ", ".join(
            f"FAR {far_key(f)}: {t:.4f}" for f, t in cal.thresholds.items()
        )
    return text
