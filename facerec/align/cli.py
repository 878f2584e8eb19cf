"""``facerec align``: a folder of photos -> aligned face crops on a 5-point template.

Example::

    facerec align --in photos/ --out aligned/ --size 112 112 --keep framed
    facerec align --in photos/ --out chips/ --template dlib          # dlib-r29's 150x150 chip

``photos/alice/1.jpg`` becomes ``aligned/alice/1.png`` (the folder layout is kept); photos that
differ only in their extension keep it in their crops' names (``a.jpg.png``, ``a.png.png``). Crops
are written atomically and a re-run skips the images done (unreadable ones are tried again;
``--redo`` starts over). ``aligned/align_report.csv`` (:data:`REPORT_COLUMNS`; the README
describes them) lists every image; images without a face are reported, never dropped or
centre-cropped.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facerec.align.detect import Detections, FaceDetector, MTCNNDetector
from facerec.align.landmarks import detections_from_landmarks, read_landmarks
from facerec.align.pipeline import DEFAULT_KEEP, KEEP_POLICIES, FaceChoice, detect_images
from facerec.align.source import choose_in_batches
from facerec.align.transform import (
    DEFAULT_TEMPLATE,
    DLIB_CHIP_SIZE,
    TEMPLATES,
    crop_size,
    template_points,
)
from facerec.data.folder import list_images
from facerec.data.image import encode_image, image_bar, read_image
from facerec.errors import ConfigError, DataError
from facerec.io import atomic_write_bytes, atomic_write_csv

REPORT_NAME = "align_report.csv"
_JOURNAL_NAME = ".align_report.partial.csv"
REPORT_COLUMNS = (
    *("path", "status", "faces", "margin", "face", "score", "x1", "y1", "x2", "y2"),
    *(f"{p}_{c}" for p in ("le", "re", "nose", "lm", "rm") for c in "xy"),
    *("output", "error"),
)
_WRITE_EXT = (".png", ".jpg", ".jpeg", ".bmp")
_STATUS, _OUTPUT = REPORT_COLUMNS.index("status"), REPORT_COLUMNS.index("output")


def _rows_for(rel: str, choice: FaceChoice | None, outputs: list[str], error: str = "") -> list:
    """Report rows of one image: one per kept face, or one with the status only."""
    if choice is None or len(choice.kept) == 0:
        head = [rel, "unreadable", ""] if choice is None else [rel, choice.status, choice.found]
        return [[*head, *[""] * 18, error]]
    margin = f"{choice.margin:.4f}" if np.isfinite(choice.margin) else ""
    kept = choice.kept
    return [
        [rel, choice.status, choice.found, margin, k, f"{float(kept.scores[k]):.4f}"]
        + [f"{float(x):.2f}" for x in (*kept.boxes[k], *kept.landmarks[k].reshape(-1))]
        + [outputs[k], error]
        for k in range(len(kept))
    ]


def _read_report(path: Path) -> dict[str, list[list[str]]]:
    """Rows of an earlier report or journal by image path (none if missing or unreadable); a
    report without the ``margin`` column is read too."""
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


def _done(rows: list[list[str]], out: Path, shared: set[str]) -> bool:
    """Whether an image is done: no face found, or every crop exists and is its own (not
    ``shared`` with another photo); unreadable ones are not."""
    return all(
        r[_STATUS] == "no_face"
        or (
            r[_STATUS] != "unreadable" and r[_OUTPUT] not in shared and (out / r[_OUTPUT]).is_file()
        )
        for r in rows
    )


def _crop_stems(rels: Sequence[Path]) -> dict[str, str]:
    """Each photo's crop name without the crop extension: its path without its extension, or
    with it where photos would share a name (case folded, as on Windows and macOS). Names still
    shared are refused."""
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
        if (other := seen.setdefault(stem.casefold(), key)) != key:
            raise DataError(
                f"photos {other!r} and {key!r} would write the same crop {stem!r}; rename one"
            )
    return stems


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
        keep: a rule of :func:`~facerec.align.pipeline.face_values` or ``all`` (writes
            ``name_0.png``, ``name_1.png``, ... best score first).
        min_face, threshold: the smallest face side (pixels) and face probability kept.
        landmarks: a landmark file; only its images are aligned, with its points (no detector).
        detector: a :class:`FaceDetector` to use instead of building MTCNN.
        max_side: the longest side searched for faces; crops come from the full photo.
        device, threads: the detector's device (``auto``: a GPU if any) and torch CPU threads.

    Returns counts: ``images``, ``ok``, ``multiple``, ``no_face``, ``unreadable``, ``skipped``
    (done before), ``retried`` (unreadable before), ``renamed`` (crops named with their photo's
    extension), ``crops`` (files written now).
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
        rels = [p.relative_to(root) for p in list_images(root, "photo folder (--in)")]
    with contextlib.suppress(OSError):  # resolve() on an odd file system
        if out.resolve().is_relative_to(root.resolve()):  # the same folder too
            raise ConfigError(f"--out {out} is inside --in {root}; choose a folder outside it")

    stems = _crop_stems(rels)
    journal = out / _JOURNAL_NAME
    earlier = {} if redo else {**_read_report(out / REPORT_NAME), **_read_report(journal)}
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
            rows[key] = earlier[key]  # counted by its earlier status
            counts[rows[key][0][_STATUS]] = counts.get(rows[key][0][_STATUS], 0) + 1
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
    bar = image_bar(len(todo), "aligning", bool(progress and todo), dynamic_ncols=True)

    def detect(images: list[np.ndarray], chunk: list[Path]) -> list[Detections]:
        if given is not None:
            return [detections_from_landmarks(given[rel.as_posix()]) for rel in chunk]
        assert detector is not None
        return detect_images(detector, images, max_side=max_side)

    out.mkdir(parents=True, exist_ok=True)
    new_journal = not journal.exists() or redo
    with bar, open(journal, "w" if new_journal else "a", newline="", encoding="utf-8") as jf:
        jw = csv.writer(jf)
        if new_journal:
            jw.writerow(REPORT_COLUMNS)
        least = 0.0 if given is not None else min_face
        for batch in choose_in_batches(
            lambda rel: read_image(root / rel), todo, detect, keep, least, batch_size
        ):
            for rel, im, choice in batch:
                key = rel.as_posix()
                if choice is None:
                    rows[key] = _rows_for(key, None, [], str(im))
                else:
                    tags = [f"_{k}" if keep == "all" else "" for k in range(len(choice.kept))]
                    names = [f"{stems[key]}{tag}{ext}" for tag in tags]
                    for name, crop in zip(names, choice.crops(im, size, template), strict=True):
                        atomic_write_bytes(out / name, encode_image(crop, ext, source=name))
                        counts["crops"] += 1
                    rows[key] = _rows_for(key, choice, names)
                counts[rows[key][0][_STATUS]] += 1
                jw.writerows(rows[key])
            jf.flush()
            bar.update(len(batch))
    report = (row for rel in rels for row in rows[rel.as_posix()])
    atomic_write_csv(out / REPORT_NAME, REPORT_COLUMNS, report)
    journal.unlink(missing_ok=True)
    return counts


def summary(counts: dict[str, int], out: Path, keep: str) -> str:
    """The one-line summary printed at the end of ``facerec align``."""
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
        f"aligned {aligned} of {counts['images']} images into {out} ({', '.join(parts)}{done}); "
        f"report: {out / REPORT_NAME}"
    )


def main(argv: list[str] | None = None) -> int:
    """``facerec align``; returns the exit status (errors raise :class:`FacerecError`)."""
    parser = argparse.ArgumentParser(
        prog="facerec align",
        description="Detect faces in photos and warp each onto a 5-point template (ArcFace's, "
        "or dlib's face chip). Keeps the folder layout; writes align_report.csv; a re-run "
        "continues.",
    )
    add = parser.add_argument
    add("--in", dest="src", required=True, type=Path, metavar="RAW", help="folder of photos")
    add("--out", required=True, type=Path, metavar="ALIGNED", help="folder for the crops")
    add(
        "--size",
        nargs="+",
        type=int,
        metavar="PX",
        help="crop HEIGHT [WIDTH] (default 112 112, 150 with --template dlib; e.g. 64, or "
        "112 96 for SphereFace)",
    )
    add(
        "--template",
        choices=TEMPLATES,
        default=DEFAULT_TEMPLATE,
        help="alignment template: arcface (default, insightface's) or dlib (dlib's face chip, "
        "padding 0.25, what the dlib-r29 model takes)",
    )
    add(
        "--keep",
        choices=KEEP_POLICIES,
        default=DEFAULT_KEEP,
        help=f"face to keep when a photo has several (default {DEFAULT_KEEP}: the largest "
        "in-frame area less the squared distance from the centre; insightface: area less "
        "twice that; largest; center; all: every face)",
    )
    add(
        "--min-face",
        type=int,
        default=20,
        metavar="PX",
        help="smallest face side searched for, pixels (default 20)",
    )
    add(
        "--threshold",
        type=float,
        default=0.7,
        metavar="P",
        help="minimum face probability (default 0.7)",
    )
    add(
        "--landmarks",
        type=Path,
        metavar="FILE.csv",
        help="align with these landmarks (path,x1,y1,...,x5,y5 per face); no detector",
    )
    add("--ext", default=".png", choices=_WRITE_EXT, help="crop file type")
    add("--batch-size", type=int, default=16, help="photos per detector call")
    add(
        "--max-side",
        type=int,
        default=1024,
        metavar="PX",
        help="search faces in photos shrunk to this long side (0: never)",
    )
    add("--device", default="auto", help="auto (default: cuda if available, else cpu), cpu, cuda:N")
    add(
        "--threads",
        type=int,
        default=0,
        help="CPU threads of the detector (default 0: torch's, all cores; 1 is faster on a "
        "machine other jobs keep busy)",
    )
    add("--redo", action="store_true", help="align every photo again")
    add("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threads < 0:
        raise ConfigError(f"--threads must be 0 (all) or more, got {args.threads}")
    if args.max_side < 0:
        raise ConfigError(f"--max-side must be 0 or more, got {args.max_side}")
    size = crop_size(args.size or [DLIB_CHIP_SIZE if args.template == "dlib" else 112] * 2)
    rest = {k: v for k, v in vars(args).items() if k not in ("src", "out", "no_progress")}
    rest |= {"size": size, "threads": args.threads or None, "progress": not args.no_progress}
    counts = align_folder(args.src, args.out, **rest)
    print(summary(counts, args.out, args.keep))
    return 0
