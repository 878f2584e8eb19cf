"""An insightface-style RecordIO face set as a torch Dataset (format: the package doc)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from facerec.data.image import decode_image
from facerec.errors import DataError

from .format import IRHeader, _first_label, read_property
from .reader import RecordIOReader


class RecordIODataset(Dataset):
    """An insightface-style RecordIO face set: ``(RGB uint8 (H, W, 3) image, int label)`` items.

    If record 0 is an insightface header (flag > 0, no image bytes) the samples are keys
    ``1 .. label[0] - 1``; otherwise (a plain ``im2rec`` file) every key in the index is a
    sample, in index order, labelled by the header's (first) label. No image is decoded here.

    Args:
        root_or_rec_path: folder with ``train.rec`` / ``train.idx``, or a ``.rec`` path.
        idx_path: the ``.idx`` file if not beside the ``.rec`` with the same name.
        property_path: the ``property`` file if not beside the ``.rec``; read if present.
        transform: applied to the RGB uint8 image in ``__getitem__`` (None: returned as is).

    Attributes:
        keys: (N,) int64 record key of each sample.
        image_size: (height, width) from ``property``, or None without one.
    """

    def __init__(
        self,
        root_or_rec_path: str | os.PathLike[str],
        idx_path: str | os.PathLike[str] | None = None,
        property_path: str | os.PathLike[str] | None = None,
        transform: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        path = Path(root_or_rec_path)
        rec_path = path / "train.rec" if path.is_dir() else path
        if not rec_path.exists():
            raise DataError(
                f"{rec_path}: RecordIO file not found; expected train.rec (with train.idx) "
                "in the data folder, or the path of a .rec file"
            )
        idx = Path(idx_path) if idx_path is not None else rec_path.with_suffix(".idx")
        self.reader = RecordIOReader(rec_path, idx)  # reads idx: DataError when it is missing
        if self.reader.keys.size == 0:
            raise DataError(f"{idx}: index file is empty; expected one 'key<TAB>offset' per record")
        self.rec_path = self.reader.rec_path
        self.idx_path = idx
        self.transform = transform
        default_prop = rec_path.parent / "property"
        self.property_path = Path(property_path) if property_path is not None else default_prop
        has_property = property_path is not None or self.property_path.exists()
        self._property = read_property(self.property_path) if has_property else None
        self.image_size = self._property[1:] if self._property else None
        self._range_keys: tuple[int, int] | None = None
        self._labels: np.ndarray | None = None
        self._identity_ranges: np.ndarray | None = None

        header0, rest = IRHeader(0, 0.0, 0, 0), b""  # no header record: a plain im2rec file
        if (self.reader.keys == 0).any():
            header0, rest = self.reader.read_header_at(self.reader.offset_of(0))
        if header0.flag > 0 and not rest:  # else record 0 is an ordinary image record
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
        """(C, 2) int64 ``[start_key, end_key)`` record-key range of each identity from the range
        records of an insightface set (sample index = key - 1); None without a header record."""
        if self._identity_ranges is None and self._range_keys is not None:
            first, end = self._range_keys
            offsets = self.reader.offsets_of(np.arange(first, end, dtype=np.int64))
            flags, ranges = self.reader.read_labels(offsets, count=2)
            if (flags < 2).any():
                i = int(np.argmax(flags < 2))
                raise DataError(
                    f"{self.rec_path}: identity-range record {first + i} (offset {offsets[i]}) "
                    f"has {flags[i]} label(s); expected 2 (start key, end key)"
                )
            self._identity_ranges = ranges.astype(np.int64)
        return self._identity_ranges

    @property
    def num_classes(self) -> int:
        """Number of identities: from ``property``, else the range records, else max label + 1."""
        if self._property is not None:
            return self._property[0]
        if self._range_keys is not None:
            return self._range_keys[1] - self._range_keys[0]
        return int(self.labels.max()) + 1 if len(self) else 0

    def checked_num_classes(self) -> int:
        """Number of identities (max label + 1), checked: labels must run from 0, and
        ``property`` and the identity-range records (when present) must agree; :class:`DataError`
        naming the file and what disagrees."""
        labels = self.labels
        if not len(labels):
            raise DataError(f"{self.rec_path}: holds no image records; expected face images")
        low, high = int(labels.min()), int(labels.max())
        if low < 0:
            raise DataError(
                f"{self.rec_path}: a record has label {low}; expected identity labels from 0"
            )
        found = high + 1
        distinct = int(np.unique(labels).size)
        if self._property is not None and self._property[0] != found:
            said = self._property[0]
            effect = (
                "labels beyond it would index past the margin head"
                if said < found
                else "the head would train identities that do not exist"
            )
            raise DataError(
                f"{self.property_path}: says {said} identities but the labels in "
                f"{self.rec_path} run 0..{high} ({distinct} distinct), so {effect}; expected "
                f"the first number of property to be {found}"
            )
        ranges = self.identity_ranges
        if ranges is not None and len(ranges) != found:
            raise DataError(
                f"{self.rec_path}: {len(ranges)} identity-range records but the labels run "
                f"0..{high}; expected one range record per identity ({found})"
            )
        if distinct != found:
            missing = np.setdiff1d(np.arange(found), np.unique(labels))
            warnings.warn(
                f"{self.rec_path}: {found - distinct} of the labels 0..{high} have no image "
                f"(e.g. {int(missing[0])}); their classes train without samples",
                stacklevel=2,
            )
        return found

    def read_record(self, index: int) -> tuple[IRHeader, bytes]:
        """(IRHeader, encoded image bytes) of sample ``index``."""
        return self.reader.read_header_at(int(self._offsets[index]))

    def describe(self, index: int) -> str:
        """Where sample ``index`` lives, for messages: the file, its key and byte offset."""
        return f"{self.rec_path} (key {self.keys[index]}, offset {self._offsets[index]})"

    def load_image(self, index: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) image of sample ``index`` (no transform)."""
        return self._load(index)[0]

    @property
    def images(self) -> RecordIOImages:
        """The samples' images as an :class:`~facerec.data.sources.ImageSource`."""
        return RecordIOImages(self)

    def _load(self, index: int) -> tuple[np.ndarray, int]:
        """(RGB image, label) of sample ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} is out of range for {len(self)} samples")
        header, data = self.reader.read_header_at(int(self._offsets[index]))
        return decode_image(data, source=self.describe(index)), int(_first_label(header))

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self._load(index)
        return (image if self.transform is None else self.transform(image)), label

    def close(self) -> None:
        """Close this process's file descriptor."""
        self.reader.close()


class RecordIOImages:
    """The images of a :class:`RecordIODataset` as an ImageSource (picklable for workers)."""

    def __init__(self, rec: RecordIODataset) -> None:
        self.rec = rec

    def __len__(self) -> int:
        return len(self.rec)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.rec.load_image(i)

    def describe(self, i: int) -> str:
        return self.rec.describe(i)
