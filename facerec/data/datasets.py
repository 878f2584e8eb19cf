"""Torch data sets that turn a source of RGB images into training samples.

A *source* is anything indexable that returns an RGB uint8 (H, W, 3) image: a list of file paths
(the image-folder layout), an in-memory array (the synthetic faces), or a RecordIO file.
:class:`FaceDataset` brings each image to the input size and augments it, and hands it on as a
uint8 (3, H, W) tensor: a quarter of the bytes of float32 between DataLoader workers and to the
device. :func:`normalize_images` turns a batch into the network input, (x − 127.5)/127.5 in RGB
order, on the device the model is on (``FaceRecognitionModule.on_after_batch_transfer``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from facerec.data.image import MEAN, STD, ResizeMode, fit_to_size, read_image
from facerec.data.transforms import apply_augment
from facerec.errors import DataError

ImageLoader = Callable[[int], np.ndarray]


def to_chw_uint8(img: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) array -> uint8 (3, H, W) tensor (contiguous; no normalisation)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (B, 3, H, W) -> float32 (B, 3, H, W) network input (x − 127.5)/127.5.

    Runs on the tensor's device; the result equals, bit for bit, the float32 the CPU computes
    with :func:`facerec.data.image.to_tensor_array` (one subtraction and one division, each
    rounded once). A float tensor is returned unchanged (already normalised).
    """
    if images.dtype != torch.uint8:
        return images
    return (images.to(torch.float32) - MEAN) / STD


class PathLoader:
    """Load the i-th image of a list of file paths (picklable, so DataLoader workers can use it)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __call__(self, i: int) -> np.ndarray:
        return read_image(self.paths[i])

    def describe(self, i: int) -> str:
        return self.paths[i]


class ArrayLoader:
    """Images held in memory as one (N, H, W, 3) uint8 array."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __call__(self, i: int) -> np.ndarray:
        return self.images[i]

    def describe(self, i: int) -> str:
        return f"in-memory image {i}"


class FaceDataset(Dataset):
    """(image, label, n_bad) samples: image (3, H, W) uint8 RGB (see :func:`normalize_images`),
    label int64.

    Args:
        loader: callable i -> RGB uint8 image (with an optional ``describe(i)`` for messages).
        labels: (N,) int64 identity label of each sample.
        image_size: (height, width) the network takes.
        resize_mode: how images of another size are brought to it ('resize' or 'center_crop').
        augment: an albumentations pipeline or None.
        strict: raise on a corrupt image instead of replacing it.
        seed: seed for choosing replacements of corrupt images.

    A corrupt or unreadable image is, unless ``strict``, replaced by another image of the same
    identity (or any image if it has no other), and ``n_bad`` counts the replacements made for
    this sample, so the training loop can count and report them. A warning names each bad file
    once per worker.
    """

    def __init__(
        self,
        loader: ImageLoader,
        labels: np.ndarray,
        image_size: tuple[int, int] = (112, 112),
        resize_mode: ResizeMode = "resize",
        augment=None,
        strict: bool = False,
        seed: int = 0,
    ) -> None:
        self.loader = loader
        self.labels = np.asarray(labels, dtype=np.int64)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.resize_mode = resize_mode
        self.augment = augment
        self.strict = strict
        self.seed = seed
        self._by_label: dict[int, np.ndarray] | None = None
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int) -> np.ndarray:
        """RGB uint8 image i at the input size, not augmented."""
        return fit_to_size(self.loader(i), self.image_size, self.resize_mode)

    def _replacement(self, i: int, attempt: int) -> int:
        if self._by_label is None:
            order = np.argsort(self.labels, kind="stable")
            bounds = np.flatnonzero(np.diff(self.labels[order])) + 1
            self._by_label = {int(self.labels[g[0]]): g for g in np.split(order, bounds) if len(g)}
        rng = np.random.default_rng([self.seed, i, attempt])
        same = self._by_label[int(self.labels[i])]
        pool = same if len(same) > 1 and attempt < 3 else np.arange(len(self.labels))
        pool = pool[pool != i]
        return int(pool[rng.integers(len(pool))]) if len(pool) else i

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        j, bad = int(i), 0
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
                bad += 1
                if bad > 10:
                    raise DataError(
                        f"more than 10 unreadable images in a row around sample {i}; "
                        "is the data set readable?"
                    ) from None
                j = self._replacement(i, bad)
        img = apply_augment(self.augment, img)
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
