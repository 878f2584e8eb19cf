"""``facerec eval --report``: one self-contained HTML page of the results and the hardest errors.

``report.html`` (beside ``results.json``) holds, per benchmark and model, the summary table, the
plots eval drew, the calibrated thresholds and the hardest pairs at the k-fold threshold (the
lowest-scoring genuine and highest-scoring impostor pairs, as the model saw them); for
identification, the probes whose true identity ranks worst with their best gallery matches.
Every image is a ``data:`` URI; there is no script and no external style sheet. The eval run
hands over what it computed (:class:`ReportData`); nothing is embedded again.
"""

from __future__ import annotations

import base64
import datetime
import functools
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facerec.data.image import ResizeMode, encode_image, fit_to_size
from facerec.data.sources import FileImages, ImageSource
from facerec.errors import DataError
from facerec.inference import Embedder
from facerec.io import atomic_write_text
from facerec.metrics.verification import far_key

from .benchmarks import PairBenchmark
from .groups import group_rows, groups_source, spread_lines
from .report import (
    IDENTIFICATION_HEAD,
    QUALITY_HEAD,
    VERIFICATION_HEAD,
    identification_cells,
    number,
    percent,
    quality_cells,
    verification_cells,
)

#: hardest genuine and impostor pairs shown per model and benchmark, and worst-ranked
#: identification probes per model (``--report-pairs``); gallery matches shown per probe
DEFAULT_REPORT_PAIRS = 10
DEFAULT_TOP_MATCHES = 5
THUMB_JPEG_QUALITY = 92


# ------------------------------------------------------------------------------ collected data


@dataclass
class PairScores:
    """One model on one verification benchmark, as scored by eval: ``bench`` (the pairs kept),
    whose pairs index ``images`` (decoded only for the pairs shown), ``scores`` (N,) cosine, the
    k-fold ``threshold`` (same when score > it), and how the model's input was made from each
    image (``input_size``, ``resize_mode``)."""

    model: str
    bench: PairBenchmark
    images: ImageSource
    scores: np.ndarray
    threshold: float
    input_size: tuple[int, int]
    resize_mode: ResizeMode


@dataclass
class ProbeRow:
    """One identification probe: its true identity's rank and its best gallery matches
    (``matches``: (identity, best gallery image of it, score), best first)."""

    probe: str
    identity: str
    rank: int
    true_score: float
    true_image: str
    matches: list[tuple[str, str, float]]


@dataclass
class ProbeRanking:
    """The worst-ranked probes of one model (worst first) and how they were preprocessed."""

    model: str
    rows: list[ProbeRow]
    num_mated: int
    input_size: tuple[int, int]
    resize_mode: ResizeMode


@dataclass
class ReportData:
    """What an eval run hands to the report: filled with :meth:`add_pairs` and
    :meth:`add_identification` while eval runs, written by :func:`write_html_report`;
    ``num_shown`` hardest pairs of each kind and worst probes are shown (``--report-pairs``)."""

    num_shown: int = DEFAULT_REPORT_PAIRS
    verification: list[PairScores] = field(default_factory=list)
    identification: list[ProbeRanking] = field(default_factory=list)

    def add_pairs(
        self,
        model: str,
        images: ImageSource,
        bench: PairBenchmark,
        scores: np.ndarray,
        threshold: float,
        emb: Embedder,
    ) -> None:
        """Keep one model's (N,) pair ``scores`` on ``bench``, whose pairs index ``images``."""
        s = np.asarray(scores, np.float64).reshape(-1)
        size, mode = (int(emb.input_size[0]), int(emb.input_size[1])), emb.resize_mode
        self.verification.append(PairScores(model, bench, images, s, float(threshold), size, mode))

    def add_identification(
        self, model: str, gallery: np.ndarray, probes: np.ndarray, data: Any, emb: Embedder
    ) -> None:
        """Rank the probes of one model and keep the worst (see :func:`worst_probes`).

        ``data``: the :class:`~facerec.eval.evaluation.IdentificationSet`; gallery: (G, D) unit
        rows of its gallery images, probes: (P, D) unit rows of its probe images (label -1: not
        enrolled, skipped). Identities are named by the image's parent folder.
        """
        gp, pp = [str(q) for q in data.gallery_paths], [str(q) for q in data.probe_paths]
        gl, pl = data.gallery_labels, data.probe_labels
        rows, mated = worst_probes(gallery, gl, gp, probes, pl, pp, self.num_shown)
        size = (int(emb.input_size[0]), int(emb.input_size[1]))
        self.identification.append(ProbeRanking(model, rows, mated, size, emb.resize_mode))


