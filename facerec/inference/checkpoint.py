"""A facerec checkpoint's embedding network as an :class:`~facerec.inference.Embedder`."""

from __future__ import annotations

import os

from facerec.data.image import ResizeMode

from .embedder import TorchEmbedder
from .preprocess import Preprocess


def load_checkpoint_embedder(
    path: str | os.PathLike[str],
    device: str = "cpu",
    batch_size: int = 256,
    resize_mode: ResizeMode | None = None,
) -> TorchEmbedder:
    """A facerec Lightning checkpoint as a :class:`TorchEmbedder` of its embedding network.

    The input size, resize mode, channel order and mean/std come from the checkpoint's stored
    :class:`Preprocess`; ``resize_mode`` overrides the saved mode.

    Raises:
        DataError: the file is missing or is not a facerec checkpoint.
    """
    from facerec.export.checkpoint import load_facerec_checkpoint

    loaded = load_facerec_checkpoint(path)
    pre = Preprocess.coerce(loaded.preprocess, str(path))
    return TorchEmbedder.from_preprocess(
        loaded.backbone.to(device), pre, device, batch_size, resize_mode
    )
