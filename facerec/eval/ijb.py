"""IJB-B / IJB-C in insightface's layout: the meta-file reader, the aligned image source, the run.

Layout (as insightface distributes the meta files; ``<n>`` is ``ijbc`` or ``ijbb``)::

    ROOT/loose_crop/<image>                      the loose face crops and video frames
    ROOT/meta/<n>_name_5pts_score.txt            "image x1 y1 ... x5 y5 faceness" per line
    ROOT/meta/<n>_face_tid_mid.txt               "image template_id media_id", same order
    ROOT/meta/<n>_template_pair_label.txt        "template1 template2 label" (1 = mated)
    ROOT/meta/<n>_1N_gallery_G1.csv, _G2.csv     1:N galleries (IJB-B: _S1.csv, _S2.csv);
    ROOT/meta/<n>_1N_probe_mixed.csv             CSV with a header, columns template, subject, ...

The 1:N files are optional. A malformed line raises one :class:`DataError` naming the file and
line. Images are aligned from their 5 landmarks (:func:`aligned_images`), embedded, then pooled
and scored by :mod:`facerec.eval.ijb_protocol`.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facerec.align.source import AlignedImages, FaceTable
from facerec.align.transform import DEFAULT_TEMPLATE
from facerec.data.sources import FileImages
from facerec.errors import DataError
from facerec.io import atomic_path

from .benchmarks import csv_rows, read_text
from .ijb_protocol import (
    IJB_FARS,
    identification_1n,
    pair_scores,
    pool_templates,
    verification_1to1,
)

IJB_NAMES = ("IJBC", "IJBB")


@dataclass
class IJBMeta:
    """The meta files of one IJB benchmark: per image (N) its name under ``loose_crop/``,
    landmarks (N, 5, 2) float32 in pixels, faceness, template and media ids; the 1:1 pairs
    (P, 2) of template ids with labels (P,) int8 (1 mated); the 1:N galleries ("G1"/"G2" or
    "S1"/"S2" -> (template ids, subject ids)) and mixed probes, empty / None without 1:N files.
    """

    root: Path
    name: str
    images: list[str]
    landmarks: np.ndarray
    faceness: np.ndarray
    templates: np.ndarray
    medias: np.ndarray
    pairs: np.ndarray
    labels: np.ndarray
    galleries: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    probes: tuple[np.ndarray, np.ndarray] | None = None


def _lines(
    path: Path, what: str, fields: int = 0, expected: str = ""
) -> list[tuple[int, list[str]]]:
    """(line number, whitespace tokens) of each non-blank line; DataError if unreadable or, with
    ``fields``, naming the first line with another number of tokens."""
    text = read_text(path, what)
    rows = [(k, ln.split()) for k, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    for k, t in rows:
        if fields and len(t) != fields:
            raise _bad(path, k, t, expected)
    return rows


def _bad(path: Path, line: int, got: list[str], expected: str) -> DataError:
    shown = " ".join(got)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return DataError(f"{path}:{line}: malformed line {shown!r}; expected {expected}")


def _numbers(
    path: Path,
    rows: list[tuple[int, list[str]]],
    cols: slice,
    dtype: type,
    expected: str,
    whitespace_file: bool = True,
) -> np.ndarray:
    """Columns ``cols`` of every row as ``dtype``; DataError naming the first bad line. A
    whitespace-separated file is tried with ``np.loadtxt`` first (several times faster)."""
    if whitespace_file:
        try:
            arr = np.loadtxt(
                path, dtype=dtype, usecols=range(cols.start, cols.stop), comments=None, ndmin=2
            )
            if arr.shape[0] == len(rows):
                return arr
        except (ValueError, OverflowError, UnicodeDecodeError):
            pass
    try:
        return np.array([t[cols] for _, t in rows], dtype=dtype)
    except (ValueError, OverflowError):
        for k, t in rows:
            try:
                np.array(t[cols], dtype=dtype)
            except (ValueError, OverflowError):
                raise _bad(path, k, t, expected) from None
        raise


def read_name_5pts_score(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``<n>_name_5pts_score.txt``: -> names (N,), landmarks (N, 5, 2) float32, faceness (N,)."""
    p = Path(path)
    exp = "'image x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 faceness' (12 fields, numbers after the name)"
    rows = _lines(p, "landmark list", 12, exp)
    vals = _numbers(p, rows, slice(1, 12), np.float64, exp)
    if vals.size and not np.all(np.isfinite(vals)):
        k, t = rows[int(np.flatnonzero(~np.isfinite(vals).all(axis=1))[0])]
        raise _bad(p, k, t, exp + " (finite numbers)")
    names = [t[0] for _, t in rows]
    return names, vals[:, :10].reshape(-1, 5, 2).astype(np.float32), vals[:, 10].astype(np.float32)


