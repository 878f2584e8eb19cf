"""Deployment: ONNX export of the embedding network, an onnxruntime embedder, ``facerec embed``.

Submodules: ``checkpoint`` (load a facerec checkpoint's embedding network), ``onnx`` (export,
metadata, self-check, :class:`~facerec.export.onnx.OnnxEmbedder`), ``cli`` (``facerec
export``), ``embed`` (``facerec embed``). ``onnx`` and ``onnxruntime`` come with the ``onnx``
extra and are imported only when needed.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "OnnxEmbedder",
    "OnnxMetadata",
    "check_onnx",
    "export_checkpoint",
    "export_onnx",
    "load_facerec_checkpoint",
    "read_onnx_metadata",
]

_WHERE = {
    "OnnxEmbedder": "onnx",
    "OnnxMetadata": "onnx",
    "check_onnx": "onnx",
    "export_onnx": "onnx",
    "read_onnx_metadata": "onnx",
    "export_checkpoint": "cli",
    "load_facerec_checkpoint": "checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
