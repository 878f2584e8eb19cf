"""RecordIO record codec (dmlc framing, ``IRHeader``), ``.idx`` and ``property`` files."""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from facerec.errors import DataError

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
    {
        "names": ["magic", "lrec", "flag", "label", "id", "id2", "label0", "label1"],
        "formats": ["<u4", "<u4", "<u4", "<f4", "<u8", "<u8", "<f4", "<f4"],
    }
)


class IRHeader(NamedTuple):
    """MXNet's image-record header; ``label`` is a float, or a float32 vector of length ``flag``
    when ``flag > 0``."""

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
    """Split a record payload into its :class:`IRHeader` and the remaining (image) bytes, as
    ``mxnet.recordio.unpack``; :class:`DataError` naming ``source`` when it is too short."""
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


def _read_bytes(path: Path, what: str, hint: str = "") -> bytes:
    """The bytes of ``path``; :class:`DataError` naming ``what`` when missing or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: {what} file not found{hint}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read {what} file ({e.strerror})") from None


def read_index(idx_path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``.idx`` file of ``key<TAB>offset`` lines; returns (keys, offsets), int64, file order.

    :class:`DataError` for a missing file, a line that is not two integers, a negative value or
    a repeated key.
    """
    path = Path(idx_path)
    hint = (
        "; expected 'key<TAB>offset' lines next to the .rec "
        "(facerec.data.recordio.build_index can rebuild it from the .rec)"
    )
    data = _read_bytes(path, "index", hint)
    n_lines = sum(1 for line in data.splitlines() if line.strip())
    pairs: np.ndarray | None = None
    tokens = data.split()
    if len(tokens) == 2 * n_lines:
        with contextlib.suppress(ValueError, OverflowError):
            pairs = np.array(tokens, dtype=np.int64).reshape(-1, 2)
    if pairs is None:  # slow path: find the first bad line for the message
        for lineno, line in enumerate(data.splitlines(), 1):
            try:
                if line.strip():
                    _key, _offset = (int(part) for part in line.split())
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
    text = _read_bytes(path, "property").decode(errors="replace").strip()
    try:
        num_classes, height, width = (int(f) for f in text.split(","))
        if min(num_classes, height, width) <= 0:
            raise ValueError
    except ValueError:
        raise DataError(
            f"{path}: content is {text[:60]!r}; expected 'num_classes,height,width' "
            "(three positive integers, e.g. '85742,112,112')"
        ) from None
    return num_classes, height, width
