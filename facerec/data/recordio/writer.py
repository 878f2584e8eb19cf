"""Writing ``.rec`` / ``.idx`` files exactly as dmlc's ``RecordIOWriter`` does."""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path
from typing import Any

from facerec.errors import DataError
from facerec.io import atomic_path

from .format import _LEN_BITS, _MAGIC_BYTES, MAX_RECORD_BYTES


class RecordIOWriter:
    """Write a ``.rec`` (and its ``.idx``) exactly as dmlc's ``RecordIOWriter`` does.

    Use as a context manager; both files are written to temporary names beside the targets and
    renamed into place only when the block succeeds, so a failure leaves nothing half-written.

    >>> with RecordIOWriter("train.rec") as w:            # doctest: +SKIP
    ...     w.write(0, pack(IRHeader(0, 3.0, 0, 0), jpeg_bytes))
    """

    def __init__(
        self, rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str] | None = None
    ) -> None:
        """``idx_path`` defaults to ``rec_path`` with ``.idx``."""
        self.rec_path = Path(rec_path)
        self.idx_path = (
            Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        )
        self._stack: contextlib.ExitStack | None = None
        self._rec: Any = None
        self._idx: Any = None
        self._keys: set[int] = set()
        self.position = 0
        """Byte offset where the next record starts."""
        self.except_counter = 0
        """How many times the magic number was found in a payload (dmlc's ``except_counter``)."""

    def __enter__(self) -> RecordIOWriter:
        with contextlib.ExitStack() as stack:
            rec_tmp = stack.enter_context(atomic_path(self.rec_path))
            self._rec = stack.enter_context(open(rec_tmp, "wb", buffering=1 << 20))
            idx_tmp = stack.enter_context(atomic_path(self.idx_path))
            self._idx = stack.enter_context(open(idx_tmp, "w", encoding="ascii"))
            self._stack = stack.pop_all()
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
        if key is None or int(key) < 0:
            raise ValueError(f"record key must be a non-negative int, got {key!r}")
        if int(key) in self._keys:
            raise ValueError(f"record key {key} written twice to {self.rec_path}")
        self._keys.add(int(key))
        offset = self.position
        out = self._rec
        view = memoryview(payload)
        dptr = 0
        i = -1
        while (i := payload.find(_MAGIC_BYTES, i + 1)) != -1:
            if i % 4 == 0:  # dmlc splits only at 4-byte-aligned occurrences
                cflag = 1 if dptr == 0 else 2
                out.write(_MAGIC_BYTES + struct.pack("<I", (cflag << _LEN_BITS) | (i - dptr)))
                out.write(view[dptr:i])
                self.position += 8 + (i - dptr)  # i - dptr is a multiple of 4: no padding
                dptr = i + 4
                self.except_counter += 1
        rest = size - dptr
        out.write(_MAGIC_BYTES + struct.pack("<I", ((3 if dptr else 0) << _LEN_BITS) | rest))
        out.write(view[dptr:])
        pad = (-rest) % 4
        out.write(b"\0" * pad)
        self.position += 8 + rest + pad
        self._idx.write(f"{int(key)}\t{offset}\n")
        return offset
