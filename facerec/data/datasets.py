"""Torch data sets that turn an :class:`~facerec.data.sources.ImageSource` into samples.

Images travel as uint8 (3, H, W) tensors (a quarter of the bytes of float32);
:func:`normalize_images` makes the network input on the model's device.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from facerec.data.image import ResizeMode, fit_to_size, normalize
from facerec.data.sources import ImageSource, describe
from facerec.data.transforms import apply_augment, seed_augment
from facerec.errors import DataError


def label_groups(labels: np.ndarray) -> list[np.ndarray]:
    """The sample indices of each label, in label order (stable within a label)."""
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)


def to_chw_uint8(img: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) array -> uint8 (3, H, W) tensor (contiguous; no normalisation)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (B, 3, H, W) -> float32 network input (x − 127.5)/127.5 on the tensor's device
    (:func:`facerec.data.image.normalize`); a float tensor is returned unchanged."""
    return normalize(images) if images.dtype == torch.uint8 else images


#: bad-file slots in a training sample (more are still skipped and warned about, not counted)
MAX_BAD_PER_SAMPLE = 8
#: unreadable images in a row (one sample's tries) before the data set is taken as unreadable
MAX_TRIES = 50


@dataclass(eq=False, repr=False)
class FaceDataset(Dataset):
    """(image, label, bad) samples: image (3, H, W) uint8 RGB, label int64, bad
    (MAX_BAD_PER_SAMPLE,) int64.

    Args:
        images: the N images (:class:`~facerec.data.sources.ImageSource`); labels: (N,) int64.
        image_size, resize_mode: the network's (height, width), and how other sizes reach it.
        augment: an albumentations pipeline or None.
        strict: raise on a corrupt image instead of replacing it.
        seed: seed of the replacements of corrupt images and of the augmentation draws.
        names: label -> identity name, for messages.

    A sample is indexed by ``i`` or by the key ``(i, epoch)``; with a key, the augmentation
    draws are seeded by ``(seed, epoch, i)`` (:func:`~facerec.data.transforms.seed_augment`).

    Unless ``strict``, an unreadable image is replaced by a seeded draw among the other images
    of its identity not yet found unreadable (an identity with none left is a
    :class:`DataError`); ``bad`` holds the unreadable images met (-1 padded), and a warning
    names each once per worker.
    """

    images: ImageSource
    labels: np.ndarray
    image_size: tuple[int, int] = (112, 112)
    resize_mode: ResizeMode = "resize"
    augment: Any = None
    strict: bool = False
    seed: int = 0
    names: Sequence[str] | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.names = list(self.names) if self.names is not None else None
        self._by_label: dict[int, np.ndarray] | None = None
        self._warned: set[int] = set()  # unreadable images met by this process

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int) -> np.ndarray:
        """RGB uint8 image i at the input size, not augmented."""
        return fit_to_size(self.images[i], self.image_size, self.resize_mode)

    def describe(self, i: int) -> str:
        """Where image ``i`` comes from, for messages."""
        return describe(self.images, i)

    def identity(self, label: int) -> str:
        """The identity of ``label`` as messages name it."""
        if self.names is not None and 0 <= label < len(self.names):
            return f"{self.names[label]!r} (label {label})"
        return f"label {label}"

    def _replacement(self, i: int, tried: list[int]) -> int:
        """Another image of sample ``i``'s identity not found unreadable (seeded draw)."""
        if self._by_label is None:
            self._by_label = {int(self.labels[g[0]]): g for g in label_groups(self.labels)}
        label = int(self.labels[i])
        same = self._by_label[label]
        pool = same[~np.isin(same, list(self._warned | set(tried)))]
        if not len(pool):
            raise DataError(
                f"identity {self.identity(label)}: all its {len(same)} images are unreadable "
                f"(e.g. {self.describe(tried[0])}); remove the identity from the data or fix its "
                "files, else it would train on another identity's images"
            )
        if len(tried) >= MAX_TRIES:
            raise DataError(
                f"{len(tried)} unreadable images in a row of identity {self.identity(label)} "
                f"(e.g. {self.describe(tried[0])}); is the data set readable?"
            )
        rng = np.random.default_rng([self.seed, i, len(tried)])
        return int(pool[rng.integers(len(pool))])

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, torch.Tensor]:
        i, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), None)
        j, tried = i, []
        while True:
            try:
                img = self.load(j)
                break
            except DataError as e:
                if self.strict:
                    raise
                if j not in self._warned:
                    self._warned.add(j)
                    warnings.warn(f"skipping corrupt image: {e}", stacklevel=2)
            tried.append(j)
            j = self._replacement(i, tried)
        if epoch is not None:
            seed_augment(self.augment, (self.seed, epoch, i))
        img = apply_augment(self.augment, img)
        kept = tried[:MAX_BAD_PER_SAMPLE]
        bad = torch.tensor(kept + [-1] * (MAX_BAD_PER_SAMPLE - len(kept)), dtype=torch.int64)
        return to_chw_uint8(img), int(self.labels[i]), bad


class IndexedDataset(Dataset):
    """(image, index) samples without augmentation, for embedding a validation set in order;
    image (3, H, W) uint8 RGB like :class:`FaceDataset`'s."""

    def __init__(self, base: FaceDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return to_chw_uint8(self.base.load(i)), i
