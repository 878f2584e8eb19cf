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
"""

from .dataset import RecordIODataset
from .format import (
    IR_FORMAT,
    IR_SIZE,
    MAGIC,
    MAX_RECORD_BYTES,
    IRHeader,
    pack,
    read_index,
    read_property,
    unpack,
)
from .packing import PackSummary, pack_folder
from .reader import RecordIOReader, build_index
from .writer import RecordIOWriter

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
