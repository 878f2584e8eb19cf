"""Random access to the records of a ``.rec`` file (``os.pread``, one fd per process)."""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from facerec.errors import DataError
from facerec.io import atomic_path

from .format import (
    _HEAD_DTYPE,
    _LEN_BITS,
    _LEN_MASK,
    _MAGIC_BYTES,
    IR_SIZE,
    MAGIC,
    IRHeader,
    read_index,
    unpack,
)

_PREAD_LOCK = threading.Lock()


def _pread(fd: int, size: int, offset: int) -> bytes:
    """Read ``size`` bytes at ``offset`` without touching a shared file position."""
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    with _PREAD_LOCK:  # pragma: no cover - Windows has no pread
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, size)


class RecordIOReader:
    """Random access to the records of a ``.rec`` file by byte offset or by ``.idx`` key.

    Each process opens its own descriptor on first read and reads with ``os.pread``, so one
    reader serves many threads and DataLoader workers. Pickling drops the descriptor.
    """

    def __init__(
        self,
        rec_path: str | os.PathLike[str],
        idx_path: str | os.PathLike[str] | None = None,
        use_index: bool = True,
    ) -> None:
        """``idx_path`` defaults to the same name with ``.idx``; it is read (and checked against
        the .rec) when given, or when it exists and ``use_index`` is true. Without one only
        :meth:`read_at` and :meth:`scan` work."""
        self.rec_path = Path(rec_path)
        if not self.rec_path.exists():
            raise DataError(f"{self.rec_path}: RecordIO file not found")
        if not self.rec_path.is_file():
            raise DataError(f"{self.rec_path}: is not a file; expected a RecordIO .rec file")
        self.file_size = self.rec_path.stat().st_size
        self._fd: int | None = None
        self._pid: int | None = None
        idx = Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        has_idx = use_index and (idx_path is not None or idx.exists())
        self.idx_path: Path | None = idx if has_idx else None
        self.keys = self.offsets = np.zeros(0, dtype=np.int64)
        if self.idx_path is None:
            return
        self.keys, self.offsets = read_index(idx)
        self._sorted = np.argsort(self.keys, kind="stable")
        past = np.flatnonzero(self.offsets + 8 > self.file_size)
        if past.size:
            i = int(past[0])
            raise DataError(
                f"{self.idx_path}: key {self.keys[i]} points to offset {self.offsets[i]}, past "
                f"the end of {self.rec_path} ({self.file_size} bytes); the .rec is truncated "
                "or the index belongs to another file"
            )

    def _file(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            # After a fork the inherited descriptor is left alone (the parent still uses it).
            try:
                self._fd = os.open(self.rec_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except OSError as e:
                raise DataError(
                    f"{self.rec_path}: cannot open RecordIO file ({e.strerror})"
                ) from None
            self._pid = pid
        return self._fd

    def close(self) -> None:
        """Close this process's descriptor (a later read opens it again)."""
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = self._pid = None

    def __del__(self) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_pid": None}

    def __enter__(self) -> RecordIOReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _bad_magic(self, offset: int) -> DataError:
        return DataError(
            f"{self.rec_path}: bad record magic at offset {offset} (expected 0xced7230a); "
            "the file is corrupt or not RecordIO"
        )

    def _truncated(self, offset: int, need: int) -> DataError:
        return DataError(
            f"{self.rec_path}: record at offset {offset} needs bytes up to {need} but the file "
            f"has {self.file_size}; the file is truncated"
        )

    def read_at(self, offset: int) -> bytes:
        """The payload of the record starting at byte ``offset`` (continuation parts joined)."""
        return self._read_record(int(offset))[0]

    def _read_record(self, offset: int) -> tuple[bytes, int]:
        """(payload, offset just past the record's last part) of the record at ``offset``."""
        fd = self._file()
        parts: list[bytes] = []
        pos = offset
        while True:
            head = _pread(fd, 8, pos)
            if len(head) < 8:
                raise self._truncated(offset, pos + 8)
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise self._bad_magic(pos)
            cflag, length = lrec >> _LEN_BITS, lrec & _LEN_MASK
            if cflag not in ((2, 3) if parts else (0, 1)):
                where = "inside a multi-part record" if parts else "at the start of a record"
                raise DataError(
                    f"{self.rec_path}: continuation flag {cflag} at offset {pos} is not valid "
                    f"{where} (expected {'2 or 3' if parts else '0 or 1'}); the file or its "
                    "index is corrupt"
                )
            padded = (length + 3) & ~3
            data = _pread(fd, padded, pos + 8) if padded else b""
            if len(data) < padded:
                raise self._truncated(offset, pos + 8 + padded)
            parts.append(data[:length])
            pos += 8 + padded
            if cflag in (0, 3):
                break
            parts.append(_MAGIC_BYTES)
        return b"".join(parts), pos

    def offset_of(self, key: int) -> int:
        """Byte offset of ``key`` in the .rec; :class:`DataError` if the index lacks it."""
        return int(self.offsets_of(np.asarray([key]))[0])

    def offsets_of(self, keys: np.ndarray) -> np.ndarray:
        """Byte offsets (int64) of many keys; :class:`DataError` naming the first missing key."""
        keys = np.asarray(keys, dtype=np.int64)
        if self.idx_path is None:
            raise DataError(
                f"{self.rec_path}: no .idx index file, so records cannot be read by key"
            )
        found = np.isin(keys, self.keys)
        if not found.all():
            missing = int(keys[~found][0])
            raise DataError(
                f"{self.idx_path}: key {missing} is not in the index; the index is incomplete"
            )
        return self.offsets[self._sorted[np.searchsorted(self.keys[self._sorted], keys)]]

    def read(self, key: int) -> bytes:
        """The payload of the record with ``key`` (from the .idx)."""
        return self.read_at(self.offset_of(key))

    def read_header_at(self, offset: int) -> tuple[IRHeader, bytes]:
        """:func:`unpack` of the record at ``offset``, naming the file and offset in errors."""
        return unpack(self.read_at(offset), source=f"{self.rec_path} (record at offset {offset})")

    def read_labels(
        self, offsets: np.ndarray, count: int = 1, chunk: int = 65536
    ) -> tuple[np.ndarray, np.ndarray]:
        """IRHeader flags and first ``count`` labels of the records at ``offsets``, no image read.

        Returns (flags (M,) int64, labels (M, count) float64): the scalar label when flag is 0,
        else the first ``count`` of the label vector; missing columns are NaN. Only each
        record's first 40 bytes are read, through a memory map (a split header: the record).
        """
        if count not in (1, 2):
            raise ValueError(f"count must be 1 or 2, got {count}")
        offsets = np.asarray(offsets, dtype=np.int64)
        flags = np.zeros(offsets.size, dtype=np.int64)
        labels = np.full((offsets.size, count), np.nan, dtype=np.float64)
        if offsets.size == 0:
            return flags, labels
        mm = np.memmap(self.rec_path, dtype=np.uint8, mode="r", shape=(self.file_size,))
        try:
            span = np.arange(_HEAD_DTYPE.itemsize, dtype=np.int64)
            for start in range(0, offsets.size, chunk):
                offs = offsets[start : start + chunk]
                idx = np.minimum(offs[:, None] + span, self.file_size - 1)
                heads = np.ascontiguousarray(mm[idx]).view(_HEAD_DTYPE).ravel()
                if (heads["magic"] != MAGIC).any():
                    raise self._bad_magic(int(offs[np.argmax(heads["magic"] != MAGIC)]))
                cflag = heads["lrec"] >> _LEN_BITS
                length = heads["lrec"] & _LEN_MASK
                flag = heads["flag"].astype(np.int64)
                need = IR_SIZE + 4 * np.minimum(flag, count)  # bytes of payload the labels use
                # slow path: header split over parts, a short or odd record, the end of the file
                slow = (cflag != 0) | (length < need) | (offs + 8 + need > self.file_size)
                block = labels[start : start + offs.size]
                block[:, 0] = np.where(flag > 0, heads["label0"], heads["label"])
                if count == 2:
                    block[:, 1] = np.where(flag > 1, heads["label1"], np.nan)
                flags[start : start + offs.size] = flag
                for j in np.flatnonzero(slow):
                    header, _ = self.read_header_at(int(offs[j]))
                    flags[start + j] = header.flag
                    vec = np.atleast_1d(np.asarray(header.label, dtype=np.float64))[:count]
                    block[j] = np.nan
                    block[j, : vec.size] = vec
        finally:
            del mm
        return flags, labels

    def scan(self) -> Iterator[tuple[int, bytes]]:
        """Yield (offset, payload) of every record in file order, like MXNet's sequential reader."""
        pos = 0
        while pos < self.file_size:
            payload, end = self._read_record(pos)
            yield pos, payload
            pos = end


def build_index(
    rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str] | None = None
) -> int:
    """Rebuild a ``.idx`` for ``rec_path`` atomically, key i = the i-th record in the file (as
    insightface and ``im2rec`` number them); returns the number of records."""
    reader = RecordIOReader(rec_path, use_index=False)
    target = Path(idx_path) if idx_path is not None else reader.rec_path.with_suffix(".idx")
    count = 0
    with reader, atomic_path(target) as tmp, open(tmp, "w", encoding="ascii") as f:
        for count, (offset, _) in enumerate(reader.scan(), 1):
            f.write(f"{count - 1}\t{offset}\n")
    return count
