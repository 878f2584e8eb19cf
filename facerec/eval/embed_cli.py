"""``facerec embed``: embed image files or folders with a checkpoint or an ONNX model (example in
README's export section).

Writes ``--out`` (float32, (N, D)) and ``--list`` (default: ``--out`` with the suffix ``.jsonl``),
whose line ``i`` is the path of row ``i`` as a JSON string (:func:`read_names`). Files are taken in
the order given, a folder's images in sorted path order. An image that does not decode stops the run
(or is left out with ``--skip-bad``). Outputs are checked before any work and written atomically,
all or none. ``--quality [METHOD]`` also writes each row's face-image quality to ``--quality-out``;
``--min-quality Q`` leaves out the images below Q.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facerec.align.options import Aligner, add_align_arguments, aligner_from_args
from facerec.data.folder import list_images
from facerec.data.image import pixel_limit
from facerec.errors import ConfigError, DataError, run_main
from facerec.inference import Embedder, FileImages, embed_images, load_embedder
from facerec.io import atomic_path, check_free_space, check_output, write_failed
from facerec.metrics.quality import resolve_method

from .cli import flag_paths
from .embed import add_model_run_arguments
from .quality import add_quality_arguments, score_images


def collect_images(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files in the order given; each folder's image files recursively, sorted by path
    (:func:`facerec.data.folder.list_images`). DataError for a missing input or empty folder."""
    out: list[Path] = []
    for p in map(Path, inputs):
        if not (p.is_dir() or p.is_file()):
            raise DataError(f"{p}: no such file or folder; expected image files or folders")
        out += list_images(p) if p.is_dir() else [p]
    return out


def embed_files(
    embedder: Embedder,
    paths: Sequence[Path],
    batch_size: int = 64,
    flip: bool = False,
    normalize: bool = False,
    num_workers: int = 2,
    skip_bad: bool = False,
    progress: bool = True,
    aligner: Aligner | None = None,
) -> tuple[np.ndarray, list[Path], list[tuple[Path, str]]]:
    """Embed ``paths``: -> (embeddings (M, D) float32, the M paths kept, [(bad path, why)]).

    With ``skip_bad`` images that do not decode are left out; otherwise the first one raises
    :class:`DataError` naming it. With an ``aligner`` (``--align``) each photo is detected and
    aligned onto the model's template first (no face: centre-cropped and counted).
    """
    skipped: list[tuple[int, str]] | None = [] if skip_bad else None
    images = FileImages(paths)
    try:
        emb = embed_images(
            embedder,
            images if aligner is None else aligner.wrap("images", images, embedder),
            batch_size,
            flip,
            num_workers,
            skipped=skipped,
            normalize=normalize,
            progress=progress,
        )
    except DataError as e:
        raise DataError(f"{e}; use --skip-bad to leave such files out") from None
    bad_idx = {i for i, _ in skipped or []}
    kept = [p for i, p in enumerate(paths) if i not in bad_idx]
    if not kept:
        raise DataError(f"none of the {len(paths)} images decoded; expected JPEG/PNG/... files")
    return emb, kept, [(paths[i], why) for i, why in skipped or []]


def name_line(path: str | os.PathLike[str]) -> str:
    """One line of the names file: ``path`` as a JSON string. Readable Unicode where it can be
    UTF-8; a name that is not valid UTF-8 (undecodable bytes) is written with ``\\u`` escapes, so
    ``os.fsencode(json.loads(line))`` gives its bytes back."""
    text = os.fspath(path)
    undecodable = any("\ud800" <= c <= "\udfff" for c in text)  # lone surrogates: not UTF-8
    return json.dumps(text, ensure_ascii=undecodable) + "\n"


