"""Evaluation output: the console table, the JSON file and the PNG plots (matplotlib, Agg).

The JSON layout is documented in README.md, section "`results.json` keys".
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facerec.io import atomic_path, atomic_write_text
from facerec.metrics.verification import far_key


def _clean(obj):
    """Make ``obj`` strict-JSON: NaN/inf -> None, numpy -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray | np.generic):
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike[str], results: dict) -> None:
    """Write ``results`` as indented, strict JSON (no NaN), atomically."""
    atomic_write_text(path, json.dumps(_clean(results), indent=2, allow_nan=False) + "\n")


def _verification_title(ver_rows: list[tuple[str, str, dict]], default: int) -> str:
    """The verification table's title with the folds each benchmark used (its own, e.g. the 5
    of a pairs.txt header, else ``--folds``)."""
    used = {b: int(v.get("folds", default)) for _, b, v in ver_rows}
    if len(set(used.values())) == 1:
        return f"Verification ({next(iter(used.values()))}-fold)"
    return "Verification (k-fold: " + ", ".join(f"{b} {k}" for b, k in used.items()) + ")"


def percent(x: float | None) -> str:
    """A rate in percent with two decimals; "-" for None, NaN or inf."""
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.2f}"


def number(x: float | None, fmt: str = ".4f") -> str:
    """``x`` formatted with ``fmt``; "-" for None, NaN or inf."""
    return "-" if x is None or not math.isfinite(x) else format(x, fmt)


def rate(entry: dict | None, key: str, show: Callable[[float], str] = percent) -> str:
    """``show(entry[key])`` of a per-FAR entry; "-" without one or where it is not resolvable."""
    return "-" if entry is None or not entry["resolvable"] else show(entry[key])


#: the heads of the verification and identification summaries (console and HTML report), which
#: then have a column per FAR
VERIFICATION_HEAD = ["model", "benchmark", "pairs", "accuracy %", "AUC", "EER %"]
IDENTIFICATION_HEAD = ["model", "gallery ids", "mated", "non-mated", "rank-1 %", "rank-5 %"]
IDENTIFICATION_HEAD += ["rank-10 %"]


def verification_cells(v: dict, fars: list[str]) -> list[str]:
    """A benchmark entry's summary cells after the model and benchmark: pairs, accuracy, AUC,
    EER and the TAR at each of ``fars``."""
    acc = f"{percent(v['accuracy_mean'])} ± {percent(v['accuracy_std'])}"
    cells = [str(v["num_pairs"]), acc, number(v["auc"]), percent(v["eer"])]
    return cells + [rate(v["tar_at_far"].get(f), "tar") for f in fars]


def identification_cells(r: dict, fars: list[str]) -> list[str]:
    """An identification entry's summary cells after the model: gallery identities, mated and
    non-mated searches, rank-1/5/10 and the DIR at each of ``fars``."""
    cells = [str(r[k]) for k in ("num_gallery_identities", "num_mated", "num_nonmated")]
    cells += [percent(r[k]) for k in ("rank1", "rank5", "rank10")]
    return cells + [rate(r["dir_at_far"].get(f), "dir") for f in fars]


def format_table(results: dict) -> str:
    """The console summary of a results dict."""
    lines: list[str] = []
    models = results.get("models", {})
    ver_rows = [
        (name, b, v) for name, m in models.items() for b, v in m.get("verification", {}).items()
    ]
    fars = next((list(v["tar_at_far"]) for _, _, v in ver_rows if v["tar_at_far"]), [])
    if ver_rows:
        rows = [[name, b, *verification_cells(v, fars)] for name, b, v in ver_rows]
        lines.append(_verification_title(ver_rows, results.get("settings", {}).get("folds", 10)))
        lines += grid([*VERIFICATION_HEAD, *(f"TAR@{f}" for f in fars)], rows)
        if any(rate(v["tar_at_far"].get(f), "tar") == "-" for _, _, v in ver_rows for f in fars):
            lines.append("  - : FAR below 1/(impostor pairs), not resolvable with this many pairs")
        head = ["model", "benchmark", "k-fold", "EER"] + [f"thr@{f}" for f in fars]
        rows = [
            [name, b, f"{v['threshold_mean']:.4f}", f"{v['eer_threshold']:.4f}"]
            + [rate(v["tar_at_far"].get(f), "threshold", number) for f in fars]
            for name, b, v in ver_rows
        ]
        lines += ["", "Calibrated cosine thresholds (k-fold: mean over folds, same if score > t; "
                  "EER and FAR: same if score >= t)"]  # fmt: skip
        lines += grid(head, rows)
    lines += _quality_lines(ver_rows) + _calibration_lines(models)
    id_rows = [(name, m["identification"]) for name, m in models.items() if m.get("identification")]
    if id_rows:
        dfars = list(id_rows[0][1].get("dir_at_far", {}))
        rows = [[name, *identification_cells(r, dfars)] for name, r in id_rows]
        if lines:
            lines.append("")
        lines.append(f"Identification ({id_rows[0][1].get('index', 'flat')} index)")
        lines += grid([*IDENTIFICATION_HEAD, *(f"DIR@{f}" for f in dfars)], rows)
    return "\n".join(lines)


