"""The image-source protocol: a random-access list of RGB images, decoded on access."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from facerec.data.image import decode_image, read_image


class ImageSource(Protocol):
    """A random-access list of images: ``len(src)`` and ``src[i]`` -> RGB uint8 (H, W, 3).

    ``src[i]`` raises :class:`facerec.errors.DataError` naming the image when it does not read;
    an optional ``describe(i)`` says where image i comes from. An (N, H, W, 3) uint8 array is a
    source as it is.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> np.ndarray: ...


def describe(images: ImageSource, i: int) -> str:
    """Where image ``i`` of ``images`` comes from: its ``describe(i)``, else "image i"."""
    named = getattr(images, "describe", None)
    return named(i) if named is not None else f"image {i}"


class FileImages:
    """Image files read on access."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        self.paths = [str(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return read_image(self.paths[i])

    def describe(self, i: int) -> str:
        return self.paths[i]


class EncodedImages:
    """Encoded image byte strings (JPEG, PNG, ...) decoded on access."""

    def __init__(self, blobs: Sequence[bytes], source: str) -> None:
        self.blobs = blobs
        self.source = source

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> np.ndarray:
        return decode_image(self.blobs[i], source=self.describe(i))

    def describe(self, i: int) -> str:
        return f"{self.source} (image {i})"


class SubsetImages:
    """Images ``indices`` (M,) of an :class:`ImageSource`, as an ImageSource."""

    def __init__(self, images: ImageSource, indices: Sequence[int] | np.ndarray) -> None:
        self.images, self.indices = images, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.images[int(self.indices[i])]

    def describe(self, i: int) -> str:
        return describe(self.images, int(self.indices[i]))


__all__ = ["EncodedImages", "FileImages", "ImageSource", "SubsetImages", "describe"]
