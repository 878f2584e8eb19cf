"""``facerec embed``: embed image files or folders with a checkpoint or an ONNX model.

Example::

    facerec embed --onnx r50.onnx photos/ extra.jpg --out gallery.npy --flip --normalize

writes ``gallery.npy`` (float32, (N, D)) and ``gallery.txt`` (``--list``), whose line ``i`` is
the image of row ``i``. Files are taken in the order given; a folder contributes its images
(recursively, by extension) in sorted path order. Images are decoded in threads one batch ahead
of the model and brought to the model's input size with its resize mode. ``--flip`` adds the
embedding of the mirror image (the flip test); ``--normalize`` L2-normalises each row last.

An image that does not decode stops the run with its path named (``--skip-bad`` skips it
instead: it is left out of both outputs and reported). Both outputs are written atomically:
after any failure nothing is left at ``--out`` or ``--list``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facerec.align.options import Aligner, add_align_arguments
from facerec.data.folder import list_images
from facerec.errors import ConfigError, DataError, FacerecError
from facerec.inference import (
    Embedder,
    FileImages,
    embed_images,
    load_embedder,
)
from facerec.io import atomic_path


def collect_images(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files in the order given; each folder's image files recursively, sorted by path
    (:func:`facerec.data.folder.list_images`).

    Raises:
        DataError: an input does not exist, or a folder holds no image file.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += list_images(p)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or folder; expected image files or folders")
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
    aligned to the model's input first (no face: centre-cropped and counted).
    """
    skipped: list[tuple[int, str]] | None = [] if skip_bad else None
    images = FileImages(paths)
    try:
        emb = embed_images(
            embedder,
            images if aligner is None else aligner.wrap("images", images),
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
    if len(bad_idx) == len(paths):
        raise DataError(f"none of the {len(paths)} images decoded; expected JPEG/PNG/... files")
    kept = [p for i, p in enumerate(paths) if i not in bad_idx]
    bad = [(paths[i], why) for i, why in skipped or []]
    return emb, kept, bad


def write_outputs(out: Path, list_path: Path, emb: np.ndarray, paths: Sequence[Path]) -> None:
    """Write ``emb`` to ``out`` (.npy) and the paths, one a line, to ``list_path``; atomically."""
    with atomic_path(out) as tmp_npy, atomic_path(list_path) as tmp_txt:
        with open(tmp_npy, "wb") as f:
            np.save(f, emb)
        tmp_txt.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")


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
        help="file list to write, line i = row i (default: --out with the suffix .txt)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--flip", action="store_true", help="add the mirror image's embedding")
    p.add_argument("--normalize", action="store_true", help="L2-normalise each embedding")
    p.add_argument(
        "--resize-mode",
        choices=("resize", "center_crop"),
        help="for images not at the model's input size (default: the model's)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--workers", type=int, default=2, help="image decoding threads (default 2)")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out images that do not decode (default: stop with an error)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_align_arguments(p)
    return p


def run(args: argparse.Namespace) -> tuple[np.ndarray, list[Path]]:
    """Run ``facerec embed`` for parsed ``args``; returns the embeddings and their files."""
    if args.batch_size < 1 or args.workers < 1:
        raise ConfigError("--batch-size and --workers must be >= 1")
    out = Path(args.out)
    list_path = Path(args.list) if args.list else out.with_suffix(".txt")
    if out.resolve() == list_path.resolve():
        raise ConfigError(f"--out and --list are the same file {out}; expected two files")
    for q in (out, list_path):
        if q.is_dir():
            raise ConfigError(f"{q} is a folder; expected a file name")
    paths = collect_images(args.inputs)
    embedder = load_embedder(
        args.checkpoint, args.onnx, args.device, args.batch_size, args.resize_mode
    )
    emb, kept, bad = embed_files(
        embedder,
        paths,
        batch_size=args.batch_size,
        flip=args.flip,
        normalize=args.normalize,
        num_workers=args.workers,
        skip_bad=args.skip_bad,
        progress=not args.no_progress,
        aligner=(aligner := Aligner.from_args(args, args.device)),
    )
    write_outputs(out, list_path, emb, kept)
    for _, why in bad:
        print(f"skipped: {why}", file=sys.stderr)
    skipped = f", skipped {len(bad)} that did not decode" if bad else ""
    if aligner is not None:
        n = aligner.report("images")["no_face"]
        skipped += f", {n} without a face centre-cropped" if n else ", a face found in each"
    print(
        f"wrote {out} {emb.shape[0]}x{emb.shape[1]} float32"
        f"{' L2-normalised' if args.normalize else ''}{' (flip-sum)' if args.flip else ''} "
        f"and {list_path}{skipped}"
    )
    return emb, kept


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``facerec embed``; returns the exit status (2 on a user error)."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one line each, no source excerpt
            run(args)
    except FacerecError as e:
        print(f"facerec embed: error: {e}", file=sys.stderr)
        return 2
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    print(f"facerec embed: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