# ----------------------------------------------------------------------------------- analysis


def hardest_pairs(scores: np.ndarray, issame: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(genuine, impostor)``: the indices of the ``n`` lowest-scoring genuine and ``n``
    highest-scoring impostor pairs of (N,) ``scores`` and ``issame``, (<= n,) int64 each,
    hardest first (ties by index)."""
    s, y = np.asarray(scores, np.float64).reshape(-1), np.asarray(issame, bool).reshape(-1)
    gen, imp = (np.flatnonzero(m).astype(np.int64) for m in (y, ~y))
    return gen[np.argsort(s[gen], kind="stable")][:n], imp[np.argsort(-s[imp], kind="stable")][:n]


def worst_probes(
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    gallery_paths: Sequence[str],
    probes: np.ndarray,
    probe_labels: np.ndarray,
    probe_paths: Sequence[str],
    n: int = DEFAULT_REPORT_PAIRS,
    top: int = DEFAULT_TOP_MATCHES,
    max_elements: int = 1 << 24,
) -> tuple[list[ProbeRow], int]:
    """The ``n`` mated probes whose true identity ranks worst, with their ``top`` matches.

    Ranks are by identity, as in :func:`facerec.eval.identification.identify` (an identity
    scores its best gallery image), exact, in chunks of at most ``max_elements`` similarities.
    Worst = highest rank, then lowest true score. gallery: (G, D) unit rows, gallery_labels (G,);
    probes: (P, D) unit rows, probe_labels (P,) (labels not in the gallery are skipped).
    Returns ``(rows, num_mated)``: up to ``n`` :class:`ProbeRow`, worst first.
    """
    g, p = (np.asarray(x, np.float32) for x in (gallery, probes))
    gl, pl = (np.asarray(x, np.int64).reshape(-1) for x in (gallery_labels, probe_labels))
    if g.ndim != 2 or p.ndim != 2 or g.shape[1] != p.shape[1] or g.shape[0] != gl.size:
        raise DataError(
            f"gallery {g.shape} / probes {p.shape} embeddings; expected (G, D) and (P, D) with "
            "one label per row"
        )
    order = np.argsort(gl, kind="stable")
    ids, starts = np.unique(gl[order], return_index=True)
    gs = g[order]
    mated = np.nonzero(np.isin(pl, ids))[0]
    if mated.size == 0 or n <= 0:
        return [], int(mated.size)
    col = np.searchsorted(ids, pl[mated])  # identity column of each mated probe's truth
    ranks = np.empty(mated.size, np.int64)
    true_s = np.empty(mated.size, np.float64)
    chunk = max(1, max_elements // max(1, gs.shape[0]))
    for s in range(0, mated.size, chunk):
        sim = p[mated[s : s + chunk]] @ gs.T  # (c, G)
        best = np.maximum.reduceat(sim, starts, axis=1)  # (c, I) best image per identity
        t = best[np.arange(best.shape[0]), col[s : s + chunk]]
        true_s[s : s + chunk] = t
        ranks[s : s + chunk] = 1 + (best > t[:, None]).sum(1)
    worst = np.lexsort((true_s, -ranks))[:n]
    ends = np.r_[starts[1:], gs.shape[0]]
    rows = []
    for w in worst:
        sim = gs @ p[mated[w]]  # (G,)
        best_img = starts + [int(np.argmax(sim[a:e])) for a, e in zip(starts, ends, strict=True)]
        best = sim[best_img]
        top_ids = np.argsort(-best, kind="stable")[:top]
        paths = {i: gallery_paths[order[best_img[i]]] for i in top_ids}
        matches = [(Path(q).parent.name, q, float(best[i])) for i, q in paths.items()]
        probe, true_img = probe_paths[mated[w]], gallery_paths[order[best_img[col[w]]]]
        score, rank = float(true_s[w]), int(ranks[w])
        rows.append(ProbeRow(probe, Path(probe).parent.name, rank, score, true_img, matches))
    return rows, int(mated.size)


# ------------------------------------------------------------------------------------- images


def image_data_uri(rgb: np.ndarray) -> str:
    """An RGB uint8 (H, W, 3) image as a ``data:image/jpeg;base64,...`` URI."""
    return _data_uri(encode_image(rgb, "jpg", THUMB_JPEG_QUALITY, f"image {rgb.shape}"), "jpeg")


def _img(cls: str, alt: str, png: Path) -> str:
    """The ``<img>`` of a plot eval drew, as a ``data:`` URI (DataError when it is missing)."""
    try:
        data = png.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{png}: plot not found; expected the PNG eval draws") from None
    uri = _data_uri(data, "png" if png.suffix.lower() == ".png" else "jpeg")
    return f'<img class="{cls}" alt="{_e(alt)}" src="{uri}">'


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:image/{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_name(images: ImageSource, i: int) -> str:
    """A short, human name of image ``i`` of a source: its file path (the last two parts),
    ``lfw.bin #i`` for a .bin set, ``synthetic id/image`` for synthetic faces. A source that
    wraps another (``.images``, e.g. aligned crops or a subset with ``.indices``) is named by the
    image it wraps."""
    inner = getattr(images, "images", None)
    if inner is not None and hasattr(inner, "__getitem__") and hasattr(inner, "__len__"):
        idx = getattr(images, "indices", None)
        return image_name(inner, int(idx[i]) if idx is not None else i)
    if (paths := getattr(images, "paths", None)) is not None:
        return "/".join(Path(paths[i]).parts[-2:])
    if (refs := getattr(images, "refs", None)) is not None:
        ident, k = refs[i]
        return f"synthetic id {ident} image {k}"
    if source := getattr(images, "source", None):
        return f"{Path(str(source)).name} #{i}"
    return f"image {i}"


def _thumb(images: ImageSource, i: int, size: tuple[int, int], mode: ResizeMode) -> str:
    return image_data_uri(fit_to_size(images[i], size, mode))


# --------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.5em} h2{border-bottom:2px solid #ccc;padding-top:.6em} h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2} td.l,th.l{text-align:left}
.plots img{max-width:48%;margin-right:1%;vertical-align:top;border:1px solid #eee}
.pairs{display:flex;flex-wrap:wrap;gap:10px}
.pair{border:1px solid #ccc;border-radius:4px;padding:4px;width:250px;font-size:.8em}
.pair.error{border-color:#c33;background:#fff3f3}
.pair img{width:120px;height:auto;image-rendering:auto}
.cap{word-break:break-all} .score{font-weight:bold;font-size:1.1em}
.probe{display:flex;gap:8px;align-items:flex-start;border-bottom:1px solid #ddd;padding:6px 0}
.probe figure{margin:0;width:104px;font-size:.72em;word-break:break-all}
.probe figure img{width:96px}
.probe figure.true{outline:3px solid #3a3} .probe figure.query{outline:3px solid #36c}
.meta{color:#666;font-size:.85em} nav a{margin-right:1em}
table.findings td{vertical-align:middle;text-align:left}
table.findings img{width:64px;height:64px;margin-right:2px}
"""


def html_page(title: str, body: list[str]) -> str:
    """A self-contained page with facerec's one stylesheet: ``title`` (escaped) and the HTML
    ``body`` parts, in order. The eval report and the doctor's page are both built here."""
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    return "\n".join([*head, *body, "</body></html>"]) + "\n"


def html_table(
    head: list[str], rows: list[str], cls: str = "", table_id: str = "", left: int = 0
) -> str:
    """A table of escaped ``head`` cells (the first ``left`` aligned left, as their columns)
    and ready-made ``<tr>`` ``rows``."""
    return "".join(_table_lines(head, rows, cls, table_id, left))


def _table_lines(
    head: list[str], rows: list[str], cls: str = "", table_id: str = "", left: int = 0
) -> list[str]:
    """:func:`html_table` as its parts: the head row, each row, the end tag."""
    attrs = (f' id="{_e(table_id)}"' if table_id else "") + (f' class="{_e(cls)}"' if cls else "")
    return [f"<table{attrs}><tr>{_cells('th', head, left)}</tr>", *rows, "</table>"]


def html_row(cells: list, left: int = 0) -> str:
    """A ``<tr>`` of escaped ``cells``, the first ``left`` aligned left."""
    return f"<tr>{_cells('td', cells, left)}</tr>"


def _cells(tag: str, cells: list, left: int = 0) -> str:
    """Escaped ``cells`` as ``tag`` (td, th) elements, the first ``left`` aligned left."""
    cls = [f'<{tag} class="l">' if i < left else f"<{tag}>" for i in range(len(cells))]
    return "".join(f"{c}{_e(x)}</{tag}>" for c, x in zip(cls, cells, strict=True))


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def groups_html(model: str, bench: str, entry: dict) -> str:
    """An HTML section of one model's per-group entry on ``bench``: the table of
    :func:`~facerec.eval.groups.group_rows` and the sentences of
    :func:`~facerec.eval.groups.spread_lines`."""
    head, rows = group_rows(entry)
    table = html_table(head, [html_row(r, left=1) for r in rows], "groups", left=1)
    items = "".join(f"<li>{_e(s)}</li>" for s in spread_lines(entry))
    return (
        f'<section class="groups"><h3>Groups: {_e(model)} on {_e(bench)}</h3>'
        f'<p class="meta">{_e(groups_source(entry))}</p>{table}<ul>{items}</ul></section>'
    )


def _anchor(*parts: str) -> str:
    return "-".join("".join(c if c.isalnum() else "_" for c in p) for p in parts)


def _summary(results: dict) -> list[str]:
    out = ['<section id="summary"><h2>Summary</h2>']
    models = results.get("models", {})
    rows = [(m, b, v) for m, mv in models.items() for b, v in mv.get("verification", {}).items()]
    if rows:
        fars = list(rows[0][2]["tar_at_far"])
        head = [*VERIFICATION_HEAD, *(f"TAR@{f} %" for f in fars)]
        body = [
            f'<tr><td class="l">{_e(m)}</td><td class="l"><a href="#{_anchor("b", b)}">{_e(b)}'
            f"</a></td>{_cells('td', verification_cells(v, fars))}</tr>"
            for m, b, v in rows
        ]
        out += _table_lines(head, body, "summary", left=2)
        out.append('<p class="meta">- : FAR below 1/(impostor pairs), not resolvable with this '
                   "many pairs. Accuracy: k-fold, mean ± std over folds.</p>")  # fmt: skip
    ids = [(m, mv["identification"]) for m, mv in models.items() if mv.get("identification")]
    if ids:
        dfars = list(ids[0][1].get("dir_at_far", {}))
        head = [*IDENTIFICATION_HEAD, *(f"DIR@{f} %" for f in dfars)]
        body = [html_row([m, *identification_cells(r, dfars)], left=1) for m, r in ids]
        out += _table_lines(head, body, "summary", left=1)
    out.append("</section>")
    return out


def _threshold_table(v: dict) -> str:
    rows = [
        ("k-fold (mean over folds)", v["threshold_mean"], v["accuracy_mean"], "accuracy", "> t"),
        ("best on all pairs (optimistic)", v["best_threshold"], v["best_accuracy"], "accuracy",
         "> t"),
        ("EER", v["eer_threshold"], v["eer"], "EER", ">= t"),
    ]  # fmt: skip
    rows += [(f"FAR {f} (achieved {number(t['achieved_far'], '.2e')})", t["threshold"], t["tar"],
              "TAR", ">= t") for f, t in v["tar_at_far"].items() if t["resolvable"]]  # fmt: skip
    body = "".join(
        f'<tr><td class="l">{_e(a)}</td><td>{number(t)}</td><td class="l">{_e(w)}</td>'
        f'<td>{percent(x)} %</td><td class="l">{_e(rule)}</td></tr>'
        for a, t, x, w, rule in rows
    )
    return ('<table class="thresholds"><tr><th class="l">operating point</th><th>cosine '
            'threshold t</th><th class="l">rate</th><th>value</th><th class="l">same when</th>'
            f"</tr>{body}</table>")  # fmt: skip


def _pair_cards(ps: PairScores, idx: np.ndarray, kind: str) -> str:
    cards = []
    for k in idx:
        i, j = (int(x) for x in ps.bench.pairs[k])
        s = float(ps.scores[k])
        error = (s > ps.threshold) != (kind == "genuine")
        n1, n2 = image_name(ps.images, i), image_name(ps.images, j)
        a, b = (_thumb(ps.images, x, ps.input_size, ps.resize_mode) for x in (i, j))
        cards.append(
            f'<div class="pair {kind}{" error" if error else ""}" data-kind="{kind}" '
            f'data-pair="{int(k)}" data-score="{s:.6f}" data-file1="{_e(n1)}" '
            f'data-file2="{_e(n2)}"><img src="{a}" alt="{_e(n1)}" title="{_e(n1)}">'
            f'<img src="{b}" alt="{_e(n2)}" title="{_e(n2)}"><div class="cap">'
            f'<span class="score">{s:.4f}</span> pair {int(k)}, '
            f"{'error' if error else 'correct'}<br>{_e(n1)}<br>{_e(n2)}</div></div>"
        )
    return '<div class="pairs">' + "".join(cards) + "</div>"


def _errors(ps: PairScores, n: int) -> list[str]:
    gen, imp = hardest_pairs(ps.scores, ps.bench.issame, n)
    n_fr = int(np.sum(ps.bench.issame & ~(ps.scores > ps.threshold)))
    n_fa = int(np.sum(~ps.bench.issame & (ps.scores > ps.threshold)))
    return [
        f'<div class="errors" id="{_anchor("err", ps.bench.name, ps.model)}">',
        f"<p>At the k-fold threshold {ps.threshold:.4f} (same when score &gt; t): "
        f"{n_fr} of {int(ps.bench.issame.sum())} genuine pairs rejected, {n_fa} of "
        f"{int((~ps.bench.issame).sum())} impostor pairs accepted. Images as the model saw them "
        f"({ps.input_size[0]}×{ps.input_size[1]}, {_e(ps.resize_mode)}); errors framed red.</p>",
        f"<h4>{len(gen)} lowest-scoring genuine pairs</h4>",
        _pair_cards(ps, gen, "genuine"),
        f"<h4>{len(imp)} highest-scoring impostor pairs</h4>",
        _pair_cards(ps, imp, "impostor"),
        "</div>",
    ]


def _probes(pr: ProbeRanking) -> list[str]:
    out = [
        f'<div class="probes" id="{_anchor("id", pr.model)}"><h3>{_e(pr.model)}: '
        f"{len(pr.rows)} worst-ranked of {pr.num_mated} mated probes</h3>",
        '<p class="meta">Blue: the probe; then the best gallery identities, best first (green: '
        "the true identity); last, the true identity's best image when it is not among them.</p>",
    ]

    @functools.cache
    def thumb(path: str) -> str:
        return _thumb(FileImages([path]), 0, pr.input_size, pr.resize_mode)

    def fig(cls: str, path: str, alt: str, caption: str) -> str:
        return (f'<figure class="{cls}"><img src="{thumb(path)}" alt="{_e(alt)}"><figcaption>'
                f"{caption}</figcaption></figure>")  # fmt: skip

    def match(cls: str, k: int, ident: str, path: str, score: float) -> str:
        return fig(cls, path, ident, f"#{k} {_e(ident)} {score:.4f}<br>{_e(Path(path).name)}")

    for r in pr.rows:
        name = _e("/".join(Path(r.probe).parts[-2:]))
        true = f"true: {_e(r.identity)}, rank {r.rank}, {r.true_score:.4f}"
        figs = [fig("query", r.probe, "probe", f"probe {name}<br>{true}")]
        figs += [
            match("true" if ident == r.identity else "match", k, ident, path, s)
            for k, (ident, path, s) in enumerate(r.matches, 1)
        ]
        if all(ident != r.identity for ident, _, _ in r.matches):
            figs.append(match("true", r.rank, r.identity, r.true_image, r.true_score))
        attrs = f'data-rank="{r.rank}" data-probe="{_e(r.probe)}"'
        out.append(f'<div class="probe" {attrs}>' + "".join(figs) + "</div>")
    out.append("</div>")
    return out


def _quality(bench: str, models: dict, erc_png: str | None, out_dir: Path) -> list[str]:
    """A benchmark's face-image quality (``--quality``): the ERC plot and each model's ERC
    areas and ``--min-quality`` counts."""
    rows = [
        (m, mv["verification"][bench]["quality"])
        for m, mv in models.items()
        if mv.get("verification", {}).get(bench, {}).get("quality")
    ]
    if not rows:
        return []
    far = rows[0][1]["erc"]["far"]
    out = [f'<div class="quality" id="{_anchor("q", bench)}"><h3>Face-image quality</h3>']
    if erc_png:
        out.append(f'<div class="plots">{_img("erc", f"ERC {bench}", out_dir / erc_png)}</div>')
    body = [html_row([m, *quality_cells(q)], left=2) for m, q in rows]
    out.append(html_table(["model", *QUALITY_HEAD], body, "quality", left=2))
    out.append(f'<p class="meta">ERC: FNMR of the genuine pairs kept at the threshold of FAR '
               f"{far:g} (fixed on all pairs) while the lowest-quality 0-50 % of pairs are "
               "rejected (a pair has its worse image's quality); area = mean FNMR over that "
               "range, lower is better, the oracle is the best any quality could do. With a "
               "minimum quality every other number of this benchmark is over the kept pairs."
               "</p></div>")  # fmt: skip
    return out


def _calibration(models: dict, out_dir: Path) -> list[str]:
    """The match-confidence section (``--calibrate``): reliability diagram, held-out ECE and
    Brier, the thresholds stored, and where."""
    rows = [(m, mv["calibration"]) for m, mv in models.items() if mv.get("calibration")]
    if not rows:
        return []
    out = ['<section id="calibration"><h2>Match confidence (calibration)</h2>']
    for m, c in rows:
        out.append(f'<div class="model" id="{_anchor("c", m)}"><h3>{_e(m)}: {_e(c["method"])} '
                   f"on {_e(c['benchmark'])} ({c['n_genuine']} genuine + {c['n_impostor']} "
                   "impostor pairs)</h3>")  # fmt: skip
        if c.get("plot"):
            img = _img("reliability", f"reliability {m}", out_dir / c["plot"])
            out.append(f'<div class="plots">{img}</div>')
        thr = [html_row([far_key(t["far"]), number(t["threshold"])]) for t in c["thresholds"]]
        head = ["FAR", "cosine threshold (same when score >= t)"]
        where = (
            f"stored in <code>{_e(c['written_to'])}</code>"
            if c.get("written_to")
            else f"not stored: {_e(c.get('not_written', ''))}"
        )
        out.append(f'<p>Held-out ({c["folds"]}-fold) expected calibration error '
                   f'<b class="ece">{number(c["ece"])}</b> ({c["bins"]} equal-width bins), Brier '
                   f"{number(c['brier'])}; {where}.</p>"
                   f"{html_table(head, thr, 'thresholds')}</div>")  # fmt: skip
    out.append("</section>")
    return out


def write_html_report(path: str | os.PathLike[str], results: dict, data: ReportData) -> Path:
    """Write the report page (see the module doc) of eval's ``results`` dict (its ``plots`` name
    PNGs in ``path``'s folder) and what the run handed over (``data``) to ``path``, atomically."""
    path = Path(path)
    out_dir = path.parent
    models = results.get("models", {})
    by_key = {(p.model, p.bench.name): p for p in data.verification}
    benches = list(dict.fromkeys(b for mv in models.values() for b in mv.get("verification", {})))
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    created = results.get("created_utc") or now
    doc = [
        "<h1>facerec evaluation report</h1>",
        f'<p class="meta">facerec {_e(results.get("facerec_version", "?"))}, {_e(created)}<br>'
        f"<code>{_e(' '.join(results.get('command', [])))}</code></p>",
        "<nav>" + '<a href="#summary">summary</a>'
        + "".join(f'<a href="#{_anchor("b", b)}">{_e(b)}</a>' for b in benches)
        + ('<a href="#calibration">calibration</a>'
           if any(mv.get("calibration") for mv in models.values()) else "")
        + ('<a href="#identification">identification</a>' if data.identification else "")
        + "</nav>",
    ]  # fmt: skip
    doc += _summary(results)
    plots = results.get("plots", {})
    roc = plots.get("roc", {})
    for b in benches:
        doc.append(f'<section class="benchmark" id="{_anchor("b", b)}"><h2>{_e(b)}</h2>')
        if b in roc:
            doc.append(f'<div class="plots">{_img("roc", f"ROC {b}", out_dir / roc[b])}</div>')
        doc += _quality(b, models, plots.get("erc", {}).get(b), out_dir)
        for m, mv in models.items():
            if (v := mv.get("verification", {}).get(b)) is None:
                continue
            doc.append(f'<div class="model" id="{_anchor("m", b, m)}"><h3>{_e(m)} on {_e(b)}: '
                       f"{percent(v['accuracy_mean'])} % ({v['num_pairs']} pairs, "
                       f"{_e(v.get('source', ''))})</h3>")  # fmt: skip
            doc.append('<div class="plots">')
            if hist := v.get("plots", {}).get("histogram"):
                doc.append(_img("hist", f"histogram {b} {m}", out_dir / hist))
            doc.append(_threshold_table(v) + "</div>")
            if v.get("groups"):
                doc.append(groups_html(m, b, v["groups"]))
            if (m, b) in by_key and data.num_shown > 0:
                doc += _errors(by_key[m, b], data.num_shown)
            doc.append("</div>")
        doc.append("</section>")
    doc += _calibration(models, out_dir)
    if data.identification or any(mv.get("identification") for mv in models.values()):
        doc.append('<section id="identification"><h2>Identification</h2>')
        if plots.get("cmc"):
            doc.append(f'<div class="plots">{_img("cmc", "CMC", out_dir / plots["cmc"])}</div>')
        for pr in data.identification:
            doc += _probes(pr)
        doc.append("</section>")
    atomic_write_text(path, html_page("facerec evaluation report", doc))
    return path
