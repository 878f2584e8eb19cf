"""``facerec eval``: verification and identification benchmarks of one or more models.

Example::

    facerec eval --checkpoint runs/r50/last.ckpt --bin data/lfw.bin --bin data/cfp_fp.bin \\
        --gallery data/gallery --probe data/probe --distractors data/distractors --out runs/eval

Writes ``results.json`` (every number, keys in :data:`facerec.eval.report.JSON_KEYS_DOC`),
``roc_<benchmark>.png`` (all models), ``hist_<benchmark>_<model>.png`` and ``cmc.png`` to
``--out``, and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

import facerec
from facerec.align.options import Aligner, add_align_arguments
from facerec.errors import ConfigError, DataError, FacerecError
from facerec.inference import (
    Embedder,
    EmbedStats,
    FileImages,
    ImageSource,
    embed_images,
    l2_normalize,
    load_embedder,
    resolve_device,
)
from facerec.io import atomic_write_text, check_free_space, check_output, write_failed
from facerec.metrics.verification import (
    DEFAULT_FARS,
    check_folds,
    far_key,
    verification_report,
)
from facerec.mining.faiss_index import INDEX_KINDS, faiss_gpu_count

from . import benchmarks as bm
from .embed import score_benchmark
from .html_report import DEFAULT_REPORT_PAIRS, ReportData, write_html_report
from .identification import identify
from .ijb_cli import IJBRun, add_ijb_arguments, format_ijb_table
from .pair_args import add_pair_benchmark_arguments, read_pair_benchmarks, unique_names
from .report import format_table, plot_cmc, plot_histograms, plot_roc, write_json

DIR_FARS = (1e-1, 1e-2, 1e-3)


def build_parser() -> argparse.ArgumentParser:
    """The ``facerec eval`` argument parser."""
    p = argparse.ArgumentParser(
        prog="facerec eval",
        description="Evaluate face-recognition models: verification (10-fold accuracy, ROC, AUC, "
        "EER, TAR@FAR) and identification (FAISS, CMC, open-set DIR@FAR).",
    )
    m = p.add_argument_group("models (one or more)")
    m.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="CKPT",
        help="facerec Lightning checkpoint (repeatable)",
    )
    m.add_argument(
        "--onnx",
        action="append",
        default=[],
        metavar="FILE",
        help="exported ONNX model (repeatable)",
    )
    b = p.add_argument_group("verification benchmarks")
    add_pair_benchmark_arguments(b)
    b.add_argument(
        "--synthetic",
        action="store_true",
        help="held-out synthetic pairs (identities never used in training)",
    )
    b.add_argument(
        "--synthetic-pairs",
        type=int,
        default=2000,
        metavar="N",
        help="number of synthetic pairs (default 2000)",
    )
    b.add_argument(
        "--folds",
        type=int,
        default=10,
        help="folds where the benchmark defines none (pairs CSV, synthetic): stratified by "
        "class, seeded (default 10); LFW pairs.txt and .bin keep their own",
    )
    i = p.add_argument_group("identification")
    i.add_argument("--gallery", metavar="DIR", help="gallery: DIR/identity/image")
    i.add_argument("--probe", metavar="DIR", help="probes: DIR/identity/image")
    i.add_argument(
        "--distractors",
        metavar="DIR",
        help="images of people not in the gallery, searched as non-mated probes",
    )
    i.add_argument(
        "--index",
        choices=INDEX_KINDS,
        default="flat",
        help="FAISS index: flat (exact, default), ivf or hnsw",
    )
    o = p.add_argument_group("run")
    o.add_argument("--batch-size", type=int, default=128, help="images per forward (default 128)")
    o.add_argument("--no-flip", action="store_true", help="skip the flip test")
    o.add_argument(
        "--resize-mode",
        choices=("resize", "center_crop"),
        help="for images not at the model's input size (default: the model's)",
    )
    o.add_argument("--workers", type=int, default=2, help="image decoding threads (default 2)")
    o.add_argument(
        "--device",
        default="auto",
        help="auto (default: cuda when available, else cpu), cpu, cuda or cuda:N",
    )
    o.add_argument(
        "--out", default="runs/eval", metavar="DIR", help="output folder (default runs/eval)"
    )
    o.add_argument(
        "--report",
        action="store_true",
        help="also write report.html: plots, thresholds and the hardest pairs as pictures",
    )
    o.add_argument(
        "--report-pairs",
        type=int,
        default=DEFAULT_REPORT_PAIRS,
        metavar="N",
        help=f"hardest genuine and impostor pairs (and worst probes) shown (default "
        f"{DEFAULT_REPORT_PAIRS})",
    )
    add_ijb_arguments(p)
    add_align_arguments(p)
    return p


def _load_benchmarks(args: argparse.Namespace) -> list[bm.PairBenchmark]:
    extra = [bm.synthetic_pairs(num_pairs=args.synthetic_pairs)] if args.synthetic else []
    return read_pair_benchmarks(args, extra)


def _embed(
    emb: Embedder,
    images: ImageSource,
    args: argparse.Namespace,
    aligner: Aligner | None = None,
    key: str = "",
) -> np.ndarray:
    """(N, D) L2-normalised embeddings of ``images``."""
    if aligner is not None:  # --align: detect (once per key), warp, then the model's resize
        images = aligner.wrap(key, images)
    return l2_normalize(embed_images(emb, images, args.batch_size, not args.no_flip, args.workers))


def _identification(
    emb: Embedder,
    args: argparse.Namespace,
    data: dict,
    report: ReportData | None = None,
    model_name: str = "",
    aligner: Aligner | None = None,
) -> tuple[dict, np.ndarray, int]:
    # alignment keys contain a space, so they never equal a (sanitised) benchmark name
    g = _embed(emb, FileImages(data["gallery_paths"]), args, aligner, "identification gallery")
    p = _embed(emb, FileImages(data["probe_paths"]), args, aligner, "identification probe")
    d = None
    if data["distractor_paths"]:
        d = _embed(
            emb, FileImages(data["distractor_paths"]), args, aligner, "identification distractors"
        )
    t = time.perf_counter()
    r = identify(
        g,
        data["gallery_labels"],
        p,
        data["probe_labels"],
        distractors=d,
        kind=args.index,
        fars=DIR_FARS,
    )
    if report is not None:
        report.add_identification(
            model_name,
            g,
            data["gallery_labels"],
            data["gallery_paths"],
            p,
            data["probe_labels"],
            data["probe_paths"],
            emb.input_size,
            emb.resize_mode,
        )
    out = {
        "gallery": args.gallery,
        "probe": args.probe,
        "distractors": args.distractors,
        "index": args.index,
        "faiss_gpu": faiss_gpu_count() > 0 and args.index != "hnsw",
        "num_gallery_images": len(data["gallery_paths"]),
        "num_gallery_identities": int(np.unique(data["gallery_labels"]).size),
        "num_probes": len(data["probe_paths"]),
        "num_mated": r.num_mated,
        "num_nonmated": r.num_nonmated,
        "rank1": r.rank1,
        "rank5": r.rank5,
        "rank10": r.rank10,
        "cmc": r.cmc.tolist(),
        "dir_at_far": {
            far_key(x.far): {
                "dir": x.dir,
                "threshold": x.threshold,
                "achieved_far": x.achieved_far,
                "resolvable": x.resolvable,
            }
            for x in r.dir_at_far
        },
        "search_seconds": time.perf_counter() - t,
        "plots": {"cmc": "cmc.png"},
    }
    if aligner is not None:
        keys = ["gallery", "probe"] + (["distractors"] if data["distractor_paths"] else [])
        out["align"] = {k: aligner.report(f"identification {k}") for k in keys}
    return out, r.cmc, int(g.shape[1])


def _load_identification(args: argparse.Namespace) -> dict | None:
    if not (args.gallery or args.probe or args.distractors):
        return None
    if not (args.gallery and args.probe):
        raise ConfigError(
            "identification needs both --gallery and --probe (--distractors optional)"
        )
    gp, gn = bm.read_identity_folder(args.gallery, "gallery folder")
    pp, pn = bm.read_identity_folder(args.probe, "probe folder")
    ids = {n: k for k, n in enumerate(sorted(set(gn)))}
    return {
        "gallery_paths": gp,
        "gallery_labels": np.array([ids[n] for n in gn], np.int64),
        "probe_paths": pp,
        "probe_labels": np.array([ids.get(n, -1) for n in pn], np.int64),
        "distractor_paths": bm.read_image_tree(args.distractors) if args.distractors else [],
    }


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    """Run the evaluation described by parsed ``args``; returns the results dict."""
    if not args.checkpoint and not args.onnx and not args.load_features:
        raise ConfigError(
            "no model given; expected --checkpoint CKPT, --onnx FILE or (IJB) --load-features"
        )
    if args.batch_size < 1 or args.folds < 2:
        raise ConfigError("--batch-size must be >= 1 and --folds >= 2")
    if args.report_pairs < 0:
        raise ConfigError(f"--report-pairs is {args.report_pairs}; expected 0 or more")
    out = _check_out(args)  # before reading anything: an output eval cannot write is one line
    report = (
        ReportData(num_pairs=args.report_pairs, num_probes=args.report_pairs)
        if args.report
        else None
    )
    benches = _load_benchmarks(args)
    for b in benches:  # a fold the k-fold protocol cannot use: refused before any embedding
        try:
            n_same = int(b.issame.sum())
            if n_same in (0, b.num_pairs):
                raise DataError(
                    f"all {b.num_pairs} pairs are {'genuine' if n_same else 'impostor'}; "
                    "expected genuine and impostor pairs"
                )
            check_folds(b.issame, b.folds, args.folds)
        except DataError as e:
            raise DataError(f"{b.source or b.name}: {e}") from None
    ident = _load_identification(args)
    if args.load_features and (benches or ident) and not (args.checkpoint or args.onnx):
        raise ConfigError("--load-features evaluates IJB only; other benchmarks need a network")
    ijb = IJBRun.from_args(args, len(args.checkpoint) + len(args.onnx))
    if not benches and ident is None and ijb is None:
        raise ConfigError(
            "nothing to evaluate; expected --bin, --lfw-pairs/--lfw-root, --pairs-csv, "
            "--synthetic, --gallery/--probe or --ijb"
        )
    num_models = len(args.checkpoint) + len(args.onnx) + len(args.load_features)
    tasks = len(benches) + (ident is not None) + (ijb is not None)
    check_free_space(out / "results.json", _output_bytes(num_models, tasks, args), "--out")
    device = resolve_device(args.device)
    aligner = Aligner.from_args(args, device)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_failed(out, e) from None
    before = _file_stats(out)
    specs = [("checkpoint", q) for q in args.checkpoint] + [("onnx", q) for q in args.onnx]
    names = unique_names([q for _, q in specs])
    results: dict = {
        "facerec_version": facerec.__version__,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": ["facerec", "eval", *argv],
        "settings": {
            "flip": not args.no_flip,
            "folds": args.folds,
            "index": args.index,
            "batch_size": args.batch_size,
            "device": device,
            "fars": list(DEFAULT_FARS),
            "dir_fars": list(DIR_FARS),
            "align": aligner.settings if aligner is not None else None,
        },
        "models": {},
        "plots": {"roc": {}},
    }
    for b in benches:  # a pair listed twice counts twice: say so once, with the count
        uniq = np.unique(np.sort(b.pairs, axis=1), axis=0).shape[0]
        if uniq < b.num_pairs:
            print(
                f"warning: {b.name}: {b.num_pairs - uniq} of {b.num_pairs} pairs repeat an "
                "earlier pair (same two images); each is scored as listed",
                file=sys.stderr,
            )
    roc_curves: dict[str, list] = {b.name: [] for b in benches}
    cmc_curves = []
    for (kind, path), name in zip(specs, names, strict=True):
        ckpt, onnx = (path, None) if kind == "checkpoint" else (None, path)
        emb = load_embedder(ckpt, onnx, device, args.batch_size, args.resize_mode)
        model: dict = {
            "kind": kind,
            "path": path,
            "input_size": list(emb.input_size),
            "resize_mode": emb.resize_mode,
            "embedding_dim": None,
            "verification": {},
        }
        for b in benches:
            print(f"[{name}] {b.name}: embedding images of {b.num_pairs} pairs", file=sys.stderr)
            stats: list[EmbedStats] = []
            images = b.images if aligner is None else aligner.wrap(b.name, b.images)
            scores = score_benchmark(
                emb, images, b.pairs, args.batch_size, not args.no_flip, args.workers, stats
            )
            st = stats[0]
            model["embedding_dim"] = st.dim
            rep = verification_report(
                scores, b.issame, b.folds, args.folds, DEFAULT_FARS, b.fold_method
            )
            hist = f"hist_{b.name}_{name}.png"
            plot_histograms(
                out / hist, scores, b.issame, f"{b.name}: {name}", rep["threshold_mean"]
            )
            rep.update(
                source=b.source,
                num_images=st.num_images,
                embed_seconds=st.seconds,
                images_per_second=st.images_per_second,
                plots={"roc": f"roc_{b.name}.png", "histogram": hist},
            )
            if aligner is not None:  # faces not found: centre-cropped, counted (never dropped)
                rep["align"] = aligner.report(b.name)
            model["verification"][b.name] = rep
            if report is not None:
                report.add_pairs(
                    name,
                    b.name,
                    images,
                    b.pairs,
                    b.issame,
                    scores,
                    rep["threshold_mean"],
                    emb.input_size,
                    emb.resize_mode,
                )
            label = f"{name} (AUC {rep['auc']:.4f})"
            roc_curves[b.name].append((label, rep["roc"]["fpr"], rep["roc"]["tpr"]))
        if ident is not None:
            print(f"[{name}] identification: embedding gallery and probes", file=sys.stderr)
            model["identification"], curve, dim = _identification(
                emb, args, ident, report, name, aligner
            )
            model["embedding_dim"] = dim
            cmc_curves.append((name, curve))
        if ijb is not None:
            model["ijb"] = {ijb.key: ijb.run_model(emb, name)}
            model["embedding_dim"] = model["ijb"][ijb.key]["embedding_dim"]
        results["models"][name] = model
    if ijb is not None:
        for path, fname in zip(
            args.load_features, unique_names(args.load_features, names, "features"), strict=True
        ):
            results["models"][fname] = ijb.run_features(path, fname)
        ijb.finish(results, out)
    for b in benches:
        fname = f"roc_{b.name}.png"
        plot_roc(out / fname, roc_curves[b.name], f"ROC: {b.name} ({b.num_pairs} pairs)")
        results["plots"]["roc"][b.name] = fname
    if cmc_curves:
        plot_cmc(out / "cmc.png", cmc_curves, "CMC (closed set)")
        results["plots"]["cmc"] = "cmc.png"
    write_json(out / "results.json", results)
    if report is not None:
        write_html_report(out / "report.html", results, report)
    _clear_stale_outputs(out, before)
    return results


#: the list of files an eval run wrote in its --out folder, read by the next run there
OUTPUTS_MANIFEST = ".facerec_eval_outputs.json"


def _check_out(args: argparse.Namespace) -> Path:
    """Check ``--out`` before any work: a folder (not a file), writable, not the same as or
    inside anything eval reads. Nothing is created here."""
    inputs = [("--checkpoint", q) for q in args.checkpoint] + [("--onnx", q) for q in args.onnx]
    inputs += [("--bin", q) for q in args.bin] + [("--pairs-csv", q) for q in args.pairs_csv]
    inputs += [("--load-features", q) for q in args.load_features]
    for flag in ("lfw_pairs", "lfw_root", "gallery", "probe", "distractors", "ijb"):
        value = getattr(args, flag, None)
        if isinstance(value, str):
            inputs.append((f"--{flag.replace('_', '-')}", value))
    return check_output(args.out, "--out", inputs, kind="folder")


def _output_bytes(num_models: int, tasks: int, args: argparse.Namespace) -> int:
    """A generous estimate of what one run writes: per model and benchmark the plots and its
    share of results.json (about 1 MiB), and with ``--report`` its thumbnails (about 0.2 MiB
    per pair shown)."""
    per = 2**20 + (args.report_pairs * 2**18 if args.report else 0)
    return max(1, num_models) * max(1, tasks) * per


def _file_stats(out: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, mtime ns, size) of each file in ``out``; eval writes atomically (a new inode)."""
    stats = {}
    for q in out.iterdir():
        if q.is_file():
            st = q.stat()
            stats[q.name] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return stats


