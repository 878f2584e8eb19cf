"""The IJB-B / IJB-C part of ``facerec eval``: its flags, one model's run, plots and table rows
(examples in README's IJB section).

Results go to ``results.json`` under ``models.<model>.ijb.<IJBC|IJBB>`` (keys in README's eval
section), the ROC of every model to ``roc_<ijbc|ijbb>.png``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

import numpy as np

from facerec.align.transform import template_of
from facerec.errors import ConfigError
from facerec.inference import Embedder, EmbedStats, embed_images
from facerec.metrics.verification import far_key

from .ijb import IJB_NAMES, IJBMeta, aligned_images, evaluate_features, load_features, read_ijb
from .ijb import save_features as write_features
from .ijb_protocol import IJB_FARS, IJB_FPIRS
from .report import grid, percent, plot_roc, rate


def add_ijb_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``--ijb ...`` flag group to ``facerec eval``'s parser."""
    g = parser.add_argument_group(
        "IJB-B / IJB-C (insightface's layout: ROOT/loose_crop, ROOT/meta)"
    )
    g.add_argument(
        "--ijb", metavar="ROOT", help="IJB benchmark folder: 1:1 templates, 1:N if present"
    )
    g.add_argument(
        "--ijb-name",
        type=str.upper,
        choices=IJB_NAMES,
        default="IJBC",
        help="which benchmark's meta files: IJBC (default) or IJBB",
    )
    g.add_argument(
        "--ijb-no-detector-score",
        action="store_true",
        help="do not weight image features by the faceness score (insightface's D0 mode)",
    )
    g.add_argument(
        "--ijb-normalize-images",
        action="store_true",
        help="L2-normalise image features before pooling (insightface's N0 mode; default N1 "
        "keeps the feature norm as a quality weight, as its published tables)",
    )
    g.add_argument(
        "--ijb-fars",
        type=float,
        nargs="+",
        default=list(IJB_FARS),
        metavar="FAR",
        help="FARs of the 1:1 TAR@FAR table (default 1e-6 1e-5 1e-4 1e-3 1e-2 1e-1)",
    )
    g.add_argument(
        "--save-features",
        metavar="FILE",
        help="write the IJB image features (.npz; one file per model: FILE_<model>.npz when "
        "several) so that a later run can --load-features",
    )
    g.add_argument(
        "--load-features",
        action="append",
        default=[],
        metavar="FILE",
        help="IJB image features from --save-features instead of a network (repeatable; each "
        "is a model named by the file stem)",
    )


def _check_fars(fars: Sequence[float]) -> None:
    if not all(0.0 < x < 1.0 for x in fars):
        raise ConfigError(f"--ijb-fars {list(fars)}; expected rates between 0 and 1")


@dataclass
class IJBRun:
    """One evaluation's IJB work: the meta files (:func:`facerec.eval.ijb.read_ijb`), each
    model, the plots. ``num_models`` networks (features files are named per model when
    several), ``save_features`` a ``.npz`` path or None. :func:`ijb_run_from_args` builds it
    from ``facerec eval``'s flags."""

    meta: IJBMeta
    num_models: int = 1
    _: KW_ONLY
    batch_size: int = 128
    flip: bool = True
    workers: int = 2
    save_features: str | None = None
    detector_score: bool = True
    normalize_images: bool = False
    fars: Sequence[float] = IJB_FARS
    curves: list[tuple[str, Sequence[float], Sequence[float]]] = field(
        default_factory=list, init=False
    )

    def __post_init__(self) -> None:
        _check_fars(self.fars)
        self.key = self.meta.name
        self.fars = tuple(sorted(self.fars))

    def run_model(self, embedder: Embedder, name: str) -> dict:
        """Embed the aligned images with ``embedder``, then :meth:`evaluate` them."""
        print(
            f"[{name}] {self.key}: aligning and embedding {len(self.meta.images)} images",
            file=sys.stderr,
        )
        stats: list[EmbedStats] = []
        images = aligned_images(self.meta, embedder.input_size, template_of(embedder))
        feats = embed_images(
            embedder, images, self.batch_size, self.flip, self.workers, stats, progress=True
        )
        saved = None
        if self.save_features:
            saved = Path(self.save_features)
            if self.num_models > 1:  # one file per model
                saved = saved.with_name(f"{saved.stem}_{name}{saved.suffix or '.npz'}")
            write_features(saved, feats, self.meta)
        return self.evaluate(feats, name) | {
            "features_file": None if saved is None else str(saved),
            "embedding_dim": int(feats.shape[1]),
            "embed_seconds": stats[0].seconds,
            "images_per_second": stats[0].images_per_second,
        }

    def run_features(self, path: str, name: str) -> dict:
        """A ``--load-features`` file as a model entry of ``results.json``."""
        feats = load_features(path, self.meta)
        return {
            "kind": "features",
            "path": str(path),
            "embedding_dim": int(feats.shape[1]),
            "verification": {},
            "ijb": {self.key: self.evaluate(feats, name) | {"features_file": str(path)}},
        }

    def evaluate(self, features: np.ndarray, name: str) -> dict:
        """Pool, score and report ``features``; remembers the ROC for the plot."""
        rep = evaluate_features(
            features, self.meta, self.detector_score, self.normalize_images, self.fars
        )
        v = rep["verification"]
        self.curves.append(
            (f"{name} (AUC {100 * v['auc']:.2f}%)", v["roc"]["fpr"], v["roc"]["tpr"])
        )
        rep["plots"] = {"roc": self.plot_name}
        return rep

    @property
    def plot_name(self) -> str:
        return f"roc_{self.key.lower()}.png"

    def finish(self, results: dict, out: Path) -> None:
        """Write the ROC plot of every model and record the IJB settings."""
        n = self.meta.labels.size
        plot_roc(
            out / self.plot_name,
            self.curves,
            f"ROC: {self.key} 1:1 ({len(np.unique(self.meta.templates))} templates, {n} pairs)",
            min_far=min(1e-6, *self.fars),
            max_far=max(1e-1, *self.fars),
        )
        results["plots"]["roc"][self.key] = self.plot_name
        results["settings"]["ijb"] = {
            "root": str(self.meta.root),
            "name": self.key,
            "detector_score": self.detector_score,
            "normalize_images": self.normalize_images,
            "fars": list(self.fars),
            "fpirs": list(IJB_FPIRS),
        }