def read_names(path: str | os.PathLike[str]) -> list[str]:
    """The image paths of a names file, in row order: JSON lines (``.jsonl``, what ``facerec
    embed`` writes), or one path a line for a ``.txt`` of earlier versions. DataError for a
    missing file or a line that is not a JSON string."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as e:
        raise DataError(f"{p}: cannot read the names file ({e.strerror})") from None
    if p.suffix.lower() == ".txt":
        return text.splitlines()
    names = []
    for k, line in enumerate(text.removesuffix("\n").split("\n")):
        try:
            name = json.loads(line)
        except json.JSONDecodeError:
            name = None
        if not isinstance(name, str):
            raise DataError(f"{p}: line {k + 1} is not a JSON string; expected one path a line")
        names.append(name)
    return names


def write_outputs(
    out: Path,
    list_path: Path,
    emb: np.ndarray,
    paths: Sequence[Path],
    quality: np.ndarray | None = None,
    quality_path: Path | None = None,
) -> None:
    """Write ``emb`` to ``out`` (.npy) and the paths, one JSON string a line (see
    :func:`name_line`), to ``list_path`` (and ``quality`` to ``quality_path`` when given);
    atomically, all or none."""
    what = f"{out} and {list_path}" + (f" and {quality_path}" if quality_path else "")
    try:
        with contextlib.ExitStack() as stack:
            tmp_npy = stack.enter_context(atomic_path(out))
            tmp_names = stack.enter_context(atomic_path(list_path))
            with open(tmp_npy, "wb") as f:
                np.save(f, emb)
            tmp_names.write_bytes("".join(name_line(p) for p in paths).encode("utf-8"))
            if quality is not None and quality_path is not None:
                with open(stack.enter_context(atomic_path(quality_path)), "wb") as f:
                    np.save(f, np.asarray(quality, np.float32))
    except OSError as e:
        raise write_failed(what, e) from None


def build_parser() -> argparse.ArgumentParser:
    """The ``facerec embed`` argument parser."""
    p = argparse.ArgumentParser(
        prog="facerec embed",
        description="Embed images (files and/or folders) with a facerec checkpoint or ONNX model "
        "into a .npy array, with the list of files beside it (line i = row i).",
    )
    m = p.add_mutually_exclusive_group(required=True)
    m.add_argument("--checkpoint", metavar="CKPT", help="facerec checkpoint (PyTorch)")
    m.add_argument("--onnx", metavar="MODEL", help="ONNX model written by facerec export")
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_FOLDER", help="image files or folders")
    p.add_argument("--out", required=True, metavar="FILE", help="embeddings .npy (N, D) float32")
    p.add_argument(
        "--list",
        metavar="FILE",
        help="names file to write: line i is the path of row i as a JSON string (default: "
        "--out with the suffix .jsonl)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--flip", action="store_true", help="add the mirror image's embedding")
    p.add_argument("--normalize", action="store_true", help="L2-normalise each embedding")
    add_model_run_arguments(p)
    p.add_argument("--workers", type=int, default=2, help="image decoding threads (default 2)")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out images that do not decode (default: stop with an error)",
    )
    add_decode_arguments(p)
    q = p.add_argument_group("face-image quality")
    add_quality_arguments(q, "write it to --quality-out (row i = row i of --out)")
    q.add_argument(
        "--quality-out",
        metavar="FILE",
        help="qualities .npy, float32 (N,), row i = row i of --out (default: --out with the "
        "suffix .quality.npy)",
    )
    add_align_arguments(p)
    return p


def run(args: argparse.Namespace) -> tuple[np.ndarray, list[Path]]:
    """Run ``facerec embed`` for parsed ``args``; returns the embeddings and their files."""
    if args.batch_size < 1 or args.workers < 1:
        raise ConfigError("--batch-size and --workers must be >= 1")
    list_path = Path(args.list) if args.list else Path(args.out).with_suffix(".jsonl")
    if list_path.suffix.lower() == ".txt":
        raise ConfigError(
            f"--list {list_path}: names are written as JSON lines (one JSON string a line, so "
            "any file name round-trips); expected a name such as names.jsonl"
        )
    reads = [("the input", i) for i in args.inputs] + flag_paths(args, "checkpoint onnx")
    out = check_output(args.out, "--out", reads)
    list_path = check_output(list_path, "--list", reads)
    if out.resolve() == list_path.resolve():
        raise ConfigError(f"--out and --list are the same file {out}; expected two files")
    if args.min_quality is not None and args.quality is None:
        args.quality = "auto"
    quality_path = None
    if args.quality is not None:
        if args.quality_passes < 2:
            raise ConfigError(f"--quality-passes must be >= 2, got {args.quality_passes}")
        quality_path = Path(args.quality_out or Path(args.out).with_suffix(".quality.npy"))
        quality_path = check_output(quality_path, "--quality-out", reads)
        if quality_path.resolve() in (out.resolve(), list_path.resolve()):
            raise ConfigError(
                f"--quality-out {quality_path} is also --out or --list; expected its own file"
            )
    paths = collect_images(args.inputs)
    embedder = load_embedder(
        args.checkpoint, args.onnx, args.device, args.batch_size, args.resize_mode
    )
    dim = getattr(getattr(embedder, "preprocess", None), "embedding_dim", None) or 512
    need = 4 * int(dim) * len(paths) + sum(len(name_line(p).encode()) for p in paths) + 256
    check_free_space(out, need, "--out")
    emb, kept, bad = embed_files(
        embedder,
        paths,
        batch_size=args.batch_size,
        flip=args.flip,
        normalize=args.normalize,
        num_workers=args.workers,
        skip_bad=args.skip_bad,
        progress=not args.no_progress,
        aligner=(aligner := aligner_from_args(args, args.device)),
    )
    quality, dropped = None, ""
    if quality_path is not None:
        method = resolve_method(args.quality)
        images = FileImages(kept)
        quality = score_images(
            embedder,
            images if aligner is None else aligner.wrap("quality", images, embedder),
            method,
            args.quality_passes,
            args.quality_seed,
            args.batch_size,
            args.workers,
            progress=not args.no_progress,
        )
        if args.min_quality is not None:
            keep = quality >= args.min_quality
            dropped = (
                f", dropped {int((~keep).sum())} of {keep.size} below {method} quality "
                f"{args.min_quality:g}"
            )
            if not keep.any():
                raise DataError(
                    f"--min-quality {args.min_quality:g} leaves none of the {keep.size} images "
                    f"(their {method} quality is {quality.min():.4g} to {quality.max():.4g}); "
                    "expected a lower threshold"
                )
            emb, quality = emb[keep], quality[keep]
            kept = [p for p, k in zip(kept, keep, strict=True) if k]
        dropped = f"; {method} quality in {quality_path}{dropped}"
    write_outputs(out, list_path, emb, kept, quality, quality_path)
    for _, why in bad:
        print(f"skipped: {why}", file=sys.stderr)
    skipped = f", skipped {len(bad)} that did not decode" if bad else ""
    if aligner is not None:
        n = aligner.report("images")["no_face"]
        skipped += f", {n} without a face centre-cropped" if n else ", a face found in each"
    print(
        f"wrote {out} {emb.shape[0]}x{emb.shape[1]} float32"
        f"{' L2-normalised' if args.normalize else ''}{' (flip-sum)' if args.flip else ''} "
        f"and {list_path}{skipped}{dropped}"
    )
    return emb, kept


def add_decode_arguments(parser: Any, refuse: str = "refuse") -> None:
    """``--max-pixels`` and ``--no-progress`` (``facerec embed`` and ``facerec doctor``)."""
    parser.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help=f"{refuse} images larger than N pixels before decoding them (default 50000000, "
        "or $FACEREC_MAX_PIXELS)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def pixel_limit_of(args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """``--max-pixels`` as a :func:`~facerec.data.image.pixel_limit` block; ConfigError below 1."""
    if args.max_pixels is not None and args.max_pixels < 1:
        raise ConfigError(f"--max-pixels must be >= 1, got {args.max_pixels}")
    return pixel_limit(args.max_pixels)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``facerec embed``; returns the exit status (2 on a user error)."""
    return run_main("embed", _run_limited, build_parser().parse_args(argv))


def _run_limited(args: argparse.Namespace) -> None:
    with pixel_limit_of(args), warnings.catch_warnings():
        warnings.showwarning = _show_warning  # one line each, no source excerpt
        run(args)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    print(f"facerec embed: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
