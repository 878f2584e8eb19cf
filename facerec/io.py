"""Atomic file output: nothing a user made is ever left half-written."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from facerec.errors import ConfigError, FacerecError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` and move it onto ``path`` (atomically) only if the
    block succeeds; otherwise it is removed and ``path`` is untouched."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files; give the usual umask permissions
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_csv(
    path: str | os.PathLike[str], head: Sequence, rows: Iterable[Sequence]
) -> Path:
    """Write ``head`` and ``rows`` as CSV (Unix line ends) to ``path`` atomically; ``path``."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([head, *rows])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def check_output(
    out: str | os.PathLike[str],
    flag: str,
    inputs: Iterable[tuple[str, str | os.PathLike[str] | None]] = (),
    kind: str = "file",
) -> Path:
    """Refuse an output path before any work is done (:class:`ConfigError`); return it as a Path.

    ``flag`` names the option in messages. ``inputs``: ``(flag, path)`` pairs the command reads,
    which the output may not be or lie inside. ``kind``: ``"file"`` or ``"folder"`` (something
    else there is refused). The nearest existing parent must be a writable folder.
    """
    target = Path(out)
    resolved = target.resolve()
    for in_flag, path in inputs:
        if path is None:
            continue
        src = Path(path).resolve()
        if resolved.is_relative_to(src):
            raise ConfigError(
                f"{flag} {target} is {'the same as' if resolved == src else 'inside'} "
                f"{in_flag} {path}; choose an output outside what the command reads"
            )
    if kind == "file" and target.is_dir():
        raise ConfigError(f"{flag} {target} is a folder; expected a file path")
    if kind == "folder" and target.exists() and not target.is_dir():
        raise ConfigError(f"{flag} {target} is a file; expected a folder")
    parent = _existing_parent(target if kind == "folder" else target.parent)
    if not parent.is_dir():
        raise ConfigError(f"{flag} {target}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {target}: cannot write in {parent} (permission denied)")
    return target


def check_free_space(out: str | os.PathLike[str], need: int, flag: str = "--out") -> None:
    """Refuse (:class:`ConfigError`), before the work, an output whose file system has fewer
    than ``need`` bytes free (with 1 MiB to spare)."""
    target = Path(out)
    parent = _existing_parent(target.parent)
    free = shutil.disk_usage(parent).free
    if free < need + 2**20:
        raise ConfigError(
            f"{flag} {target}: {free / 2**20:.1f} MiB free in {parent}; expected at least "
            f"{(need + 2**20) / 2**20:.1f} MiB for the output"
        )


def _existing_parent(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def write_failed(path: str | os.PathLike[str], err: OSError) -> Exception:
    """The one-line :class:`FacerecError` for an ``OSError`` while writing ``path``; raise it
    ``from None``."""
    why = err.strerror or type(err).__name__
    return FacerecError(f"cannot write {path}: {why}; nothing was written there")
