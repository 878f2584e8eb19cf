"""Load the embedding network of a facerec checkpoint, refusing anything that is not one.

A facerec checkpoint is a Lightning checkpoint with a ``facerec`` entry (written by
:meth:`facerec.module.FaceRecognitionModule.on_save_checkpoint`) holding the class names and the
preprocessing the embedding network expects. Only the ``backbone`` (backbone + embedding head) is
kept: the margin head, CenterLoss centres and optimiser state are training-only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from facerec.data.image import preprocess_info
from facerec.errors import DataError

EXPECTED = "expected a .ckpt written by facerec fit"


@dataclass
class LoadedModel:
    """The embedding network of a checkpoint and what it expects as input.

    ``backbone``: (B, 3, H, W) normalised -> (B, D) raw embeddings, in eval mode on the CPU.
    ``preprocess``: the checkpoint's preprocessing dict (input_size, channel_order, mean, std,
    layout, embedding_dim, normalized_output, and resize_mode where present).
    """

    backbone: nn.Module
    preprocess: dict[str, Any]
    path: Path
    class_names: list[str] | None = None
    facerec_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        h, w = self.preprocess["input_size"]
        return int(h), int(w)


def default_preprocess(backbone: nn.Module) -> dict[str, Any]:
    """The preprocessing of a bare backbone: its input size, RGB, (x − 127.5)/127.5, NCHW."""
    size = getattr(backbone, "input_size", (112, 112))
    return preprocess_info(size, int(getattr(backbone, "embedding_dim", 0)))


def _read_checkpoint_dict(path: Path) -> dict[str, Any]:
    import torch

    # Lightning checkpoints hold hyper-parameters as plain Python objects; the file is one the
    # user names, as with Lightning's own load_from_checkpoint. Memory-mapped where the format
    # allows, so checking the keys of a large checkpoint does not read its tensors.
    try:
        try:
            ckpt = torch.load(str(path), map_location="cpu", weights_only=False, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as e:
        msg = (str(e).splitlines() or [""])[0][:160]
        raise DataError(
            f"{path}: not a PyTorch checkpoint ({type(e).__name__}: {msg}); {EXPECTED}"
        ) from None
    if not isinstance(ckpt, dict):
        raise DataError(f"{path}: holds a {type(ckpt).__name__}, not a checkpoint dict; {EXPECTED}")
    return ckpt


def load_facerec_checkpoint(path: str | os.PathLike[str]) -> LoadedModel:
    """Load the embedding network of the facerec checkpoint ``path`` onto the CPU.

    Raises:
        DataError: the file is missing, is not a PyTorch checkpoint, has no ``facerec`` entry
            (not written by facerec), or its model does not rebuild.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: checkpoint not found; {EXPECTED}")
    ckpt = _read_checkpoint_dict(p)
    meta = ckpt.get("facerec")
    if not isinstance(meta, dict) or "state_dict" not in ckpt:
        what = "a Lightning checkpoint" if "state_dict" in ckpt else "a checkpoint"
        raise DataError(
            f"{p}: {what} without the 'facerec' entry, so not a facerec checkpoint; {EXPECTED}"
        )
    del ckpt
    from facerec.module import FaceRecognitionModule

    try:
        module = FaceRecognitionModule.load_from_checkpoint(str(p), map_location="cpu")
    except Exception as e:
        msg = (str(e).splitlines() or [""])[0][:200]
        raise DataError(
            f"{p}: the facerec model does not rebuild from this checkpoint "
            f"({type(e).__name__}: {msg}); {EXPECTED} by this facerec version"
        ) from None
    backbone = module.backbone.eval()
    pre = dict(default_preprocess(backbone))
    pre.update(meta.get("preprocess") or {})
    return LoadedModel(
        backbone=backbone,
        preprocess=pre,
        path=p,
        class_names=meta.get("class_names"),
        facerec_version=meta.get("version"),
    )