#: the columns of the face-image quality table after the model (and, in the console, the
#: benchmark): console and HTML report show the same cells (:func:`quality_cells`)
QUALITY_HEAD = ["method", "images", "median quality", "ERC area %", "oracle %", "no rejection %"]
QUALITY_HEAD += ["min quality", "images below", "pairs left out"]


def quality_cells(q: dict) -> list[str]:
    """One model's ``quality`` entry of a benchmark as the cells of :data:`QUALITY_HEAD`."""
    e, median = q["erc"], q["image_quality"]["median"]
    cells = [q["method"], str(q["num_images"]), "-" if median is None else f"{median:.4g}"]
    cells += [percent(e["area"]), percent(e["area_oracle"]), percent(e["area_random"])]
    if q.get("min_quality") is None:
        return [*cells, "-", "-", "-"]
    return [*cells, f"{q['min_quality']:g}", str(q["images_below"]), str(q["pairs_dropped"])]


def _quality_lines(ver_rows: list[tuple[str, str, dict]]) -> list[str]:
    """The face-image quality table (``--quality``): the ERC's areas and what
    ``--min-quality`` left out."""
    rows = [(name, b, v["quality"]) for name, b, v in ver_rows if v.get("quality")]
    if not rows:
        return []
    body = [[name, b, *quality_cells(q)] for name, b, q in rows]
    far = rows[0][2]["erc"]["far"]
    return [
        "",
        f"Face-image quality: mean FNMR % at FAR {far:g} while rejecting 0-50 % of pairs, worst "
        "image first (ERC area; the oracle is the best possible; lower is better)",
        *grid(["model", "benchmark", *QUALITY_HEAD], body),
    ]


def _calibration_lines(models: dict) -> list[str]:
    """The match-confidence table (``--calibrate``): held-out ECE, thresholds, where stored."""
    rows = [(name, m["calibration"]) for name, m in models.items() if m.get("calibration")]
    if not rows:
        return []
    fars = ["1e-2", "1e-3", "1e-4"]
    head = ["model", "benchmark", "method", "ECE", "Brier", *[f"thr@{f}" for f in fars], "stored"]
    body = []
    for name, c in rows:
        thr = {far_key(t["far"]): t["threshold"] for t in c["thresholds"]}
        body.append(
            [name, c["benchmark"], c["method"], f"{c['ece']:.4f}", f"{c['brier']:.4f}"]
            + [f"{thr[f]:.4f}" if f in thr else "-" for f in fars]
            + [c.get("written_to") or "not stored"]
        )
    return [
        "",
        f"Match confidence: score -> P(same identity), checked on {rows[0][1]['folds']} "
        "held-out folds (ECE: expected calibration error, 15 bins)",
        *grid(head, body),
    ]