def read_face_tid_mid(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``<n>_face_tid_mid.txt``: -> names (N,), template ids (N,) int64, media ids (N,) int64."""
    p = Path(path)
    exp = "'image template_id media_id' (3 fields, integer ids)"
    rows = _lines(p, "template/media list", 3, exp)
    ids = _numbers(p, rows, slice(1, 3), np.int64, exp).reshape(-1, 2)
    return [t[0] for _, t in rows], ids[:, 0].copy(), ids[:, 1].copy()


def read_template_pairs(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``<n>_template_pair_label.txt``: -> pairs (P, 2) int64 template ids, labels (P,) int8.
    Fast path ``np.loadtxt`` (IJB-B has 8M lines), else the first malformed line is found."""
    p = Path(path)
    exp = "'template1 template2 label' (3 integers, label 0 or 1)"
    if not p.is_file():
        raise DataError(f"{p}: template pair list not found")
    try:
        arr = np.loadtxt(p, dtype=np.int64, ndmin=2, comments=None)
        ok = arr.shape[1] == 3 and bool(np.all((arr[:, 2] == 0) | (arr[:, 2] == 1)))
    except (ValueError, OverflowError, UnicodeDecodeError):
        ok = False
    if not ok or arr.shape[0] == 0:
        rows = _lines(p, "template pair list")
        if not rows:
            raise DataError(f"{p}: no template pairs; expected lines {exp}")
        for k, t in rows:
            if len(t) != 3 or t[2] not in ("0", "1"):
                raise _bad(p, k, t, exp)
        arr = _numbers(p, rows, slice(0, 3), np.int64, exp, whitespace_file=False).reshape(-1, 3)
    return arr[:, :2].copy(), arr[:, 2].astype(np.int8)


def read_template_subjects(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """A 1:N CSV (header, then template id, subject id, ...; one row per image) -> (K,) int64
    sorted unique template ids and (K,) int64 their subjects (two subjects: DataError)."""
    p = Path(path)
    exp = "'TEMPLATE_ID,SUBJECT_ID,...' (integers in the first two columns, after a header)"
    try:  # the rows after the header (line 1)
        body = [(k, row, cells) for k, row, cells in csv_rows(p, "1:N template list") if k > 1]
    except csv.Error as e:
        raise DataError(f"{p}: cannot read 1:N template list ({e})") from None
    if not body:
        raise DataError(f"{p}: no templates; expected a header and rows {exp}")
    for k, row, cells in body:
        if len(cells) < 2:
            raise _bad(p, k, [",".join(row)], exp)
    tokens = [(k, cells) for k, _, cells in body]
    vals = _numbers(p, tokens, slice(0, 2), np.int64, exp, whitespace_file=False)
    tids, first, inv = np.unique(vals[:, 0], return_index=True, return_inverse=True)
    subj = vals[first, 1]
    clash = np.flatnonzero(subj[inv] != vals[:, 1])
    if clash.size:
        k, _, r = body[int(clash[0])]
        raise DataError(
            f"{p}:{k}: template {r[0]} listed with subject {r[1]} and "
            f"{int(subj[inv[clash[0]]])}; expected one subject per template"
        )
    return tids.astype(np.int64), subj.astype(np.int64)


def read_ijb(
    root: str | os.PathLike[str], name: str = "IJBC", allow_outside_root: bool = False
) -> IJBMeta:
    """Read the meta files of ``root`` (see the module docstring). DataError for a missing file,
    a malformed line, lists out of step, a template without images, or an image name that leaves
    ``root/loose_crop`` (``..``, absolute) without ``allow_outside_root``."""
    name = name.upper()
    if name not in IJB_NAMES:
        raise DataError(f"IJB benchmark {name!r} is not known; expected IJBC or IJBB")
    r = Path(root)
    meta = r / "meta"
    if not meta.is_dir() or not (r / "loose_crop").is_dir():
        raise DataError(
            f"{r}: not an IJB folder; expected {r}/loose_crop/ and {r}/meta/ (insightface's layout)"
        )
    n = name.lower()
    f5 = meta / f"{n}_name_5pts_score.txt"
    ft = meta / f"{n}_face_tid_mid.txt"
    names, lmk, score = read_name_5pts_score(f5)
    names2, tids, mids = read_face_tid_mid(ft)
    if len(names) != len(names2):
        raise DataError(
            f"{f5} has {len(names)} images but {ft} has {len(names2)}; expected the same "
            "images in the same order"
        )
    if not names:
        raise DataError(f"{f5}: no images listed")
    for k, nm in enumerate(names):
        q = Path(nm)
        if not q.parts or (not allow_outside_root and (q.is_absolute() or ".." in q.parts)):
            raise DataError(
                f"{f5}: image {k + 1} is {nm!r}, which leaves {r / 'loose_crop'}; expected a "
                "file name under loose_crop/ (IJB names such as 1.jpg), or --allow-outside-root"
            )
    for k, (a, b) in enumerate(zip(names, names2, strict=True)):
        if a != b:
            raise DataError(
                f"{ft}: image {k + 1} is {b!r} but {f5} lists {a!r}; expected the same images in "
                "the same order"
            )
    pairs, labels = read_template_pairs(meta / f"{n}_template_pair_label.txt")
    out = IJBMeta(r, name, names, lmk, score, tids, mids, pairs, labels)
    known = np.unique(tids)
    missing = ~np.isin(pairs.reshape(-1), known)
    if missing.any():
        t = int(pairs.reshape(-1)[np.argmax(missing)])
        raise DataError(
            f"{meta / f'{n}_template_pair_label.txt'}: template {t} has no image in {ft} "
            f"({int(missing.sum())} such pair entries); expected every template to have images"
        )
    probe = meta / f"{n}_1N_probe_mixed.csv"
    gk = ("G1", "G2") if name == "IJBC" else ("S1", "S2")
    gfiles = {k: meta / f"{n}_1N_gallery_{k}.csv" for k in gk}
    if probe.is_file() or any(f.is_file() for f in gfiles.values()):
        out.galleries = {k: read_template_subjects(f) for k, f in gfiles.items()}
        out.probes = read_template_subjects(probe)
        for what, (t, _) in [*out.galleries.items(), ("probe_mixed", out.probes)]:
            bad = ~np.isin(t, known)
            if bad.any():
                raise DataError(
                    f"1:N {what} template {int(t[np.argmax(bad)])} has no image in {ft}; "
                    "expected every 1:N template to have images"
                )
    return out


def aligned_images(
    meta: IJBMeta, size: tuple[int, int] = (112, 112), template: str = DEFAULT_TEMPLATE
) -> AlignedImages:
    """The loose crops of ``meta``, each warped from its given landmarks onto ``template`` at
    ``size``: ``src[i]`` -> (h, w, 3) uint8 RGB (facerec.align's one :class:`AlignedImages`)."""
    files = FileImages([meta.root / "loose_crop" / name for name in meta.images])
    return AlignedImages(files, FaceTable.given(meta.landmarks), size, template)


def save_features(path: str | os.PathLike[str], features: np.ndarray, meta: IJBMeta) -> None:
    """Write image features (N, D) with the image names and benchmark name, atomically (.npz)."""
    feats = np.asarray(features, np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, features=feats, images=np.asarray(meta.images), name=np.asarray(meta.name))


def load_features(path: str | os.PathLike[str], meta: IJBMeta) -> np.ndarray:
    """Features saved by :func:`save_features` for ``meta``'s images: -> (N, D) float32.
    DataError for a missing or unreadable file, another benchmark or another image list."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            feats, images, name = z["features"], z["images"], str(z["name"])
    except FileNotFoundError:
        raise DataError(f"{p}: feature file not found") from None
    except (OSError, ValueError, KeyError) as e:
        raise DataError(
            f"{p}: not an IJB feature file ({e}); expected a .npz written by --save-features"
        ) from None
    if name != meta.name or images.size != len(meta.images):
        raise DataError(
            f"{p}: features of {images.size} {name} images; expected {len(meta.images)} "
            f"{meta.name} images"
        )
    diff = np.flatnonzero(images != np.asarray(meta.images))
    if diff.size:
        k = int(diff[0])
        raise DataError(
            f"{p}: image {k + 1} is {images[k]!r} but the meta files list {meta.images[k]!r}; "
            "expected features of the same image list"
        )
    if feats.ndim != 2 or feats.shape[0] != images.size:
        raise DataError(f"{p}: features of shape {feats.shape}; expected ({images.size}, dim)")
    return np.asarray(feats, np.float32)


def evaluate_features(
    features: np.ndarray,
    meta: IJBMeta,
    detector_score: bool = True,
    normalize_images: bool = False,
    fars: tuple[float, ...] = IJB_FARS,
) -> dict:
    """Pool, score and report one model's image features (N, D) on ``meta``: -> the JSON-ready
    report (keys in README's eval section)."""
    t0 = time.perf_counter()
    weights = meta.faceness if detector_score else None
    tpl = pool_templates(features, meta.templates, meta.medias, weights, normalize_images)
    t1 = time.perf_counter()
    rows = tpl.index_of(meta.pairs.reshape(-1), "pair template").reshape(-1, 2)
    scores = pair_scores(tpl.features, rows[:, 0], rows[:, 1])
    t2 = time.perf_counter()
    rep: dict = {
        "root": str(meta.root),
        "num_images": len(meta.images),
        "num_templates": int(tpl.ids.size),
        "num_media": int(tpl.num_media.sum()),
        "detector_score": detector_score,
        "normalize_images": normalize_images,
        "verification": verification_1to1(scores, meta.labels, fars),
        "pool_seconds": t1 - t0,
        "score_seconds": t2 - t1,
    }
    if meta.probes is not None:
        t3 = time.perf_counter()
        pt, ps = meta.probes
        q = tpl.features[tpl.index_of(pt, "probe template")]
        t_cat, s_cat = map(np.concatenate, zip(*meta.galleries.values(), strict=True))
        g_all, first = np.unique(t_cat, return_index=True)
        s_all = s_cat[first]
        ident: dict = {}
        for k, (gt, gs) in {"+".join(meta.galleries): (g_all, s_all), **meta.galleries}.items():
            g = tpl.features[tpl.index_of(gt, "gallery template")]
            ident[k] = identification_1n(q, ps, g, gs)
        ident["search_seconds"] = time.perf_counter() - t3
        rep["identification"] = ident
    return rep
