"""``facerec eval``: verification and identification benchmarks of one or more models
(examples in README's eval section).

Writes ``results.json`` (every number, keys in README's ``results.json`` section),
``roc_<benchmark>.png`` (all models), ``hist_<benchmark>_<model>.png`` and ``cmc.png`` to
``--out``, and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import operator
import sys
from pathlib import Path

from facerec.align.options import add_align_arguments, aligner_from_args
from facerec.errors import ConfigError, run_main
from facerec.inference import resolve_device
from facerec.io import atomic_write_text, check_free_space, check_output, write_failed
from facerec.metrics.calibration import METHODS as CALIBRATION_METHODS
from facerec.mining.faiss_index import INDEX_KINDS

from . import benchmarks as bm
from .embed import add_model_run_arguments
from .evaluation import EvalOptions, IdentificationSet, check_benchmarks, evaluate
from .groups import add_group_arguments, format_groups, read_groups_csv
from .html_report import DEFAULT_REPORT_PAIRS
from .ijb_cli import add_ijb_arguments, format_ijb_table, ijb_run_from_args
from .pair_args import add_pair_benchmark_arguments, read_pair_benchmarks
from .quality import add_quality_arguments
from .report import format_table


def build_parser() -> argparse.ArgumentParser:
    """The ``facerec eval`` argument parser."""
    p = argparse.ArgumentParser(
        prog="facerec eval",
        description="Evaluate face-recognition models: verification (10-fold accuracy, ROC, AUC, "
        "EER, TAR@FAR) and identification (FAISS, CMC, open-set DIR@FAR).",
    )
    m = p.add_argument_group("models (one or more)")
    for flag, meta, what in (
        ("--checkpoint", "CKPT", "facerec Lightning checkpoint"),
        ("--onnx", "FILE", "exported ONNX model"),
    ):
        m.add_argument(flag, action="append", default=[], metavar=meta, help=f"{what} (repeatable)")
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
    add_model_run_arguments(o)
    o.add_argument("--workers", type=int, default=2, help="image decoding threads (default 2)")
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
    add_quality_arguments(
        p.add_argument_group("face-image quality"),
        "draw the error-versus-reject curve (erc_<benchmark>.png); --min-quality leaves out "
        "the pairs with an image below Q from every metric",
    )
    c = p.add_argument_group("match confidence")
    c.add_argument(
        "--calibrate",
        nargs="?",
        const="isotonic",
        choices=CALIBRATION_METHODS,
        metavar="METHOD",
        help="fit score -> P(same identity) on a benchmark's pairs (isotonic, the default, or "
        "logistic), k-fold checked (ECE, reliability_<model>.png), and store it with the "
        "thresholds at standard FARs in a copy of each model: --out/<model>.calibrated.ckpt "
        "or .onnx (read by facerec verify)",
    )
    c.add_argument(
        "--calibrate-on",
        metavar="BENCHMARK",
        help="the benchmark to fit on, by its name in the results (needed with several)",
    )
    c.add_argument(
        "--calibrate-folds",
        type=int,
        default=5,
        metavar="K",
        help="folds of the held-out check (default 5)",
    )
    c.add_argument(
        "--calibrate-in-place",
        action="store_true",
        help="store the calibration in the model file itself (atomically; everything else kept) "
        "instead of a copy in --out",
    )
    add_group_arguments(p.add_argument_group("per-group (fairness) evaluation"))
    add_ijb_arguments(p)
    add_align_arguments(p)
    return p


def options_from_args(args: argparse.Namespace, device: str) -> EvalOptions:
    """The :class:`EvalOptions` of parsed ``facerec eval`` flags (each field is the flag of
    its name, but ``flip`` = not ``--no-flip``)."""
    fields = [f.name for f in dataclasses.fields(EvalOptions) if f.name not in ("flip", "device")]
    return EvalOptions(
        flip=not args.no_flip, device=device, **{k: getattr(args, k) for k in fields}
    )


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    """Run the evaluation described by parsed ``args`` (:func:`evaluate`); the results dict."""
    if not args.checkpoint and not args.onnx and not args.load_features:
        raise ConfigError(
            "no model given; expected --checkpoint CKPT, --onnx FILE or (IJB) --load-features"
        )
    opts = options_from_args(args, "cpu")
    opts.check()
    # before reading anything: an output eval cannot write is one line
    out = check_output(args.out, "--out", flag_paths(args, _INPUT_FLAGS), kind="folder")
    extra = [bm.synthetic_pairs(num_pairs=args.synthetic_pairs)] if args.synthetic else []
    benches = read_pair_benchmarks(args, extra)
    check_benchmarks(benches, args.folds)  # before any embedding
    ident = None
    if args.gallery or args.probe or args.distractors:
        if not (args.gallery and args.probe):
            raise ConfigError(
                "identification needs both --gallery and --probe (--distractors optional)"
            )
        ident = IdentificationSet.from_folders(args.gallery, args.probe, args.distractors)
    if args.load_features and (benches or ident) and not (args.checkpoint or args.onnx):
        raise ConfigError("--load-features evaluates IJB only; other benchmarks need a network")
    models = [("checkpoint", q) for q in args.checkpoint] + [("onnx", q) for q in args.onnx]
    ijb = ijb_run_from_args(args, len(models))
    if not benches and ident is None and ijb is None:
        raise ConfigError(
            "nothing to evaluate; expected --bin, --lfw-pairs/--lfw-root, --pairs-csv, --rfw, "
            "--synthetic, --gallery/--probe or --ijb"
        )
    num_models = len(models) + len(args.load_features)
    tasks = len(benches) + (ident is not None) + (ijb is not None)
    # generously, per model and task: 1 MiB of plots and JSON, 1/4 MiB a report pair shown
    per = 2**20 + (args.report_pairs * 2**18 if args.report else 0)
    check_free_space(out / "results.json", max(1, num_models) * max(1, tasks) * per, "--out")
    opts.device = resolve_device(args.device)
    aligner = aligner_from_args(args, opts.device)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_failed(out, e) from None
    before = _file_stats(out)
    results = evaluate(
        models,
        benches,
        out,
        options=opts,
        identification=ident,
        ijb=ijb,
        aligner=aligner,
        groups=read_groups_csv(args.groups) if args.groups else None,
        features=args.load_features,
        command=argv,
    )
    _clear_stale_outputs(out, before)
    return results


#: the list of files an eval run wrote in its --out folder, read by the next run there
OUTPUTS_MANIFEST = ".facerec_eval_outputs.json"


#: the flags that name files or folders eval reads (the list ones are repeatable)
_INPUT_FLAGS = (
    "checkpoint onnx bin pairs_csv load_features lfw_pairs lfw_root rfw groups gallery probe "
    "distractors ijb"
)


def flag_paths(args: argparse.Namespace, flags: str) -> list[tuple[str, str]]:
    """(``--flag``, path) for each path given to the space-separated ``flags`` (attribute
    names; a repeatable flag gives one per item), for :func:`facerec.io.check_output`."""
    out = []
    for flag in flags.split():
        value = getattr(args, flag, None)
        values = value if isinstance(value, list) else [value]
        out += [(f"--{flag.replace('_', '-')}", v) for v in values if isinstance(v, str)]
    return out


def _file_stats(out: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, mtime ns, size) of each file in ``out``; eval writes atomically (a new inode)."""
    stat = operator.attrgetter("st_ino", "st_mtime_ns", "st_size")
    return {q.name: stat(q.stat()) for q in out.iterdir() if q.is_file()}


