"""``facerec align``: a folder of photos -> aligned face crops on a 5-point template.

Example::

    facerec align --in photos/ --out aligned/ --size 112 112 --keep framed
    facerec align --in photos/ --out chips/ --template dlib          # dlib-r29's 150x150 chip

``--template`` is ``arcface`` (default; insightface's template) or ``dlib`` (dlib's face chip,
150x150 with padding 0.25 by default, what ``dlib-r29`` takes;
:func:`~facerec.align.transform.dlib_template`).

``photos/alice/1.jpg`` becomes ``aligned/alice/1.png``: the identity-folder layout (or a flat
folder) is kept. Two photos that differ only in their extension (``a.jpg``, ``a.png``) keep it
in their crops' names (``a.jpg.png``, ``a.png.png``), so neither is lost; the summary counts
them. Each crop is written atomically; a re-run skips the images already done, so an
interrupted run continues where it stopped; images unreadable before are tried again (images
without a face are not: ``--redo`` starts over). ``aligned/align_report.csv`` lists every
image: status (``ok``, ``multiple``: several faces, ``--keep`` chose; ``no_face``;
``unreadable``), the face count, the rule's margin (how far the chosen face led the runner-up,
:func:`~facerec.align.pipeline.face_values`), score, box and the 5 landmarks. Images without a
face are reported there and in the summary line, never silently dropped or centre-cropped.

``--landmarks FILE`` aligns with given landmarks (see :mod:`facerec.align.landmarks`) and needs
no detector; otherwise MTCNN (the ``facerec[align]`` extra) finds the faces, on the GPU when
there is one.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from facerec.align.detect import Detections, FaceDetector, MTCNNDetector
from facerec.align.landmarks import detections_from_landmarks, read_landmarks
from facerec.align.pipeline import (
    DEFAULT_KEEP,
    KEEP_POLICIES,
    FaceChoice,
    choose_faces,
    detect_images,
)
from facerec.align.transform import (
    DEFAULT_TEMPLATE,
    DLIB_CHIP_SIZE,
    TEMPLATES,
    crop_size,
    template_points,
)
from facerec.data.folder import list_images
from facerec.data.image import encode_image, read_image
from facerec.errors import ConfigError, DataError
from facerec.io import atomic_write_bytes, atomic_write_csv

__all__ = ["REPORT_COLUMNS", "align_folder", "list_photos", "main"]

REPORT_NAME = "align_report.csv"
_JOURNAL_NAME = ".align_report.partial.csv"
_LM = ("le", "re", "nose", "lm", "rm")
REPORT_COLUMNS = (
    "path",
    "status",
    "faces",
    "margin",
    "face",
    "score",
    "x1",
    "y1",
    "x2",
    "y2",
    *(f"{p}_{c}" for p in _LM for c in "xy"),
    "output",
    "error",
)
_WRITE_EXT = (".png", ".jpg", ".jpeg", ".bmp")


def list_photos(root: Path) -> list[Path]:
    """Image files under ``root`` (any depth, the one scanner's rules), relative to ``root``."""
    return [p.relative_to(root) for p in list_images(root, "photo folder (--in)")]


def _fmt(x: float) -> str:
    return f"{float(x):.2f}"


def _rows_for(rel: str, choice: FaceChoice | None, outputs: list[str], error: str = "") -> list:
    """Report rows of one image: one per kept face, or one with the status only."""
    if choice is None:
        return [[rel, "unreadable", "", "", "", "", *[""] * 14, "", error]]
    if len(choice.kept) == 0:
        return [[rel, choice.status, choice.found, "", "", "", *[""] * 14, "", error]]
    margin = f"{choice.margin:.4f}" if np.isfinite(choice.margin) else ""
    rows = []
    for k in range(len(choice.kept)):
        b, lm = choice.kept.boxes[k], choice.kept.landmarks[k].reshape(-1)
        rows.append(
            [
                rel,
                choice.status,
                choice.found,
                margin,
                k,
                f"{float(choice.kept.scores[k]):.4f}",
                *map(_fmt, b),
                *map(_fmt, lm),
                outputs[k],
                error,
            ]
        )
    return rows


def _read_report(path: Path) -> dict[str, list[list[str]]]:
    """Rows of an earlier report or journal, by image path (missing or unreadable: none).

    A report of an earlier version (without the ``margin`` column) is read too."""
    rows: dict[str, list[list[str]]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or not set(REPORT_COLUMNS) - {"margin"} <= set(header):
                return {}
            where = [header.index(c) if c in header else None for c in REPORT_COLUMNS]
            for r in reader:
                if len(r) == len(header):
                    row = [r[i] if i is not None else "" for i in where]
                    rows.setdefault(row[0], []).append(row)
    except (FileNotFoundError, UnicodeDecodeError, csv.Error):
        return {}
    return rows


_STATUS, _OUTPUT = REPORT_COLUMNS.index("status"), REPORT_COLUMNS.index("output")


def _done(rows: list[list[str]], out: Path, shared: set[str]) -> bool:
    """An image is done when its rows are complete: each crop written exists and is its own
    (not also claimed by another photo: an earlier version wrote ``a.jpg`` and ``a.png`` to one
    ``a.png``); an image unreadable before is not done (it is tried again), one without a face
    is."""
    return all(
        r[_STATUS] == "no_face"
        or (
            r[_STATUS] != "unreadable" and r[_OUTPUT] not in shared and (out / r[_OUTPUT]).is_file()
        )
        for r in rows
    )


def _crop_stems(rels: Sequence[Path]) -> dict[str, str]:
    """Each photo's crop name without the crop extension: its path without its extension, or
    with it where photos would share a name (``a.jpg``, ``A.png`` -> ``a.jpg``, ``A.png``; case
    folded, as on Windows and macOS file systems). Names still shared are refused."""
    groups: dict[str, list[Path]] = {}
    for rel in rels:
        groups.setdefault(rel.with_suffix("").as_posix().casefold(), []).append(rel)
    stems = {
        rel.as_posix(): (rel.as_posix() if len(g) > 1 else rel.with_suffix("").as_posix())
        for g in groups.values()
        for rel in g
    }
    seen: dict[str, str] = {}
    for key, stem in stems.items():
        other = seen.setdefault(stem.casefold(), key)
        if other != key:
            raise DataError(
                f"photos {other!r} and {key!r} would write the same crop {stem!r}; rename one"
            )
    return stems


def _batches(items: Sequence, n: int) -> Iterator[Sequence]:
    for s in range(0, len(items), n):
        yield items[s : s + n]


def _load(root: Path, rel: Path) -> np.ndarray | DataError:
    try:
        return read_image(root / rel)
    except DataError as e:
        return e


def align_folder(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    size: tuple[int, int] = (112, 112),
    keep: str = DEFAULT_KEEP,
    min_face: int = 20,
    threshold: float = 0.7,
    template: str = DEFAULT_TEMPLATE,
    landmarks: str | os.PathLike[str] | None = None,
    detector: FaceDetector | None = None,
    ext: str = ".png",
    batch_size: int = 16,
    max_side: int = 1024,
    device: str = "auto",
    redo: bool = False,
    progress: bool = True,
    threads: int | None = None,
) -> dict[str, int]:
    """Align every photo under ``src`` into ``dst`` (see the module docstring).

    Args:
        size: output (height, width): square, or 8:7 tall like 112x96 (``arcface`` only).
        template: a name of :data:`~facerec.align.transform.TEMPLATES`.
        keep: which face of an image with several: a rule of
            :func:`~facerec.align.pipeline.face_values` (``framed``, the default;
            ``insightface``, ``largest``, ``center``) or ``all`` (writes ``name_0.png``,
            ``name_1.png``, ... best score first).
        min_face: smallest face (box side, pixels) the detector searches for and keeps.
        threshold: the detector's minimum face probability.
        landmarks: a landmark file; only its images are aligned, with its points (no detector).
        detector: a :class:`FaceDetector` to use instead of building MTCNN.
        ext: the crops' file type (``.png`` lossless, ``.jpg``, ...).
        max_side: photos are searched for faces at most this big (longer side); crops are
            taken from the full-resolution photo.
        device: the detector's device: ``auto`` (a GPU when there is one), ``cpu``, ``cuda:N``.
        threads: torch CPU threads of the detector (None: torch's setting).

    Returns:
        counts: ``images``, ``ok``, ``multiple``, ``no_face``, ``unreadable``, ``skipped``
        (already done), ``retried`` (unreadable before, tried again), ``renamed`` (crops named
        with their photo's extension: another photo has the same name), ``crops`` (files
        written now).
    """
    root, out = Path(src), Path(dst)
    ext = ext if ext.startswith(".") else f".{ext}"
    if ext.lower() not in _WRITE_EXT:
        raise ConfigError(
            f"--ext {ext!r} is not supported; expected one of {', '.join(_WRITE_EXT)}"
        )
    if keep not in KEEP_POLICIES:
        raise ConfigError(f"unknown --keep {keep!r}; expected one of {', '.join(KEEP_POLICIES)}")
    template_points(template, size)  # an unknown template or crop size fails before any work
    given = None
    if landmarks is not None:
        given = read_landmarks(landmarks)
        rels = [Path(p) for p in given]
        for rel in rels:
            if rel.is_absolute() or ".." in rel.parts:
                raise DataError(
                    f"{landmarks}: image path {rel.as_posix()!r} leaves the image root; expected "
                    "paths relative to --in (the crops mirror them under --out)"
                )
        if not root.is_dir():
            raise DataError(f"image root (--in) {root} does not exist; expected a folder")
    else:
        rels = list_photos(root)
    try:
        if out.resolve() == root.resolve() or out.resolve().is_relative_to(root.resolve()):
            raise ConfigError(f"--out {out} is inside --in {root}; choose a folder outside it")
    except OSError:  # pragma: no cover - resolve() on an odd file system
        pass

    stems = _crop_stems(rels)
    earlier: dict[str, list[list[str]]] = {}
    journal = out / _JOURNAL_NAME
    if not redo:
        earlier = _read_report(out / REPORT_NAME)
        earlier.update(_read_report(journal))
    claims = Counter(
        r[_OUTPUT] for rel in rels for r in earlier.get(rel.as_posix(), []) if r[_OUTPUT]
    )
    shared = {name for name, n in claims.items() if n > 1}
    rows: dict[str, list] = {}
    todo = []
    counts = dict.fromkeys(("ok", "multiple", "no_face", "unreadable", "crops", "retried"), 0)
    for rel in rels:
        key = rel.as_posix()
        if key in earlier and _done(earlier[key], out, shared):
            rows[key] = earlier[key]
        else:
            todo.append(rel)
            counts["retried"] += key in earlier and earlier[key][0][_STATUS] == "unreadable"
    counts["images"], counts["skipped"] = len(rels), len(rels) - len(todo)
    counts["renamed"] = sum(stems[r.as_posix()] == r.as_posix() for r in rels)

    if todo and given is None and detector is None:
        from facerec.base.device import resolve_device

        detector = MTCNNDetector(
            min_face=min_face,
            threshold=threshold,
            device=resolve_device(device or "auto"),
            batch_size=batch_size,
            threads=threads,
        )
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(
            total=len(todo), unit="img", desc="aligning", file=sys.stderr, dynamic_ncols=True
        )
    out.mkdir(parents=True, exist_ok=True)
    new_journal = not journal.exists() or redo
    with (
        open(journal, "w" if new_journal else "a", newline="", encoding="utf-8") as jf,
        ThreadPoolExecutor(2) as pool,
    ):
        jw = csv.writer(jf)
        if new_journal:
            jw.writerow(REPORT_COLUMNS)
        chunks = list(_batches(todo, batch_size))
        ahead = pool.submit(lambda c: [_load(root, r) for r in c], chunks[0]) if chunks else None
        for b, chunk in enumerate(chunks):
            assert ahead is not None
            loaded = ahead.result()
            if b + 1 < len(chunks):
                ahead = pool.submit(lambda c: [_load(root, r) for r in c], chunks[b + 1])
            good = [i for i, im in enumerate(loaded) if not isinstance(im, DataError)]
            if given is not None:
                dets = [detections_from_landmarks(given[chunk[i].as_posix()]) for i in good]
            else:
                assert detector is not None
                dets = detect_images(detector, [loaded[i] for i in good], max_side=max_side)
            det_of: dict[int, Detections] = dict(zip(good, dets, strict=True))
            for i, rel in enumerate(chunk):
                key, im = rel.as_posix(), loaded[i]
                if isinstance(im, DataError):
                    new = _rows_for(key, None, [], str(im))
                    counts["unreadable"] += 1
                else:
                    choice = choose_faces(
                        det_of[i], im.shape, keep, 0.0 if given is not None else min_face
                    )
                    counts[choice.status] += 1
                    stem = stems[key]
                    names = (
                        [f"{stem}_{k}{ext}" for k in range(len(choice.kept))]
                        if keep == "all"
                        else [f"{stem}{ext}"] * len(choice.kept)
                    )
                    crops = choice.crops(im, size, template)
                    for name, crop in zip(names, crops, strict=True):
                        atomic_write_bytes(out / name, encode_image(crop, ext, source=name))
                        counts["crops"] += 1
                    new = _rows_for(key, choice, names)
                rows[key] = new
                jw.writerows(new)
            jf.flush()
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    for key, rs in rows.items():  # skipped images count by their earlier status
        if Path(key) not in todo:
            counts[rs[0][1]] = counts.get(rs[0][1], 0) + 1
    report = (row for rel in rels for row in rows[rel.as_posix()])
    atomic_write_csv(out / REPORT_NAME, REPORT_COLUMNS, report)
    journal.unlink(missing_ok=True)
    return counts


def summary(counts: dict[str, int], out: Path, keep: str) -> str:
    """The one-line summary printed at the end of ``facerec align``."""
    n = counts["images"]
    aligned = counts["ok"] + counts["multiple"]
    parts = [f"{counts['ok']} one face", f"{counts['multiple']} several faces (kept {keep})"]
    parts += [f"{counts['no_face']} no face", f"{counts['unreadable']} unreadable"]
    done = f"; {counts['skipped']} done before" if counts["skipped"] else ""
    if counts.get("retried"):
        done += f"; {counts['retried']} unreadable before tried again"
    if counts.get("renamed"):
        done += (
            f"; {counts['renamed']} crops keep their photo's extension in their name "
            "(another photo has the same name)"
        )
    return (
        f"aligned {aligned} of {n} images into {out} ({', '.join(parts)}{done}); "
        f"report: {out / REPORT_NAME}"
    )


def _default_size(template: str) -> list[int]:
    return [DLIB_CHIP_SIZE] * 2 if template == "dlib" else [112, 112]


def main(argv: list[str] | None = None) -> int:
    """``facerec align``; returns the exit status (errors raise :class:`FacerecError`)."""
    parser = argparse.ArgumentParser(
        prog="facerec align",
        description="Detect faces in photos and warp each onto a 5-point template (ArcFace's, "
        "or dlib's face chip). "
        "Keeps the folder layout; writes align_report.csv; a re-run continues.",
    )
    parser.add_argument(
        "--in", dest="src", required=True, type=Path, metavar="RAW", help="folder of photos"
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="ALIGNED", help="folder for the crops"
    )
    parser.add_argument(
        "--size",
        nargs="+",
        type=int,
        default=None,
        metavar="PX",
        help="crop HEIGHT [WIDTH] (default 112 112, 150 with --template dlib; e.g. 64, or "
        "112 96 for SphereFace)",
    )
    parser.add_argument(
        "--template",
        choices=TEMPLATES,
        default=DEFAULT_TEMPLATE,
        help="alignment template: arcface (default, insightface's) or dlib (dlib's face chip, "
        "padding 0.25, what the dlib-r29 model takes)",
    )
    parser.add_argument(
        "--keep",
        choices=KEEP_POLICIES,
        default=DEFAULT_KEEP,
        help=f"face to keep when a photo has several (default {DEFAULT_KEEP}: the largest "
        "in-frame area less the squared distance from the centre; insightface: area less "
        "twice that; largest; center; all: every face)",
    )
    parser.add_argument(
        "--min-face",
        type=int,
        default=20,
        metavar="PX",
        help="smallest face side searched for, pixels (default 20)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.7,
        metavar="P",
        help="minimum face probability (default 0.7)",
    )
    parser.add_argument(
        "--landmarks",
        type=Path,
        metavar="FILE.csv",
        help="align with these landmarks (path,x1,y1,...,x5,y5 per face); no detector",
    )
    parser.add_argument("--ext", default=".png", choices=_WRITE_EXT, help="crop file type")
    parser.add_argument("--batch-size", type=int, default=16, help="photos per detector call")
    parser.add_argument(
        "--max-side",
        type=int,
        default=1024,
        metavar="PX",
        help="search faces in photos shrunk to this long side (0: never)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (default: cuda if available, else cpu), cpu, cuda:N"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads of the detector (default 0: torch's, all cores; 1 is faster on a "
        "machine other jobs keep busy)",
    )
    parser.add_argument("--redo", action="store_true", help="align every photo again")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threads < 0:
        raise ConfigError(f"--threads must be 0 (all) or more, got {args.threads}")
    if args.max_side < 0:
        raise ConfigError(f"--max-side must be 0 or more, got {args.max_side}")
    counts = align_folder(
        args.src,
        args.out,
        size=crop_size(args.size or _default_size(args.template)),
        keep=args.keep,
        min_face=args.min_face,
        threshold=args.threshold,
        template=args.template,
        landmarks=args.landmarks,
        ext=args.ext,
        batch_size=args.batch_size,
        max_side=args.max_side,
        device=args.device,
        redo=args.redo,
        progress=not args.no_progress,
        threads=args.threads or None,
    )
    print(summary(counts, args.out, args.keep))
    return 0