def grid(head: list[str], rows: list[list[str]], left: int = 2) -> list[str]:
    """A console table: the head, a rule, the rows; the first ``left`` columns left-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i < left else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*head), "  ".join("-" * w for w in widths), *(fmt.format(*r) for r in rows)]


@contextlib.contextmanager
def _plot(
    path: str | os.PathLike[str], title: str, xlabel: str, ylabel: str, legend: str, grid="major"
) -> Iterator:
    """A titled, labelled 6x4.5 in figure's axes to draw on; then the grid lines (``grid``:
    "major", "both" or None) and the legend (at ``legend``) are added and the figure is written
    to ``path`` as PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    try:
        ax.set_title(title)
        yield ax
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if grid:
            ax.grid(True, which=grid, alpha=0.3)
        ax.legend(loc=legend, fontsize=8)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def plot_roc(
    path: str | os.PathLike[str],
    curves: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    title: str,
    min_far: float | None = None,
    max_far: float = 1.0,
) -> None:
    """ROC curves (label, fpr, tpr: arrays or lists) on one plot, log-scale FAR axis, as PNG.

    Points with FAR 0 cannot be drawn on a log axis; the axis starts at ``min_far`` (default
    the smallest non-zero FAR among the curves) and ends at ``max_far`` (IJB: 1e-6 ... 1e-1).
    """
    curves = [(label, np.asarray(f), np.asarray(t)) for label, f, t in curves]
    lows = [float(np.min(f[f > 0])) for _, f, _ in curves if np.any(f > 0)]
    lo = min_far or (min(lows) if lows else 1e-6)
    lo = min(10.0 ** math.floor(math.log10(lo)), 0.1)  # a decade boundary, at least 1 decade
    xlabel = "false accept rate (log scale)"
    with _plot(path, title, xlabel, "true accept rate", "lower right", "both") as ax:
        for label, fpr, tpr in curves:
            keep = fpr > 0
            ax.plot(fpr[keep], tpr[keep], label=label, linewidth=1.4)
        ax.set_xscale("log")
        ax.set_xlim(lo, max(max_far, 10 * lo))
        ax.set_ylim(0.0, 1.01)


def plot_histograms(
    path: str | os.PathLike[str],
    scores: np.ndarray,
    issame: np.ndarray,
    title: str,
    threshold: float | None = None,
) -> None:
    """Genuine and impostor cosine-score histograms (density) on one plot, as PNG."""
    s, y = np.asarray(scores, float), np.asarray(issame, bool)
    pad = 0.02 * max(1e-6, float(s.max() - s.min()))
    bins = np.linspace(float(s.min()) - pad, float(s.max()) + pad, 81)
    with _plot(path, title, "cosine similarity", "density", "best", None) as ax:
        ax.hist(s[y], bins=bins, density=True, alpha=0.6, label=f"genuine ({int(y.sum())})")
        ax.hist(s[~y], bins=bins, density=True, alpha=0.6, label=f"impostor ({int((~y).sum())})")
        if threshold is not None and math.isfinite(threshold):
            label = f"threshold {threshold:.3f}"
            ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label=label)


def plot_cmc(
    path: str | os.PathLike[str], curves: Sequence[tuple[str, np.ndarray]], title: str
) -> None:
    """CMC curves (label, (K,) rates) on one plot, as PNG."""
    with _plot(path, title, "rank", "identification rate", "lower right") as ax:
        for label, c in curves:
            c = np.asarray(c, float)
            ax.plot(np.arange(1, c.size + 1), c, marker="o", markersize=3, label=label)
        ax.set_ylim(0.0, 1.01)


def plot_erc(path: str | os.PathLike[str], curves: Sequence[tuple[str, Any]], title: str) -> None:
    """Error-versus-reject curves (label, :class:`~facerec.metrics.quality.ErrorRejectCurve`)
    on one plot, as PNG: FNMR of the kept genuine pairs against the fraction of pairs rejected
    by quality (lowest first), with each model's oracle dotted."""
    xlabel = "fraction of pairs rejected (lowest quality first)"
    ylabel = f"FNMR at FAR {curves[0][1].far:g} (threshold fixed)" if curves else "FNMR"
    with _plot(path, title, xlabel, ylabel, "upper right") as ax:
        for label, c in curves:
            (line,) = ax.plot(c.reject, c.fnmr, marker="o", markersize=3, label=label)
            ax.axhline(c.area_random, color=line.get_color(), linestyle=":", linewidth=0.8)
        ax.set_ylim(bottom=0.0)


def plot_reliability(path: str | os.PathLike[str], calibration: Any, title: str) -> None:
    """The reliability diagram of a :class:`~facerec.metrics.calibration.Calibration`: observed
    rate of genuine pairs against the mean predicted probability per bin (held-out folds), the
    diagonal being perfect calibration; the ECE in the legend."""
    bins = [r for r in calibration.reliability if r.count]
    label = f"{calibration.method} (ECE {calibration.ece:.4f})"
    xlabel, ylabel = "predicted P(same identity)", "observed fraction of genuine pairs"
    with _plot(path, title, xlabel, ylabel, "upper left") as ax:
        ax.plot([0, 1], [0, 1], color="k", linestyle="--", linewidth=0.8, label="perfect")
        ax.plot([r.mean_predicted for r in bins], [r.observed for r in bins], "o-", label=label)
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.0)