def _clear_stale_outputs(out: Path, before: dict[str, tuple[int, int, int]]) -> None:
    """Remove the files the previous run here wrote that this run did not rewrite (a report.html
    beside a newer results.json), then record this run's files. Only files named in the
    previous run's manifest are ever removed: nothing a user put in the folder."""
    mine = sorted(
        n
        for n, st in _file_stats(out).items()
        if n != OUTPUTS_MANIFEST and before.get(n) != st and ".calibrated." not in n
    )  # a calibrated model copy is a deliverable: never removed by a later run
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
    return run_main("eval", _run_and_print, build_parser().parse_args(argv), argv)


def _run_and_print(args: argparse.Namespace, argv: list[str]) -> None:
    try:
        results = run(args, argv)
    except OSError as e:  # a full disk or a folder made read-only during the run
        raise write_failed(e.filename or args.out, e) from None
    print(format_table(results))
    for name, m in results["models"].items():
        for bench, v in m.get("verification", {}).items():
            if v.get("groups"):
                print("\n" + "\n".join(format_groups(name, bench, v["groups"])))
    if ijb_table := format_ijb_table(results):
        print(ijb_table)
    print(f"\nwrote {Path(args.out) / 'results.json'} and plots to {args.out}")
    if args.report:
        print(f"wrote {Path(args.out) / 'report.html'}")


if __name__ == "__main__":
    sys.exit(main())
