"""Synthetic faces on disk: an image-folder tree, or one contact-sheet image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facerec.data.image import encode_image
from facerec.data.synthetic.render import SyntheticFaces
from facerec.errors import ConfigError
from facerec.io import atomic_write_bytes


def write_synthetic_folder(
    out: str | Path,
    num_identities: int,
    images_per_identity: int,
    size: int = 112,
    seed: int = 0,
    ext: str = ".png",
) -> Path:
    """Write an image-folder tree ``out/id_xxxxx/nnnn<ext>`` of synthetic faces; returns ``out``.

    Each file is written atomically (a crash never leaves a half-written image).
    """
    ext = ext if ext.startswith(".") else f".{ext}"
    if ext.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
        raise ConfigError(f"image extension {ext!r} is not supported; expected .png, .jpg or .bmp")
    faces = SyntheticFaces(num_identities, images_per_identity, size=size, seed=seed)
    out = Path(out)
    names = faces.class_names
    for identity in range(num_identities):
        folder = out / names[identity]
        for index in range(images_per_identity):
            data = encode_image(faces.render(identity, index), ext)
            atomic_write_bytes(folder / f"{index:04d}{ext}", data)
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
