"""Deployment: ONNX export of the embedding network: ``onnx`` (writing the file), ``check`` (its
self-check against PyTorch), ``cli`` (``facerec export``). Running models is
:mod:`facerec.inference`'s job. ``onnx`` and ``onnxruntime`` (the ``onnx`` extra) are imported
only when needed.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "check_onnx",
    "export_checkpoint",
    "export_onnx",
]

_WHERE = {
    "check_onnx": "check",
    "export_onnx": "onnx",
    "export_checkpoint": "cli",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
