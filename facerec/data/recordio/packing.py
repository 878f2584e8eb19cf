"""Packing a ``root/<identity>/<image>`` folder into ``train.rec``, ``.idx``, ``property``."""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from facerec.data.folder import scan_image_folder
from facerec.data.image import decode_image, encode_image, fit_to_size, read_image_bytes
from facerec.errors import DataError
from facerec.io import atomic_write_text

from .format import _FLOAT32_EXACT, IRHeader, pack
from .writer import RecordIOWriter


@dataclass(frozen=True)
class PackSummary:
    """What :func:`pack_folder` wrote; ``image_size`` is the (height, width) in ``property`` (the
    resize target, else the most common size), ``reencoded`` the images not stored as given."""

    rec_path: Path
    idx_path: Path
    property_path: Path
    num_images: int
    num_classes: int
    image_size: tuple[int, int]
    reencoded: int

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
    if fmt == "auto" and resized is rgb and raw.startswith((_JPEG_SIG, _PNG_SIG)):
        return raw, (rgb.shape[0], rgb.shape[1]), False
    out_fmt = "png" if fmt == "png" else "jpg"
    return encode_image(resized, out_fmt, quality, path), (resized.shape[0], resized.shape[1]), True


def pack_folder(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    image_format: ImageFormat = "auto",
    quality: int = 95,
    num_workers: int = 4,
    progress: Callable[[int], None] | None = None,
) -> PackSummary:
    """Pack ``root/<identity>/<image>`` into ``out/train.rec``, ``train.idx`` and ``property``.

    The layout is insightface's (see the package doc): header record 0, images ``1 .. N``
    (label = identity index, id = key), identity key ranges ``N + 1 .. N + C``. Identities and
    images are in :func:`facerec.data.folder.scan_image_folder`'s sorted order.

    Args:
        root: image folder, one sub-folder per identity.
        out: output folder (created); existing files there are replaced atomically.
        size: resize every image to ``size`` (an int for a square, or (height, width)); None
            keeps each image's size.
        image_format: ``auto`` stores JPEG and PNG files byte for byte (when not resized) and
            re-encodes anything else (BMP, PGM, WebP, ...) or any resized image as JPEG at
            ``quality``; ``jpg`` / ``png`` re-encode every image in that format.
        quality: JPEG quality (1-100) for re-encoded images.
        num_workers: threads that read, check and encode images (OpenCV releases the GIL).
        progress: called with the number of images done after each chunk (e.g. a tqdm update).

    Every image is decoded once to check it (:class:`DataError` naming a corrupt one).
    """
    if image_format not in ("auto", "jpg", "png"):
        raise DataError(f"image format {image_format!r} is not known; expected auto, jpg or png")
    if not 1 <= int(quality) <= 100:
        raise DataError(f"JPEG quality {quality} is out of range; expected 1 to 100")
    hw = (size, size) if isinstance(size, int) else size
    target = None if hw is None else (int(hw[0]), int(hw[1]))
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
    rec_path, idx_path, prop_path = (Path(out) / f for f in ("train.rec", "train.idx", "property"))

    sizes: Counter[tuple[int, int]] = Counter()
    reencoded = 0
    starts = np.searchsorted(labels, np.arange(c + 1)) + 1  # identity i: [starts[i], starts[i + 1])
    chunk = 64 * max(1, num_workers)
    prepare = functools.partial(_prepare_image, size=target, fmt=image_format, quality=int(quality))
    with RecordIOWriter(rec_path, idx_path) as writer:
        writer.write(0, pack(IRHeader(0, [float(first_range), float(end_key)], 0, 0)))
        with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
            for start in range(0, n, chunk):
                batch = paths[start : start + chunk]
                for key, (data, hw, was_encoded) in enumerate(pool.map(prepare, batch), start + 1):
                    writer.write(key, pack(IRHeader(0, float(labels[key - 1]), key, 0), data))
                    sizes[hw] += 1
                    reencoded += was_encoded
                if progress is not None:
                    progress(len(batch))
        for i, key in enumerate(range(first_range, end_key)):
            writer.write(key, pack(IRHeader(0, [float(starts[i]), float(starts[i + 1])], key, 0)))
    image_size = target if target is not None else sizes.most_common(1)[0][0]
    atomic_write_text(prop_path, f"{c},{image_size[0]},{image_size[1]}\n")
    return PackSummary(rec_path, idx_path, prop_path, n, c, image_size, reencoded)
