"""MXNet RecordIO (insightface ``train.rec`` / ``train.idx`` / ``property``) without MXNet.

File format (dmlc-core ``recordio.h``, the one MXNet and insightface use). A ``.rec`` file is a
sequence of records, each::

    uint32 magic = 0xced7230a | uint32 lrecord | payload | zero padding to a multiple of 4 bytes

``lrecord`` holds a continuation flag ``cflag`` in its upper 3 bits and the part length in its
lower 29 bits. A payload that contains the magic number at a 4-byte-aligned position is split
there by the writer: the magic is dropped and the pieces are stored as parts with ``cflag`` 1
(start), 2 (middle) and 3 (end); the reader joins the parts with the magic in between.
``cflag`` 0 is a whole record. All integers are little-endian.

The payload of an image record (MXNet ``recordio.pack``) is an ``IRHeader`` -- struct ``IfQQ``:
flag uint32, label float32, id uint64, id2 uint64 -- then, if flag > 0, ``flag`` float32 labels
(the record's label is then this vector), then the encoded image.

``train.idx`` is text, one ``key<TAB>offset`` line per record. In the insightface face sets
record 0 is a header with flag > 0 and no image: labels ``(first_range_key, end_key)``. Keys
``1 .. first_range_key - 1`` are the images, keys ``first_range_key .. end_key - 1`` hold one
``(start, end)`` key range per identity (``end`` exclusive). ``property`` is one line
``num_classes,height,width``.

Reading uses ``os.pread`` on a file descriptor that each process opens for itself on first use
(the owning pid is recorded; a forked DataLoader worker opens its own), so a
:class:`RecordIODataset` can be read from any number of workers.
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from torch.utils.data import Dataset

from facerec.data.folder import scan_image_folder
from facerec.data.image import decode_image, encode_image, fit_to_size, read_image_bytes
from facerec.errors import DataError
from facerec.io import atomic_path

__all__ = [
    "IR_FORMAT",
    "IR_SIZE",
    "MAGIC",
    "MAX_RECORD_BYTES",
    "IRHeader",
    "PackSummary",
    "RecordIODataset",
    "RecordIOReader",
    "RecordIOWriter",
    "build_index",
    "pack",
    "pack_folder",
    "read_index",
    "read_property",
    "unpack",
]

MAGIC = 0xCED7230A
"""The dmlc RecordIO magic number (``kMagic``)."""
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LEN_BITS = 29
_LEN_MASK = (1 << _LEN_BITS) - 1
MAX_RECORD_BYTES = 1 << _LEN_BITS
"""dmlc refuses records of 2**29 bytes or more (the length field has 29 bits)."""

IR_FORMAT = "<IfQQ"
"""``IRHeader`` layout: flag uint32, label float32, id uint64, id2 uint64 (24 bytes)."""
IR_SIZE = struct.calcsize(IR_FORMAT)
_FLOAT32_EXACT = 1 << 24  # keys stored as float32 labels must stay exact integers

# A record's first 40 bytes: magic, lrecord, IRHeader, first two extra labels (when flag > 0).
_HEAD_DTYPE = np.dtype(
    [
        ("magic", "<u4"),
        ("lrec", "<u4"),
        ("flag", "<u4"),
        ("label", "<f4"),
        ("id", "<u8"),
        ("id2", "<u8"),
        ("label0", "<f4"),
        ("label1", "<f4"),
    ]
)


class IRHeader(NamedTuple):
    """MXNet's image-record header.

    ``label`` is a float, or a float32 vector of length ``flag`` when ``flag > 0``.
    """

    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def pack(header: IRHeader | tuple[Any, ...], data: bytes = b"") -> bytes:
    """Build a record payload exactly as ``mxnet.recordio.pack`` does.

    A scalar ``header.label`` is stored in the header with flag 0 (the given flag is ignored);
    a sequence of labels sets flag = its length, label = 0, and the labels (float32) go in front
    of ``data``.
    """
    _, label, id_, id2 = header
    if isinstance(label, int | float | np.integer | np.floating):
        return struct.pack(IR_FORMAT, 0, float(label), int(id_), int(id2)) + bytes(data)
    vec = np.asarray(label, dtype="<f4").ravel()
    return struct.pack(IR_FORMAT, vec.size, 0.0, int(id_), int(id2)) + vec.tobytes() + bytes(data)


def unpack(payload: bytes, source: str = "<record>") -> tuple[IRHeader, bytes]:
    """Split a record payload into its :class:`IRHeader` and the remaining (image) bytes.

    Like ``mxnet.recordio.unpack``: when flag > 0 the header's label is the float32 vector of
    ``flag`` labels that follows the header. :class:`DataError` naming ``source`` when the
    payload is shorter than the header says.
    """
    if len(payload) < IR_SIZE:
        raise DataError(
            f"{source}: record payload is {len(payload)} bytes, shorter than the {IR_SIZE}-byte "
            "IRHeader (flag, label, id, id2); the file is corrupt or not an image RecordIO"
        )
    flag, label, id_, id2 = struct.unpack_from(IR_FORMAT, payload)
    if flag == 0:
        return IRHeader(0, label, id_, id2), payload[IR_SIZE:]
    end = IR_SIZE + 4 * flag
    if end > len(payload):
        raise DataError(
            f"{source}: IRHeader says {flag} labels but the record payload has only "
            f"{len(payload) - IR_SIZE} bytes after the header; the file is corrupt"
        )
    labels = np.frombuffer(payload, dtype="<f4", count=flag, offset=IR_SIZE).astype(np.float32)
    return IRHeader(flag, labels, id_, id2), payload[end:]


def _first_label(header: IRHeader) -> float:
    """The class label of a record: the scalar label, or the first of the label vector."""
    label = header.label
    return float(label) if header.flag == 0 else float(label[0])  # type: ignore[index]


# ----------------------------------------------------------------------------------------------
# Index and property files


def read_index(idx_path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``.idx`` file of ``key<TAB>offset`` lines; returns (keys, offsets), int64, file order.

    :class:`DataError` for a missing file, a line that is not two integers, a negative value or
    a repeated key.
    """
    path = Path(idx_path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"{path}: index file not found; expected 'key<TAB>offset' lines next to the .rec "
            "(facerec.data.recordio.build_index can rebuild it from the .rec)"
        ) from None
    except OSError as e:
        raise DataError(f"{path}: cannot read index file ({e.strerror})") from None
    n_lines = sum(1 for line in data.splitlines() if line.strip())
    pairs: np.ndarray | None = None
    tokens = data.split()
    if len(tokens) == 2 * n_lines:
        with contextlib.suppress(ValueError, OverflowError):
            pairs = np.array(tokens, dtype=np.int64).reshape(-1, 2)
    if pairs is None:  # slow path: find the first bad line for the message
        for lineno, line in enumerate(data.splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            try:
                if len(parts) != 2:
                    raise ValueError
                int(parts[0]), int(parts[1])
            except ValueError:
                text = line[:60].decode("utf-8", "replace")
                raise DataError(
                    f"{path}: line {lineno} is {text!r}; expected 'key<TAB>offset' (two integers)"
                ) from None
        raise DataError(f"{path}: not a RecordIO index; expected 'key<TAB>offset' lines")
    keys, offsets = pairs[:, 0].copy(), pairs[:, 1].copy()
    if keys.size and (keys.min() < 0 or offsets.min() < 0):
        line = int(np.flatnonzero((keys < 0) | (offsets < 0))[0]) + 1
        raise DataError(f"{path}: line {line} has a negative key or offset; expected >= 0")
    uniq, counts = np.unique(keys, return_counts=True)
    if uniq.size != keys.size:
        dup = int(uniq[counts > 1][0])
        raise DataError(f"{path}: key {dup} appears more than once; expected each key once")
    return keys, offsets


def read_property(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """Read an insightface ``property`` file: (num_classes, height, width)."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace").strip()
    except FileNotFoundError:
        raise DataError(f"{path}: property file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read property file ({e.strerror})") from None
    fields = [f.strip() for f in text.split(",")]
    try:
        if len(fields) != 3:
            raise ValueError
        num_classes, height, width = (int(f) for f in fields)
        if num_classes <= 0 or height <= 0 or width <= 0:
            raise ValueError
    except ValueError:
        raise DataError(
            f"{path}: content is {text[:60]!r}; expected 'num_classes,height,width' "
            "(three positive integers, e.g. '85742,112,112')"
        ) from None
    return num_classes, height, width


# ----------------------------------------------------------------------------------------------
# Reading


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

    The file is opened lazily by each process that reads (the pid is recorded and a forked
    child opens its own descriptor), and read with ``os.pread``, so one reader may be used
    from many threads and DataLoader worker processes. Pickling drops the descriptor.
    """

    def __init__(
        self,
        rec_path: str | os.PathLike[str],
        idx_path: str | os.PathLike[str] | None = None,
        use_index: bool = True,
    ) -> None:
        """Open ``rec_path``; ``idx_path`` defaults to the same name with ``.idx``.

        The index is read (and checked against the size of the .rec) when given, or when the
        default one exists and ``use_index`` is true; without one only :meth:`read_at` and
        :meth:`scan` work.
        """
        self.rec_path = Path(rec_path)
        if not self.rec_path.exists():
            raise DataError(f"{self.rec_path}: RecordIO file not found")
        if not self.rec_path.is_file():
            raise DataError(f"{self.rec_path}: is not a file; expected a RecordIO .rec file")
        self.file_size = self.rec_path.stat().st_size
        self._fd: int | None = None
        self._pid: int | None = None
        default_idx = self.rec_path.with_suffix(".idx")
        self.idx_path: Path | None = Path(idx_path) if idx_path is not None else default_idx
        self.keys = np.zeros(0, dtype=np.int64)
        self.offsets = np.zeros(0, dtype=np.int64)
        if not use_index or (idx_path is None and not default_idx.exists()):
            self.idx_path = None
            return
        assert self.idx_path is not None
        self.keys, self.offsets = read_index(self.idx_path)
        self._sorted = np.argsort(self.keys, kind="stable")
        past = np.flatnonzero(self.offsets + 8 > self.file_size)
        if past.size:
            i = int(past[0])
            raise DataError(
                f"{self.idx_path}: key {self.keys[i]} points to offset {self.offsets[i]}, past "
                f"the end of {self.rec_path} ({self.file_size} bytes); the .rec is truncated "
                "or the index belongs to another file"
            )

    # -- file handle, one per process --------------------------------------------------------

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
        self._fd = None
        self._pid = None

    def __del__(self) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fd"] = None
        state["_pid"] = None
        return state

    def __enter__(self) -> RecordIOReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- records -----------------------------------------------------------------------------

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
            first = not parts
            if (first and cflag not in (0, 1)) or (not first and cflag not in (2, 3)):
                where = "at the start of a record" if first else "inside a multi-part record"
                raise DataError(
                    f"{self.rec_path}: continuation flag {cflag} at offset {pos} is not valid "
                    f"{where} (expected {'0 or 1' if first else '2 or 3'}); the file or its "
                    "index is corrupt"
                )
            padded = (length + 3) & ~3
            data = _pread(fd, padded, pos + 8) if padded else b""
            if len(data) < padded:
                raise self._truncated(offset, pos + 8 + padded)
            parts.append(data[:length] if padded != length else data)
            pos += 8 + padded
            if cflag in (0, 3):
                break
            parts.append(_MAGIC_BYTES)
        return (parts[0] if len(parts) == 1 else b"".join(parts)), pos

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
        sorted_keys = self.keys[self._sorted]
        pos = np.searchsorted(sorted_keys, keys)
        pos_c = np.minimum(pos, max(sorted_keys.size - 1, 0))
        found = (
            (pos < sorted_keys.size) & (sorted_keys[pos_c] == keys)
            if sorted_keys.size
            else (np.zeros(keys.shape, dtype=bool))
        )
        if not found.all():
            missing = int(keys[~found][0])
            raise DataError(
                f"{self.idx_path}: key {missing} is not in the index; the index is incomplete"
            )
        return self.offsets[self._sorted[pos_c]]

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

        Returns (flags (M,) int64, labels (M, count) float64). A record's labels are its scalar
        header label when flag is 0 (then only column 0 is set), else its first ``count`` of
        ``flag`` labels; columns a record does not have are NaN. Only the first 40 bytes of each
        record are read (magic, lrecord, IRHeader, two labels), vectorised through a memory
        map; a record whose header is split by a continuation part is read whole.
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
                bad = np.flatnonzero(heads["magic"] != MAGIC)
                if bad.size:
                    raise self._bad_magic(int(offs[bad[0]]))
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
    """Rebuild a ``.idx`` for ``rec_path`` by scanning it: key i = the i-th record in the file.

    This is the numbering insightface and ``im2rec`` write (keys in file order from 0). Returns
    the number of records. Written atomically.
    """
    reader = RecordIOReader(rec_path, use_index=False)
    target = Path(idx_path) if idx_path is not None else reader.rec_path.with_suffix(".idx")
    count = 0
    with atomic_path(target) as tmp, open(tmp, "w", encoding="ascii") as f:
        _make_readable(tmp)
        for count, (offset, _) in enumerate(reader.scan(), 1):
            f.write(f"{count - 1}\t{offset}\n")
    reader.close()
    return count


# ----------------------------------------------------------------------------------------------
# The data set


def _resolve_paths(
    root_or_rec_path: str | os.PathLike[str],
) -> tuple[Path, Path, Path]:
    path = Path(root_or_rec_path)
    if path.is_dir():
        return path / "train.rec", path / "train.idx", path / "property"
    return path, path.with_suffix(".idx"), path.parent / "property"


class RecordIODataset(Dataset):
    """An insightface-style RecordIO face set: ``(RGB uint8 (H, W, 3) image, int label)`` items.

    ``root_or_rec_path`` is a folder with ``train.rec``, ``train.idx`` and optionally
    ``property``, or the path of a ``.rec`` (its ``.idx`` beside it with the same name).

    If record 0 is an insightface header (flag > 0, no image bytes) the samples are keys
    ``1 .. label[0] - 1`` and :attr:`identity_ranges` comes from the range records; otherwise
    (a plain ``im2rec`` file) every key in the index is a sample, in index order, and the
    label is the header's scalar label (or the first of its label vector).

    Attributes:
        rec_path, idx_path: the files read.
        keys: (N,) int64 record key of each sample; sample ``i`` is record ``keys[i]``.
        image_size: (height, width) from ``property``, or None without one.
    """

    def __init__(
        self,
        root_or_rec_path: str | os.PathLike[str],
        idx_path: str | os.PathLike[str] | None = None,
        property_path: str | os.PathLike[str] | None = None,
        transform: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        """Read the index, the header record and ``property``; no image is decoded.

        Args:
            root_or_rec_path: folder with ``train.rec`` / ``train.idx``, or a ``.rec`` path.
            idx_path: the ``.idx`` file if not beside the ``.rec`` with the same name.
            property_path: the ``property`` file if not beside the ``.rec``; read if present.
            transform: applied to the RGB uint8 image in ``__getitem__`` (None: returned as is).
        """
        rec_path, default_idx, default_prop = _resolve_paths(root_or_rec_path)
        if not rec_path.exists():
            raise DataError(
                f"{rec_path}: RecordIO file not found; expected train.rec (with train.idx) "
                "in the data folder, or the path of a .rec file"
            )
        idx = Path(idx_path) if idx_path is not None else default_idx
        if not idx.exists():
            read_index(idx)  # raises the missing-index DataError
        self.reader = RecordIOReader(rec_path, idx)
        if self.reader.keys.size == 0:
            raise DataError(f"{idx}: index file is empty; expected one 'key<TAB>offset' per record")
        self.rec_path = self.reader.rec_path
        self.idx_path = idx
        self.transform = transform
        self.property_path = Path(property_path) if property_path is not None else default_prop
        self._property: tuple[int, int, int] | None = None
        if property_path is not None or self.property_path.exists():
            self._property = read_property(self.property_path)
        self.image_size: tuple[int, int] | None = (
            (self._property[1], self._property[2]) if self._property else None
        )
        self._range_keys: tuple[int, int] | None = None
        self._labels: np.ndarray | None = None
        self._identity_ranges: np.ndarray | None = None

        header0: IRHeader | None = None
        if bool((self.reader.keys == 0).any()):
            header0, rest = self.reader.read_header_at(self.reader.offset_of(0))
            if header0.flag == 0 or rest:
                header0 = None  # an ordinary image record: a plain im2rec file
        if header0 is not None:
            if header0.flag < 2:
                raise DataError(
                    f"{self.rec_path}: header record 0 has {header0.flag} label(s); expected 2 "
                    "(first identity-range key, end key)"
                )
            lab = np.asarray(header0.label, dtype=np.float64)
            img_end, range_end = int(lab[0]), int(lab[1])
            if not (1 <= img_end <= range_end) or lab[0] != img_end or lab[1] != range_end:
                raise DataError(
                    f"{self.rec_path}: header record 0 has labels ({lab[0]:g}, {lab[1]:g}); "
                    "expected integer keys 1 <= first_range_key <= end_key"
                )
            self._range_keys = (img_end, range_end)
            self.keys = np.arange(1, img_end, dtype=np.int64)
        else:
            self.keys = self.reader.keys.copy()
        self._offsets = self.reader.offsets_of(self.keys)

    # -- sizes and labels ----------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.keys.size)

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 label of every sample, read from the record headers (no image decoded)."""
        if self._labels is None:
            _, values = self.reader.read_labels(self._offsets)
            self._labels = values[:, 0].astype(np.int64)  # int(label), as insightface does
        return self._labels

    @property
    def identity_ranges(self) -> np.ndarray | None:
        """(C, 2) int64 ``[start_key, end_key)`` record-key range of each identity, or None.

        From the range records of an insightface set (sample index = key - 1 there); None for
        a file without a header record.
        """
        if self._identity_ranges is None and self._range_keys is not None:
            first, end = self._range_keys
            offsets = self.reader.offsets_of(np.arange(first, end, dtype=np.int64))
            flags, ranges = self.reader.read_labels(offsets, count=2)
            bad = np.flatnonzero(flags < 2)
            if bad.size:
                i = int(bad[0])
                raise DataError(
                    f"{self.rec_path}: identity-range record {first + i} (offset {offsets[i]}) "
                    f"has {flags[i]} label(s); expected 2 (start key, end key)"
                )
            ranges = ranges.astype(np.int64)
            self._identity_ranges = ranges
        return self._identity_ranges

    @property
    def num_classes(self) -> int:
        """Number of identities: from ``property``, else the range records, else max label + 1."""
        if self._property is not None:
            return self._property[0]
        if self._range_keys is not None:
            return self._range_keys[1] - self._range_keys[0]
        return int(self.labels.max()) + 1 if len(self) else 0

    # -- items -------------------------------------------------------------------------------

    def read_record(self, index: int) -> tuple[IRHeader, bytes]:
        """(IRHeader, encoded image bytes) of sample ``index``."""
        return self.reader.read_header_at(int(self._offsets[index]))

    def describe(self, index: int) -> str:
        """Where sample ``index`` lives, for messages: the file, its key and byte offset."""
        return f"{self.rec_path} (key {self.keys[index]}, offset {self._offsets[index]})"

    def load_image(self, index: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) image of sample ``index`` (no transform): an image loader."""
        return self._load(index)[0]

    def _load(self, index: int) -> tuple[np.ndarray, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} is out of range for {len(self)} samples")
        header, data = self.reader.read_header_at(int(self._offsets[index]))
        return decode_image(data, source=self.describe(index)), int(_first_label(header))

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self._load(index)
        if self.transform is not None:
            return self.transform(image), label
        return image, label

    def close(self) -> None:
        """Close this process's file descriptor."""
        self.reader.close()


# ----------------------------------------------------------------------------------------------
# Writing


def _make_readable(path: Path) -> None:
    """Give a temporary file the permissions a new file gets (mkstemp makes it 0600)."""
    mask = os.umask(0o22)
    os.umask(mask)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~mask)


class RecordIOWriter:
    """Write a ``.rec`` (and its ``.idx``) exactly as dmlc's ``RecordIOWriter`` does.

    Use as a context manager; both files are written to temporary names beside the targets and
    renamed into place only when the block succeeds, so a failure leaves nothing half-written.

    >>> with RecordIOWriter("train.rec") as w:            # doctest: +SKIP
    ...     w.write(0, pack(IRHeader(0, 3.0, 0, 0), jpeg_bytes))
    """

    def __init__(
        self,
        rec_path: str | os.PathLike[str],
        idx_path: str | os.PathLike[str] | None = None,
        write_index: bool = True,
    ) -> None:
        """``idx_path`` defaults to ``rec_path`` with ``.idx``; ``write_index=False``: no index."""
        self.rec_path = Path(rec_path)
        self.idx_path: Path | None = None
        if write_index:
            default = self.rec_path.with_suffix(".idx")
            self.idx_path = Path(idx_path) if idx_path is not None else default
        self._stack: contextlib.ExitStack | None = None
        self._rec: Any = None
        self._idx: Any = None
        self._keys: set[int] = set()
        self.position = 0
        """Byte offset where the next record starts."""
        self.except_counter = 0
        """How many times the magic number was found in a payload (dmlc's ``except_counter``)."""

    def __enter__(self) -> RecordIOWriter:
        stack = contextlib.ExitStack()
        try:
            rec_tmp = stack.enter_context(atomic_path(self.rec_path))
            _make_readable(rec_tmp)
            self._rec = stack.enter_context(open(rec_tmp, "wb", buffering=1 << 20))
            if self.idx_path is not None:
                idx_tmp = stack.enter_context(atomic_path(self.idx_path))
                _make_readable(idx_tmp)
                self._idx = stack.enter_context(open(idx_tmp, "w", encoding="ascii"))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc: Any) -> bool | None:
        assert self._stack is not None, "RecordIOWriter used outside a with-block"
        stack, self._stack = self._stack, None
        return stack.__exit__(*exc)

    def write(self, key: int | None, payload: bytes) -> int:
        """Append one record; returns its byte offset. ``key`` goes to the ``.idx`` with it."""
        if self._rec is None or self._stack is None:
            raise RuntimeError("RecordIOWriter.write called outside its with-block")
        size = len(payload)
        if size >= MAX_RECORD_BYTES:
            raise DataError(
                f"{self.rec_path}: record of {size} bytes is too large; RecordIO records must be "
                f"under 2**29 = {MAX_RECORD_BYTES} bytes"
            )
        if self._idx is not None:
            if key is None or int(key) < 0:
                raise ValueError(f"record key must be a non-negative int, got {key!r}")
            if int(key) in self._keys:
                raise ValueError(f"record key {key} written twice to {self.rec_path}")
            self._keys.add(int(key))
        offset = self.position
        out = self._rec
        view = memoryview(payload)
        dptr = 0
        i = payload.find(_MAGIC_BYTES)
        while i != -1:
            if i % 4 == 0:  # dmlc splits only at 4-byte-aligned occurrences
                cflag = 1 if dptr == 0 else 2
                out.write(_MAGIC_BYTES + struct.pack("<I", (cflag << _LEN_BITS) | (i - dptr)))
                out.write(view[dptr:i])
                self.position += 8 + (i - dptr)  # i - dptr is a multiple of 4: no padding
                dptr = i + 4
                self.except_counter += 1
            i = payload.find(_MAGIC_BYTES, i + 1)
        rest = size - dptr
        out.write(_MAGIC_BYTES + struct.pack("<I", ((3 if dptr else 0) << _LEN_BITS) | rest))
        out.write(view[dptr:])
        pad = (-rest) % 4
        if pad:
            out.write(b"\0" * pad)
        self.position += 8 + rest + pad
        if self._idx is not None:
            self._idx.write(f"{int(key)}\t{offset}\n")  # type: ignore[arg-type]
        return offset


# ----------------------------------------------------------------------------------------------
# Packing an image folder


@dataclass(frozen=True)
class PackSummary:
    """What :func:`pack_folder` wrote."""

    rec_path: Path
    idx_path: Path
    property_path: Path
    num_images: int
    num_classes: int
    image_size: tuple[int, int]
    """(height, width) written to ``property``: the resize target or the most common size."""
    reencoded: int
    """Images stored re-encoded rather than as their original bytes."""

    def describe(self) -> str:
        """One line for people: what was written where."""
        h, w = self.image_size
        return (
            f"wrote {self.rec_path} ({self.num_images} images, {self.num_classes} identities, "
            f"property {self.num_classes},{h},{w}; {self.reencoded} images re-encoded) "
            f"and {self.idx_path.name}, {self.property_path.name}"
        )


_JPEG_SIG = b"\xff\xd8\xff"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
ImageFormat = Literal["auto", "jpg", "png"]


def _prepare_image(
    path: str, size: tuple[int, int] | None, fmt: ImageFormat, quality: int
) -> tuple[bytes, tuple[int, int], bool]:
    """(bytes to store, (height, width) stored, re-encoded?) for one image file."""
    raw = read_image_bytes(path)
    rgb = decode_image(raw, source=path)  # every image is checked, even when kept as is
    resized = fit_to_size(rgb, size) if size is not None else rgb
    keep = (
        fmt == "auto" and resized is rgb and (raw.startswith(_JPEG_SIG) or raw.startswith(_PNG_SIG))
    )
    if keep:
        return raw, (rgb.shape[0], rgb.shape[1]), False
    out_fmt = "png" if fmt == "png" else "jpg"
    return encode_image(resized, out_fmt, quality, path), (resized.shape[0], resized.shape[1]), True


def pack_folder(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    image_format: ImageFormat = "auto",
    quality: int = 95,
    workers: int = 4,
    progress: Callable[[int], None] | None = None,
) -> PackSummary:
    """Pack ``root/<identity>/<image>`` into ``out/train.rec``, ``train.idx`` and ``property``.

    The layout is insightface's: record 0 is a header (flag 2, labels ``(N + 1, N + 1 + C)``),
    records ``1 .. N`` are the images (flag 0, label = identity index, id = key) and records
    ``N + 1 .. N + C`` the identity key ranges (flag 2, labels ``(start, end)``, end exclusive).
    Identities are the sorted sub-folder names (index 0, 1, ...), images sorted by file name
    (the same order as :func:`facerec.data.folder.scan_image_folder`).

    Args:
        root: image folder, one sub-folder per identity.
        out: output folder (created); existing files there are replaced atomically.
        size: resize every image to ``size`` (an int for a square, or (height, width)); None
            keeps each image's size.
        image_format: ``auto`` stores JPEG and PNG files byte for byte (when not resized) and
            re-encodes anything else (BMP, PGM, WebP, ...) or any resized image as JPEG at
            ``quality``; ``jpg`` / ``png`` re-encode every image in that format.
        quality: JPEG quality (1-100) for re-encoded images.
        workers: threads that read, check and encode images (OpenCV releases the GIL).
        progress: called with the number of images done after each chunk (e.g. a tqdm update).

    Every image is decoded once to check it (a corrupt file raises :class:`DataError` naming
    it); ``property`` gets the resize target or else the most common image size.
    """
    if image_format not in ("auto", "jpg", "png"):
        raise DataError(f"image format {image_format!r} is not known; expected auto, jpg or png")
    if not 1 <= int(quality) <= 100:
        raise DataError(f"JPEG quality {quality} is out of range; expected 1 to 100")
    target: tuple[int, int] | None
    if size is None:
        target = None
    elif isinstance(size, int):
        target = (size, size)
    else:
        target = (int(size[0]), int(size[1]))
    if target is not None and min(target) <= 0:
        raise DataError(f"image size {size} is not positive; expected e.g. 112 or (112, 112)")

    paths, labels, names = scan_image_folder(root)
    n, c = len(paths), len(names)
    first_range, end_key = n + 1, n + 1 + c
    if end_key >= _FLOAT32_EXACT:
        raise DataError(
            f"{root}: {n} images and {c} identities need record keys up to {end_key}, but the "
            f"insightface header stores keys as float32, exact only below {_FLOAT32_EXACT}"
        )
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rec_path, idx_path = out_dir / "train.rec", out_dir / "train.idx"
    prop_path = out_dir / "property"

    sizes: Counter[tuple[int, int]] = Counter()
    reencoded = 0
    starts = np.searchsorted(labels, np.arange(c), side="left") + 1
    ends = np.searchsorted(labels, np.arange(c), side="right") + 1
    chunk = max(1, 64 * max(1, workers))
    prepare = functools.partial(_prepare_image, size=target, fmt=image_format, quality=int(quality))
    with RecordIOWriter(rec_path, idx_path) as writer:
        writer.write(0, pack(IRHeader(0, [float(first_range), float(end_key)], 0, 0)))
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for start in range(0, n, chunk):
                batch = paths[start : start + chunk]
                results = pool.map(prepare, batch)
                for j, (data, hw, was_encoded) in enumerate(results):
                    key = start + j + 1
                    writer.write(key, pack(IRHeader(0, float(labels[start + j]), key, 0), data))
                    sizes[hw] += 1
                    reencoded += was_encoded
                if progress is not None:
                    progress(len(batch))
        for i in range(c):
            key = first_range + i
            writer.write(key, pack(IRHeader(0, [float(starts[i]), float(ends[i])], key, 0)))
    image_size = target if target is not None else sizes.most_common(1)[0][0]
    with atomic_path(prop_path) as tmp:
        tmp.write_text(f"{c},{image_size[0]},{image_size[1]}\n", encoding="ascii")
        _make_readable(tmp)
    return PackSummary(rec_path, idx_path, prop_path, n, c, image_size, reencoded)
