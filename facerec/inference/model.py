"""A trained model, given as a facerec checkpoint or an exported ONNX file, as an Embedder."""

from __future__ import annotations

import os

from facerec.data.image import ResizeMode
from facerec.errors import ConfigError

from .checkpoint import load_checkpoint_embedder
from .embedder import Embedder, resolve_device
from .onnx import load_onnx_embedder


def load_embedder(
    checkpoint: str | os.PathLike[str] | None,
    onnx: str | os.PathLike[str] | None,
    device: str = "cpu",
    batch_size: int = 64,
    resize_mode: ResizeMode | None = None,
) -> Embedder:
    """Exactly one of ``checkpoint`` (run in PyTorch) and ``onnx`` (onnxruntime) as an
    :class:`~facerec.inference.Embedder` fed as it says (``resize_mode`` overrides)."""
    if (checkpoint is None) == (onnx is None):
        raise ConfigError("give exactly one model: --checkpoint CKPT or --onnx MODEL")
    if onnx is not None:
        return load_onnx_embedder(onnx, device, batch_size, resize_mode)
    return load_checkpoint_embedder(checkpoint, resolve_device(device), batch_size, resize_mode)
