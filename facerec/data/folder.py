"""The image-folder layout: root/<identity>/<image>."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facerec.data.image import IMAGE_EXTENSIONS
from facerec.errors import DataError


def scan_image_folder(root: str | os.PathLike[str]) -> tuple[list[str], np.ndarray, list[str]]:
    """List the images under ``root/<identity>/`` (sorted, so the label map is reproducible).

    Returns (paths, labels (N,) int64, class_names) where ``labels[i]`` indexes ``class_names``.
    Raises :class:`DataError` for a missing root, a root with no identity folders, or an
    identity folder with no image files (extensions: JPEG, PNG, BMP, PGM, ...).
    """
    root = Path(root)
    if not root.exists():
        raise DataError(
            f"data root {root} does not exist; expected a folder with one sub-folder per identity"
        )
    if not root.is_dir():
        raise DataError(f"data root {root} is not a folder; expected root/<identity>/<image>")
    identities = sorted(
        d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith(".")
    )
    if not identities:
        raise DataError(
            f"data root {root} has no identity sub-folders; expected root/<identity>/<image>"
        )
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(identities):
        files = sorted(
            e.path
            for e in os.scandir(root / name)
            if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not files:
            raise DataError(
                f"identity folder {root / name} has no image files; expected at least one of "
                f"{', '.join(IMAGE_EXTENSIONS)}"
            )
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int64), identities


def read_name_list(path: str | os.PathLike[str]) -> list[str]:
    """Read a list file of identity names, one per line (blank lines and # comments ignored)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise DataError(f"identity list file {path} not found") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
