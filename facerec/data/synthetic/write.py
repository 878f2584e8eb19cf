"""Synthetic faces on disk: an image-folder tree, or one contact-sheet image."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from facerec.data.image import encode_image
from facerec.data.synthetic.render import SyntheticFaces
from facerec.errors import ConfigError
from facerec.io import atomic_write_bytes, check_output

_SYNTH_FILE = re.compile(r"id_\d{5}/\d{4}\.(png|jpg|jpeg|bmp)")


def _check_out_folder(out: Path, overwrite: bool) -> list[Path]:
    """The files of an earlier synthetic set in ``out``; :class:`ConfigError` if it is not empty
    (unless ``overwrite``) or holds anything this module did not write (always)."""
    check_output(out, "--out", kind="folder")
    if not out.exists():
        return []
    entries = list(out.rglob("*"))
    if entries and not overwrite:
        raise ConfigError(
            f"--out {out} is a folder that is not empty; expected a new or empty folder "
            "(--overwrite replaces a synthetic set written there before)"
        )
    files = [p for p in entries if not p.is_dir()]
    foreign = [p for p in files if not _SYNTH_FILE.fullmatch(p.relative_to(out).as_posix())]
    foreign += [p for p in entries if p.is_dir() and not re.fullmatch(r"id_\d{5}", p.name)]
    if foreign:
        raise ConfigError(
            f"--out {out} holds {foreign[0].relative_to(out)}, which facerec synth did not write; "
            "expected a new folder or one holding only an earlier synthetic set"
        )
    return files


def write_synthetic_folder(
    out: str | Path,
    num_identities: int,
    images_per_identity: int,
    size: int = 112,
    seed: int = 0,
    ext: str = ".png",
    overwrite: bool = False,
) -> Path:
    """Write an image-folder tree ``out/id_xxxxx/nnnn<ext>`` of synthetic faces (each file
    atomically); returns ``out``. ``out`` must be new or empty; with ``overwrite`` it may hold
    an earlier synthetic set, whose files the new set does not rewrite are then removed. A
    folder holding anything else is always refused (:class:`ConfigError`).
    """
    ext = ext if ext.startswith(".") else f".{ext}"
    if ext.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
        raise ConfigError(f"image extension {ext!r} is not supported; expected .png, .jpg or .bmp")
    faces = SyntheticFaces(num_identities, images_per_identity, size=size, seed=seed)
    out = Path(out)
    old = _check_out_folder(out, overwrite)
    written = set()
    for identity, name in enumerate(faces.class_names):
        for index in range(images_per_identity):
            path = out / name / f"{index:04d}{ext}"
            atomic_write_bytes(path, encode_image(faces.render(identity, index), ext))
            written.add(path)
    for p in set(old) - written:
        p.unlink()
    for d in {p.parent for p in old}:
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return out


def write_contact_sheet(
    path: str | os.PathLike[str],
    num_identities: int,
    images_per_identity: int,
    size: int = 112,
    seed: int = 0,
) -> Path:
    """Draw a grid image (PNG or JPEG by the suffix of ``path``), one row per identity and
    one column per image, written atomically."""
    faces = SyntheticFaces(num_identities, images_per_identity, size=size, seed=seed)
    rows = [
        np.concatenate([faces.render(i, j) for j in range(images_per_identity)], axis=1)
        for i in range(num_identities)
    ]
    path = Path(path)
    ext = path.suffix.lower() if path.suffix.lower() in (".png", ".jpg", ".jpeg") else ".png"
    atomic_write_bytes(path, encode_image(np.concatenate(rows, axis=0), ext, source=str(path)))
    return path