def _clear_stale_outputs(out: Path, before: dict[str, tuple[int, int, int]]) -> None:
    """Remove the files the previous run here wrote that this run did not rewrite (a report.html
    beside a newer results.json), then record this run's files. Only files named in the
    previous run's manifest are ever removed: nothing a user put in the folder."""
    now = _file_stats(out)
    mine = sorted(n for n, st in now.items() if n != OUTPUTS_MANIFEST and before.get(n) != st)
    manifest = out / OUTPUTS_MANIFEST
    try:
        before = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        before = []
    for name in before:
        if isinstance(name, str) and name not in mine and Path(name).name == name:
            (out / name).unlink(missing_ok=True)
    atomic_write_text(manifest, json.dumps({"files": mine}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``facerec eval``; returns the exit status (2 on a user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        results = run(args, argv)
    except FacerecError as e:
        print(f"facerec eval: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk or a folder made read-only during the run
        print(f"facerec eval: error: {write_failed(e.filename or args.out, e)}", file=sys.stderr)
        return 2
    print(format_table(results))
    if ijb_table := format_ijb_table(results):
        print(ijb_table)
    print(f"\nwrote {Path(args.out) / 'results.json'} and plots to {args.out}")
    if args.report:
        print(f"wrote {Path(args.out) / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
