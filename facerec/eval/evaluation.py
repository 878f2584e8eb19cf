"""The evaluation ``facerec eval`` runs, callable from Python without argparse.

Example::

    from facerec.eval import EvalOptions, evaluate
    from facerec.eval.benchmarks import read_pairs_csv

    bench = read_pairs_csv("pairs.csv")
    results = evaluate(["runs/r50/last.ckpt"], [bench], out="runs/eval",
                       options=EvalOptions(quality="auto", calibrate="isotonic"))
    results["models"]["last"]["verification"][bench.name]["accuracy_mean"]

``models`` are checkpoint paths (or ``dlib-r29``), ``.onnx`` paths, ``("checkpoint" | "onnx",
path)`` pairs, or ``(name, embedder)`` pairs of a built :class:`~facerec.inference.Embedder`.
With ``out`` the plots, ``results.json`` and (``options.report``) ``report.html`` are written
there; without it only the dict is returned. Per benchmark and model, besides verification:

* ``options.quality`` (``norm`` | ``stability`` | ``auto``): each image's quality (as
  ``facerec embed --quality``), the error-versus-reject curve (``erc_<benchmark>.png``) and,
  with ``options.min_quality``, the pairs with an image below it left out of every metric;
* ``options.calibrate`` (``isotonic`` | ``logistic``): score -> P(same identity) fitted on
  ``options.calibrate_on`` (k-fold checked: held-out ECE, Brier, ``reliability_<model>.png``)
  with the thresholds at the standard FARs, written into ``<out>/<model>.calibrated.ckpt`` /
  ``.onnx`` or, with ``options.calibrate_in_place``, the model file itself.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import facerec
from facerec.data.image import ResizeMode
from facerec.data.sources import SubsetImages
from facerec.errors import ConfigError, DataError
from facerec.inference import (
    Embedder,
    EmbedStats,
    FileImages,
    embed_images,
    l2_normalize,
    load_embedder,
)
from facerec.metrics.calibration import METHODS as CALIBRATION_METHODS
from facerec.metrics.calibration import Calibration, fit_calibration, format_calibration
from facerec.metrics.quality import QUALITY_METHODS, drop_below, error_versus_reject, pair_quality
from facerec.metrics.verification import DEFAULT_FARS, check_folds, far_key, verification_report
from facerec.mining.faiss_index import INDEX_KINDS, faiss_gpu_count

from . import benchmarks as bm
from .embed import score_benchmark
from .groups import GroupTable, group_entry, plan_groups
from .html_report import DEFAULT_REPORT_PAIRS, ReportData, write_html_report
from .identification import identify
from .pair_args import unique_names
from .quality import quality_method, score_images
from .report import plot_cmc, plot_erc, plot_histograms, plot_reliability, plot_roc, write_json

DIR_FARS = (1e-1, 1e-2, 1e-3)
#: the results.json keys of each open-set DIR@FAR entry (fields of DirAtFar)
_DIR_KEYS = ("dir", "threshold", "achieved_far", "resolvable")
#: the FAR at which the error-versus-reject curve's threshold is set
ERC_FAR = 1e-2


@dataclass
class EvalOptions:
    """How :func:`evaluate` runs (the flags of ``facerec eval``, without argparse)."""

    batch_size: int = 128
    flip: bool = True
    folds: int = 10
    workers: int = 2
    device: str = "cpu"
    resize_mode: ResizeMode | None = None
    index: str = "flat"
    report: bool = False
    report_pairs: int = DEFAULT_REPORT_PAIRS
    quality: str | None = None
    min_quality: float | None = None
    quality_passes: int = 8
    quality_seed: int = 0
    calibrate: str | None = None
    calibrate_on: str | None = None
    calibrate_folds: int = 5
    calibrate_in_place: bool = False

    def check(self) -> None:
        """One line (ConfigError) naming the first bad option and what was expected."""
        if self.batch_size < 1 or self.folds < 2 or self.workers < 0:
            raise ConfigError("--batch-size must be >= 1, --folds >= 2 and --workers >= 0")
        if self.report_pairs < 0:
            raise ConfigError(f"--report-pairs is {self.report_pairs}; expected 0 or more")
        if self.min_quality is not None and self.quality is None:
            self.quality = "auto"  # --min-quality implies --quality
        for flag, value, choices in (
            ("--index", self.index, INDEX_KINDS),
            ("--quality", self.quality, ("auto", *QUALITY_METHODS)),
            ("--calibrate", self.calibrate, CALIBRATION_METHODS),
        ):
            if value is not None and value not in choices:
                raise ConfigError(f"{flag} {value!r}; expected one of {', '.join(choices)}")
        if self.quality_passes < 2:
            raise ConfigError(f"--quality-passes must be >= 2, got {self.quality_passes}")
        if self.min_quality is not None and not np.isfinite(self.min_quality):
            raise ConfigError(f"--min-quality is {self.min_quality}; expected a finite number")
        if self.calibrate_folds < 2:
            raise ConfigError(f"--calibrate-folds must be >= 2, got {self.calibrate_folds}")


@dataclass
class IdentificationSet:
    """Closed/open-set identification: gallery and probe images with identity labels (a probe
    label -1: its identity is not in the gallery), and optional distractors."""

    gallery_paths: list[str]
    gallery_labels: np.ndarray
    probe_paths: list[str]
    probe_labels: np.ndarray
    distractor_paths: list[str] = field(default_factory=list)
    gallery: str = ""
    probe: str = ""
    distractors: str | None = None

    @classmethod
    def from_folders(
        cls, gallery: str, probe: str, distractors: str | None = None
    ) -> IdentificationSet:
        """``gallery`` and ``probe`` as ``DIR/identity/image``; ``distractors`` any image tree."""
        gp, gn = bm.read_identity_folder(gallery, "gallery folder")
        pp, pn = bm.read_identity_folder(probe, "probe folder")
        ids = {n: k for k, n in enumerate(sorted(set(gn)))}
        return cls(
            gallery_paths=gp,
            gallery_labels=np.array([ids[n] for n in gn], np.int64),
            probe_paths=pp,
            probe_labels=np.array([ids.get(n, -1) for n in pn], np.int64),
            distractor_paths=bm.read_image_tree(distractors) if distractors else [],
            gallery=gallery,
            probe=probe,
            distractors=distractors,
        )


ModelSpec = str | tuple[str, Any]


def _model_specs(models: Sequence[ModelSpec]) -> list[tuple[str, Any, str]]:
    """(kind, path or embedder, display path) of each model."""
    out = []
    for m in models:
        if isinstance(m, str | Path):
            m = ("onnx" if str(m).lower().endswith(".onnx") else "checkpoint", m)
        if isinstance(m, tuple) and len(m) == 2 and m[0] in ("checkpoint", "onnx"):
            out.append((m[0], str(m[1]), str(m[1])))
        elif isinstance(m, tuple) and len(m) == 2 and callable(m[1]):
            out.append(("embedder", m[1], str(m[0])))
        else:
            raise ConfigError(
                f"model {m!r}; expected a checkpoint or .onnx path, ('checkpoint'|'onnx', path) "
                "or (name, embedder)"
            )
    return out


def check_pairs(b: bm.PairBenchmark, n_folds: int, where: str, hint: str = "") -> None:
    """``DataError("<where>: <problem><hint>")`` unless the k-fold protocol can use ``b``'s pairs:
    both classes, and folds that each hold both (:func:`~facerec.metrics.verification.check_folds`).
    """
    n_same = int(b.issame.sum())
    try:
        if n_same in (0, b.num_pairs):
            what = f"all {b.num_pairs} pairs are {'genuine' if n_same else 'impostor'}"
            what = "no pairs" if b.num_pairs == 0 else what
            raise DataError(f"{what}; expected genuine and impostor pairs")
        check_folds(b.issame, b.folds, n_folds)
    except DataError as e:
        raise DataError(f"{where}: {e}{hint}") from None


def check_benchmarks(benchmarks: Sequence[bm.PairBenchmark], folds: int) -> None:
    """Refuse, before any embedding, a benchmark the k-fold protocol cannot use."""
    for b in benchmarks:
        check_pairs(b, folds, b.source or b.name)


def _calibration_benchmark(benchmarks: Sequence[bm.PairBenchmark], opts: EvalOptions) -> str | None:
    """The name of the benchmark the calibration is fitted on (None without --calibrate)."""
    if opts.calibrate is None:
        return None
    names = [b.name for b in benchmarks]
    if opts.calibrate_on is not None:
        if opts.calibrate_on not in names:
            raise ConfigError(
                f"--calibrate-on {opts.calibrate_on!r} is not a benchmark of this run; expected "
                f"one of: {', '.join(names) or 'none (give a verification benchmark)'}"
            )
        return opts.calibrate_on
    if len(names) != 1:
        raise ConfigError(
            f"--calibrate needs one benchmark to fit on; this run has "
            f"{len(names)} ({', '.join(names) or 'none'}): name it with --calibrate-on"
        )
    return names[0]


def _embed(
    emb: Embedder, paths: list[str], opts: EvalOptions, aligner: Any, key: str
) -> np.ndarray:
    """(N, D) L2-normalised embeddings of the image files ``paths``."""
    images = FileImages(paths)
    if aligner is not None:  # --align: detect (once per key), warp, then the model's resize
        images = aligner.wrap(key, images, emb)
    return l2_normalize(embed_images(emb, images, opts.batch_size, opts.flip, opts.workers))


def _identification(
    emb: Embedder,
    data: IdentificationSet,
    opts: EvalOptions,
    report: ReportData | None,
    model_name: str,
    aligner: Any,
) -> tuple[dict, int]:
    # alignment keys contain a space, so they never equal a (sanitised) benchmark name
    paths = {"gallery": data.gallery_paths, "probe": data.probe_paths}
    if data.distractor_paths:
        paths["distractors"] = data.distractor_paths
    e = {k: _embed(emb, v, opts, aligner, f"identification {k}") for k, v in paths.items()}
    g, p, d = e["gallery"], e["probe"], e.get("distractors")
    t = time.perf_counter()
    r = identify(
        g, data.gallery_labels, p, data.probe_labels, distractors=d, kind=opts.index, fars=DIR_FARS
    )
    if report is not None:
        report.add_identification(model_name, g, p, data, emb)
    out = {
        "gallery": data.gallery,
        "probe": data.probe,
        "distractors": data.distractors,
        "index": opts.index,
        "faiss_gpu": faiss_gpu_count() > 0 and opts.index != "hnsw",
        "num_gallery_images": len(data.gallery_paths),
        "num_gallery_identities": int(np.unique(data.gallery_labels).size),
        "num_probes": len(data.probe_paths),
        **{k: getattr(r, k) for k in ("num_mated", "num_nonmated", "rank1", "rank5", "rank10")},
        "cmc": r.cmc.tolist(),
        "dir_at_far": {far_key(x.far): {k: getattr(x, k) for k in _DIR_KEYS} for x in r.dir_at_far},
        "search_seconds": time.perf_counter() - t,
        "plots": {"cmc": "cmc.png"},
    }
    if aligner is not None:
        out["align"] = {k: aligner.report(f"identification {k}") for k in e}
    return out, int(g.shape[1])


@dataclass
class _Scored:
    """One model's scores on one benchmark: ``bench`` is the benchmark itself, or the view of
    the pairs ``--min-quality`` kept (``keep``, a mask over the benchmark's pairs)."""

    scores: np.ndarray
    bench: bm.PairBenchmark
    stats: EmbedStats
    keep: np.ndarray | None = None
    quality: dict | None = None
    erc: Any = None


def _score(
    emb: Embedder, b: bm.PairBenchmark, images: Any, opts: EvalOptions, name: str
) -> _Scored:
    """Score every pair; with ``opts.quality`` also the images' qualities, the ERC and the
    ``--min-quality`` selection."""
    stats: list[EmbedStats] = []
    scores = score_benchmark(emb, images, b.pairs, opts.batch_size, opts.flip, opts.workers, stats)
    out = _Scored(scores, b, stats[0])
    if opts.quality is None:
        return out
    method = quality_method(opts.quality)
    used, inverse = np.unique(b.pairs, return_inverse=True)
    print(
        f"[{name}] {b.name}: face-image quality ({method}) of {used.size} images", file=sys.stderr
    )
    sub = SubsetImages(images, used)
    q_used = score_images(
        emb, sub, method, opts.quality_passes, opts.quality_seed, opts.batch_size, opts.workers
    )
    pq = pair_quality(*q_used[inverse.reshape(-1, 2)].T)
    out.erc = error_versus_reject(scores, b.issame, pq, ERC_FAR)
    out.quality = {
        "method": method,
        "num_images": int(used.size),
        "image_quality": {
            "min": float(q_used.min()),
            "median": float(np.median(q_used)),
            "max": float(q_used.max()),
        },
        "erc": out.erc.to_dict(),
        "min_quality": opts.min_quality,
    }
    if opts.min_quality is not None:
        keep = drop_below(pq, opts.min_quality)
        out.quality.update(
            images_below=int((~drop_below(q_used, opts.min_quality)).sum()),
            pairs_dropped=int((~keep).sum()),
            pairs_kept=int(keep.sum()),
        )
        print(
            f"[{name}] {b.name}: --min-quality {opts.min_quality:g} leaves out "
            f"{out.quality['images_below']} of {used.size} images and "
            f"{out.quality['pairs_dropped']} of {b.num_pairs} pairs",
            file=sys.stderr,
        )
        out.keep, out.scores = keep, scores[keep]
        folds = None if b.folds is None else b.folds[keep]
        out.bench = dataclasses.replace(b, pairs=b.pairs[keep], issame=b.issame[keep], folds=folds)
        where = (
            f"{b.name}: after --min-quality {opts.min_quality:g} ({method} quality, images "
            f"{q_used.min():.4g}..{q_used.max():.4g})"
        )
        check_pairs(out.bench, opts.folds, where, "; expected a lower --min-quality")
    return out


def _calibrate(
    kind: str, path: str, name: str, s: _Scored, bench: str, opts: EvalOptions, out: Path | None
) -> dict:
    """Fit the calibration of one model, plot its reliability diagram and store it in the
    model (a copy in ``out``, or the file itself); the results entry."""
    from .verify_cli import write_checkpoint_calibration, write_onnx_calibration

    cal: Calibration = fit_calibration(
        s.scores, s.bench.issame, opts.calibrate, opts.calibrate_folds, benchmark=bench
    )
    entry: dict[str, Any] = {**cal.to_dict(), "written_to": None}
    print(f"[{name}] " + format_calibration(cal), file=sys.stderr)
    if out is not None:
        fname = f"reliability_{name}.png"
        plot_reliability(out / fname, cal, f"reliability: {name} on {bench} (held-out folds)")
        entry["plot"] = fname
    if kind == "embedder":
        entry["not_written"] = "an embedder object has no model file"
    elif kind == "checkpoint" and not Path(path).exists():
        entry["not_written"] = (
            f"{path} is a packaged model: export it (facerec export) and calibrate the .onnx "
            "to carry the calibration"
        )
    elif out is None and not opts.calibrate_in_place:
        entry["not_written"] = "no output folder (out=None) and not in place"
    else:
        suffix = ".onnx" if kind == "onnx" else ".ckpt"
        target = None if opts.calibrate_in_place else out / f"{name}.calibrated{suffix}"
        write = write_onnx_calibration if kind == "onnx" else write_checkpoint_calibration
        entry["written_to"] = str(write(path, cal, target))
        print(f"[{name}] calibration written to {entry['written_to']}", file=sys.stderr)
    if "not_written" in entry:
        print(f"[{name}] calibration not stored: {entry['not_written']}", file=sys.stderr)
    return entry


def evaluate(
    models: Sequence[ModelSpec],
    benchmarks: Sequence[bm.PairBenchmark] = (),
    out: str | Path | None = None,
    *,
    options: EvalOptions | None = None,
    identification: IdentificationSet | None = None,
    ijb: Any = None,
    aligner: Any = None,
    groups: GroupTable | None = None,
    features: Sequence[str] = (),
    command: Sequence[str] = (),
) -> dict:
    """Evaluate ``models`` on pair ``benchmarks``, ``identification`` and ``ijb`` (an
    :class:`facerec.eval.ijb_cli.IJBRun`); returns the results dict (``results.json``'s layout,
    its keys in README's ``results.json`` section). See the module doc for the options.

    ``aligner`` (:class:`facerec.align.Aligner`) detects faces and warps them onto each
    model's own template (its Preprocess) before embedding;
    ``groups`` (:func:`facerec.eval.groups.read_groups_csv`) reports every metric per group of
    images or identities (RFW's benchmark carries its own races); ``features`` are saved IJB
    feature files scored without a network.
    """
    opts = options or EvalOptions()
    opts.check()
    check_benchmarks(benchmarks, opts.folds)
    plans, warnings = plan_groups(benchmarks, groups)  # refused here, before any embedding
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    cal_bench = _calibration_benchmark(benchmarks, opts)
    specs = _model_specs(models)
    if not specs and not features:
        raise ConfigError("no model given; expected a checkpoint, an ONNX model or IJB features")
    out_dir = Path(out) if out is not None else None
    report = ReportData(opts.report_pairs) if opts.report and out_dir is not None else None
    names = unique_names([p for _, _, p in specs])
    results: dict = {
        "facerec_version": facerec.__version__,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": ["facerec", "eval", *command],
        "settings": {
            **{k: getattr(opts, k) for k in ("flip", "folds", "index", "batch_size", "device")},
            "fars": list(DEFAULT_FARS),
            "dir_fars": list(DIR_FARS),
            "align": aligner.settings if aligner is not None else None,
            "quality": quality_method(opts.quality) if opts.quality else None,
            "min_quality": opts.min_quality,
            "calibrate": opts.calibrate,
            "calibrate_on": cal_bench,
        },
        "models": {},
        "plots": {"roc": {}},
    }
    for b in benchmarks:  # a pair listed twice counts twice: say so once, with the count
        if (uniq := np.unique(np.sort(b.pairs, axis=1), axis=0).shape[0]) < b.num_pairs:
            print(
                f"warning: {b.name}: {b.num_pairs - uniq} of {b.num_pairs} pairs repeat an "
                "earlier pair (same two images); each is scored as listed",
                file=sys.stderr,
            )
    roc_curves: dict[str, list] = {b.name: [] for b in benchmarks}
    erc_curves: dict[str, list] = {b.name: [] for b in benchmarks}
    cmc_curves = []
    for (kind, path, _), name in zip(specs, names, strict=True):
        if kind == "embedder":
            emb = path
        else:
            ckpt, onnx = (path, None) if kind == "checkpoint" else (None, path)
            emb = load_embedder(ckpt, onnx, opts.device, opts.batch_size, opts.resize_mode)
        model: dict = {
            "kind": kind,
            "path": path if kind != "embedder" else name,
            "input_size": list(emb.input_size),
            "resize_mode": emb.resize_mode,
            "embedding_dim": None,
            "verification": {},
        }
        for b in benchmarks:
            print(f"[{name}] {b.name}: embedding images of {b.num_pairs} pairs", file=sys.stderr)
            images = b.images if aligner is None else aligner.wrap(b.name, b.images, emb)
            s = _score(emb, b, images, opts, name)
            model["embedding_dim"] = s.stats.dim
            kept = s.bench
            rep = verification_report(
                s.scores, kept.issame, kept.folds, opts.folds, DEFAULT_FARS, b.fold_method
            )
            rep.update(
                source=b.source,
                num_images=s.stats.num_images,
                embed_seconds=s.stats.seconds,
                images_per_second=s.stats.images_per_second,
                plots={"roc": f"roc_{b.name}.png"},
            )
            if out_dir is not None:
                hist = f"hist_{b.name}_{name}.png"
                title = f"{b.name}: {name}"
                plot_histograms(out_dir / hist, s.scores, kept.issame, title, rep["threshold_mean"])
                rep["plots"]["histogram"] = hist
            if s.quality is not None:
                rep["quality"] = s.quality
                rep["plots"]["erc"] = f"erc_{b.name}.png"
                erc_curves[b.name].append((name, s.erc))
            if aligner is not None:  # faces not found: centre-cropped, counted (never dropped)
                rep["align"] = aligner.report(b.name)
            if (pg := plans.get(b.name)) is not None:  # over the pairs --min-quality kept
                if s.keep is not None:
                    pg = dataclasses.replace(pg, labels=pg.labels[s.keep])
                rep["groups"] = group_entry(s.scores, kept, pg, opts.folds, DEFAULT_FARS)
                for w in rep["groups"]["warnings"]:
                    print(f"warning: {w}", file=sys.stderr)
            model["verification"][b.name] = rep
            if report is not None:
                report.add_pairs(name, images, kept, s.scores, rep["threshold_mean"], emb)
            label = f"{name} (AUC {rep['auc']:.4f})"
            roc_curves[b.name].append((label, rep["roc"]["fpr"], rep["roc"]["tpr"]))
            if b.name == cal_bench:
                model["calibration"] = _calibrate(kind, path, name, s, b.name, opts, out_dir)
        if identification is not None:
            print(f"[{name}] identification: embedding gallery and probes", file=sys.stderr)
            model["identification"], model["embedding_dim"] = _identification(
                emb, identification, opts, report, name, aligner
            )
            cmc_curves.append((name, model["identification"]["cmc"]))
        if ijb is not None:
            model["ijb"] = {ijb.key: ijb.run_model(emb, name)}
            model["embedding_dim"] = model["ijb"][ijb.key]["embedding_dim"]
        results["models"][name] = model
    if ijb is not None:
        for path, fname in zip(features, unique_names(features, names, "features"), strict=True):
            results["models"][fname] = ijb.run_features(path, fname)
        if out_dir is not None:
            ijb.finish(results, out_dir)
    if out_dir is not None:
        for b in benchmarks:
            fname = f"roc_{b.name}.png"
            plot_roc(out_dir / fname, roc_curves[b.name], f"ROC: {b.name} ({b.num_pairs} pairs)")
            results["plots"]["roc"][b.name] = fname
            if erc_curves[b.name]:
                plot_erc(out_dir / f"erc_{b.name}.png", erc_curves[b.name], f"ERC: {b.name}")
                results["plots"].setdefault("erc", {})[b.name] = f"erc_{b.name}.png"
        if cmc_curves:
            plot_cmc(out_dir / "cmc.png", cmc_curves, "CMC (closed set)")
            results["plots"]["cmc"] = "cmc.png"
        write_json(out_dir / "results.json", results)
        if report is not None:
            write_html_report(out_dir / "report.html", results, report)
    return results


__all__ = ["DIR_FARS", "EvalOptions", "IdentificationSet", "check_benchmarks", "evaluate"]