def ijb_run_from_args(args: argparse.Namespace, num_models: int) -> IJBRun | None:
    """The :class:`IJBRun` of ``facerec eval``'s IJB flags: None without ``--ijb``;
    ConfigError for feature flags without it."""
    if not args.ijb:
        if args.load_features or args.save_features:
            raise ConfigError("--save-features and --load-features need --ijb ROOT")
        return None
    if args.save_features and num_models == 0:
        raise ConfigError("--save-features needs a network (--checkpoint or --onnx)")
    _check_fars(args.ijb_fars)  # before the meta files are read
    print(f"{args.ijb_name}: reading the meta files of {args.ijb}", file=sys.stderr)
    return IJBRun(
        read_ijb(args.ijb, args.ijb_name, args.allow_outside_root),
        num_models,
        batch_size=args.batch_size,
        flip=not args.no_flip,
        workers=args.workers,
        save_features=args.save_features,
        detector_score=not args.ijb_no_detector_score,
        normalize_images=args.ijb_normalize_images,
        fars=args.ijb_fars,
    )


def format_ijb_table(results: dict) -> str:
    """The IJB rows of the console summary ("" without IJB results)."""
    entries = [
        (name, key, rep)
        for name, m in results.get("models", {}).items()
        for key, rep in m.get("ijb", {}).items()
    ]
    lines: list[str] = []
    for key in sorted({k for _, k, _ in entries}):
        rows = [(n, r["verification"], r) for n, k, r in entries if k == key]
        fars = list(rows[0][1]["tar_at_far_nearest"])
        tars = [f"TAR@{f}" for f in fars]
        lines.append(f"{key} 1:1 TAR@FAR % (insightface's rule: the ROC point nearest each FAR)")
        nearest = [
            [n, str(r["num_templates"]), str(v["num_pairs"]), percent(v["auc"])]
            + [percent(v["tar_at_far_nearest"][f]["tar"]) for f in fars]
            for n, v, r in rows
        ]
        lines += grid(["model", "templates", "pairs", "AUC %", *tars], nearest, left=1)
        lines += ["", f"{key} 1:1 calibrated: TAR % at FAR <= target (cosine threshold)"]
        cal = [
            [n]
            + [
                f"{percent(t['tar'])} ({t['threshold']:.4f})" if t["resolvable"] else "-"
                for t in (v["tar_at_far"][f] for f in fars)
            ]
            for n, v, _ in rows
        ]
        lines += grid(["model", *tars], cal, left=1)
        id_rows = [(n, r["identification"]) for n, _, r in rows if "identification" in r]
        if id_rows:
            lines.append("")
            lines.append(
                f"{key} 1:N: rank-k over the union gallery; TPIR@FPIR % by ijb_1n.py's rule "
                "(union) and open-set per gallery (non-mated probes)"
            )
            fk = [far_key(x) for x in IJB_FPIRS]
            galleries = [g for g in id_rows[0][1] if g != "search_seconds" and "+" not in g]
            union = next(g for g in id_rows[0][1] if "+" in g)
            head = ["model", "probes", "rank-1", "rank-5", "rank-10", *(f"TPIR@{f}" for f in fk)]
            head += [f"{g} TPIR@{f}" for g in galleries for f in fk]
            tab = []
            for n, ident in id_rows:
                u = ident[union]
                row = [n, str(u["num_probes"]), *(percent(u[f"rank{k}"]) for k in (1, 5, 10))]
                row += [percent(u["tpir_at_fpir_insightface"].get(f, {}).get("tpir")) for f in fk]
                row += [
                    rate(ident[g]["tpir_at_fpir"].get(f), "tpir") for g in galleries for f in fk
                ]
                tab.append(row)
            lines += grid(head, tab, left=1)
        lines.append("")
    return "\n".join(lines).rstrip()
