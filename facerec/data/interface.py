"""What the training layer reads from a DataModule: the :class:`TrainingData` protocol."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TrainingData(Protocol):
    """What the training module and fit callbacks read from ``trainer.datamodule``.

    Attributes:
        batch_size: images per device and step (the batch of the learning-rate scaling rule).
        image_size: (height, width) of the training images; must be the backbone's input size.
        class_names: the training identities in label order (saved in checkpoints).
        pairs: validation pairs ``(i1 (N,), i2 (N,), same (N,) bool)`` over the indices the
            validation loader yields, or None without validation.
    """

    batch_size: int
    image_size: tuple[int, int]
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None

    @property
    def class_names(self) -> list[str]: ...

    def raw_pixel_accuracy(self) -> float | None:
        """Accuracy of mean-centred raw-pixel cosine on ``pairs`` (a baseline), or None."""


__all__ = ["TrainingData"]
