"""Inference: from a trained model and images to embeddings; below eval and export.

* :mod:`~facerec.inference.preprocess`: :class:`Preprocess`, the one preprocessing record
  (stored in checkpoints and ONNX metadata);
* :mod:`~facerec.inference.embedder`: the :class:`Embedder` protocol, :class:`TorchEmbedder`;
* :mod:`~facerec.inference.onnx`: ONNX metadata and :class:`OnnxEmbedder` (onnxruntime);
* :mod:`~facerec.inference.checkpoint`: the one facerec checkpoint loader;
* :mod:`~facerec.inference.model`: :func:`load_embedder`, a checkpoint or ONNX model as an
  Embedder;
* :mod:`~facerec.inference.loop`: :func:`embed_images`, the one embedding loop over an
  :class:`~facerec.data.sources.ImageSource`, and :func:`l2_normalize`.

``onnx`` and ``onnxruntime`` are imported only when an ONNX model is used.
"""

from __future__ import annotations

from facerec.data.sources import EncodedImages, FileImages, ImageSource, SubsetImages

from .checkpoint import (
    LoadedModel,
    load_checkpoint_embedder,
    load_facerec_checkpoint,
    read_checkpoint_dict,
)
from .embedder import Embedder, TorchEmbedder, eval_mode, resolve_device
from .loop import EmbedStats, embed_images, l2_normalize, load_batch
from .model import load_embedder
from .onnx import OnnxEmbedder, OnnxMetadata, load_onnx_embedder, read_onnx_metadata
from .preprocess import Preprocess

__all__ = [
    "EmbedStats",
    "Embedder",
    "EncodedImages",
    "FileImages",
    "ImageSource",
    "LoadedModel",
    "OnnxEmbedder",
    "OnnxMetadata",
    "Preprocess",
    "SubsetImages",
    "TorchEmbedder",
    "embed_images",
    "eval_mode",
    "l2_normalize",
    "load_batch",
    "load_checkpoint_embedder",
    "load_embedder",
    "load_facerec_checkpoint",
    "load_onnx_embedder",
    "read_checkpoint_dict",
    "read_onnx_metadata",
    "resolve_device",
]
