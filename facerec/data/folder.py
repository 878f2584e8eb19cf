"""The one image scanner: image files under a folder, and the root/<identity>/<image> layout
(by extension, hidden names skipped, sorted paths)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from facerec.data.image import IMAGE_EXTENSIONS
from facerec.errors import DataError


def _visible(name: str) -> bool:
    return not name.startswith(".")


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True for a file named like an image (by extension, any case) and not hidden."""
    p = Path(path)
    return _visible(p.name) and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()


def _broken_link(path: str | os.PathLike[str]) -> bool:
    """A symbolic link that leads nowhere: dangling, or a loop (``a -> b -> a``)."""
    return os.path.islink(path) and not os.path.exists(path)


def _report_broken(root: Path, broken: list[str]) -> None:
    """One warning naming how many broken or looping links were skipped, and the first."""
    if broken:
        warnings.warn(
            f"skipped {len(broken)} symbolic link(s) under {root} that lead nowhere (dangling or "
            f"a loop), e.g. {sorted(broken)[0]}",
            stacklevel=3,
        )


def list_images(folder: str | os.PathLike[str], what: str = "folder") -> list[Path]:
    """Every image file under ``folder`` at any depth, sorted by path (hidden files and folders
    skipped); :class:`DataError` naming ``what`` when ``folder`` is missing or holds none."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{what} {root} does not exist; expected a folder of images")
    found: list[Path] = []
    broken: list[str] = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if _visible(x)]
        found += [Path(d, f) for f in files if is_image_file(Path(d, f))]
        broken += [os.path.join(d, f) for f in files if _visible(f) and _broken_link(Path(d, f))]
    _report_broken(root, broken)
    if not found:
        raise DataError(
            f"{what} {root} holds no image files; expected files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}"
        )
    return sorted(found)


def scan_image_folder(
    root: str | os.PathLike[str], what: str = "data root"
) -> tuple[list[str], np.ndarray, list[str]]:
    """List the images under ``root/<identity>/`` (sorted, so the label map is reproducible).

    Returns (paths, labels (N,) int64, class_names) where ``labels[i]`` indexes ``class_names``;
    :class:`DataError` naming ``what`` for a missing root, no identity folders, or an identity
    folder with no image files.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(
            f"{what} {root} does not exist; expected a folder with one sub-folder per identity"
        )
    if not root.is_dir():
        raise DataError(f"{what} {root} is not a folder; expected root/<identity>/<image>")
    entries = [e for e in os.scandir(root) if _visible(e.name)]
    broken = [e.path for e in entries if _broken_link(e.path)]
    identities = sorted(e.name for e in entries if e.path not in broken and e.is_dir())
    if not identities:
        raise DataError(
            f"{what} {root} has no identity sub-folders; expected root/<identity>/<image>"
        )
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(identities):
        inside = [e for e in os.scandir(root / name) if _visible(e.name)]
        broken += [e.path for e in inside if _broken_link(e.path)]
        files = sorted(e.path for e in inside if not _broken_link(e.path) and is_image_file(e.path))
        if not files:
            raise DataError(
                f"identity folder {root / name} has no image files; expected at least one of "
                f"{', '.join(IMAGE_EXTENSIONS)}"
            )
        paths += files
        labels += [label] * len(files)
    _report_broken(root, broken)
    return paths, np.asarray(labels, dtype=np.int64), identities


def read_name_list(path: str | os.PathLike[str]) -> list[str]:
    """Read a list file of identity names, one per line (blank lines and # comments ignored)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise DataError(f"identity list file {path} not found") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
