"""Inference: from a trained model (checkpoint or ONNX) and images to embeddings; below eval
and export. ``onnx`` and ``onnxruntime`` are imported only when an ONNX model is used.
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
