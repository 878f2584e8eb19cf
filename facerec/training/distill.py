"""The frozen teacher of embedding distillation (``model.distill``), fed the training batch.

The teacher (a facerec ``.ckpt``, an exported ``.onnx`` or a packaged model such as ``dlib-r29``)
is loaded by the package's embedders and fed with its own preprocessing: the student's batch is
turned back into pixels and prepared as the teacher expects. It runs in eval mode without
gradients and is no part of the student (state dict, optimiser, DDP, checkpoints). A PyTorch
teacher runs on the batch's device, an ONNX one in onnxruntime on uint8 copies of the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facerec.errors import ConfigError, DataError, FacerecError
from facerec.inference import load_checkpoint_embedder, load_onnx_embedder
from facerec.inference.checkpoint import PRETRAINED, not_a_file
from facerec.losses.distill import KINDS, DistillKind

#: what model.distill.teacher takes, for messages
TEACHER_EXPECTED = (
    "expected a facerec .ckpt, an .onnx written by facerec export or a packaged model (dlib-r29)"
)


@dataclass
class DistillOptions:
    """``model.distill``: add ``weight`` × a loss between the student's and a teacher's embeddings.

    ``teacher``: a facerec .ckpt or .onnx of any architecture and input size, or a packaged
    model's name (a file of that name wins). ``loss``: ``cosine`` (1 − cosine) or ``l2`` (mean
    squared error). When the embedding sizes differ, a learned linear projection (no bias, saved
    in checkpoints, not exported) maps the student's embedding to the teacher's size.
    """

    teacher: str = ""
    weight: float = 1.0
    loss: DistillKind = "cosine"

    def validate(self) -> DistillOptions:
        """Raise :class:`ConfigError` for an empty teacher, a negative weight or unknown loss."""
        if not self.teacher:
            raise ConfigError(f"model.distill.teacher is empty; {TEACHER_EXPECTED}")
        if self.weight < 0:
            raise ConfigError(f"model.distill.weight is {self.weight}; expected >= 0")
        if self.loss not in KINDS:
            raise ConfigError(f"model.distill.loss is {self.loss!r}; expected l2 or cosine")
        return self


class FrozenTeacher:
    """A teacher embedding network: student-normalised (B, 3, H, W) -> (B, D_t) float32.

    ``student_mean``, ``student_std``: the student's normalisation (pixel units, RGB). Raises
    ConfigError (no such file, a packaged model's package missing) or DataError (not a model).
    """

    def __init__(self, path: str, student_mean: Any = 127.5, student_std: Any = 127.5) -> None:
        p = Path(path)
        packaged = str(path) in PRETRAINED and not p.exists()  # a file of that name wins
        if not packaged and (problem := not_a_file(p, TEACHER_EXPECTED, what="teacher model")):
            raise ConfigError(f"model.distill.teacher: {problem}")
        self.path = p
        self.onnx = not packaged and p.suffix.lower() == ".onnx"
        try:
            self.embedder = (
                load_onnx_embedder(str(p)) if self.onnx else load_checkpoint_embedder(str(p))
            )
        except DataError as e:
            if not packaged:
                raise
            raise ConfigError(f"model.distill.teacher: {e}") from None
        self.input_size = tuple(int(s) for s in self.embedder.input_size)
        self.resize_mode = str(self.embedder.resize_mode)
        self._s_mean = torch.tensor(np.broadcast_to(student_mean, (3,)).copy()).float()
        self._s_std = torch.tensor(np.broadcast_to(student_std, (3,)).copy()).float()
        if not self.onnx:
            self.net: nn.Module = self.embedder.backbone.eval().requires_grad_(False)
        dim = self.embedder.embedding_dim if self.onnx else self.net.embedding_dim
        if not dim:  # a foreign ONNX file without the metadata: run one image
            h, w = self.input_size
            dim = int(self.embedder(np.zeros((1, h, w, 3), np.uint8)).shape[1])
        self.embedding_dim = int(dim)

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        """Student-normalised (or uint8) (B, 3, H, W) -> float32 RGB pixels, teacher's size."""
        if images.dtype == torch.uint8:
            x = images.float()
        else:
            mean = self._s_mean.to(images.device).view(1, 3, 1, 1)
            std = self._s_std.to(images.device).view(1, 3, 1, 1)
            x = (images.float() * std + mean).clamp(0, 255)
        h, w = self.input_size
        if tuple(x.shape[2:]) == (h, w):
            return x
        if self.resize_mode == "center_crop":  # scale the shorter side to fit, crop the centre
            s = max(h / x.shape[2], w / x.shape[3])
            size = (max(h, round(x.shape[2] * s)), max(w, round(x.shape[3] * s)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
            return x[:, :, top : top + h, left : left + w]
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) student-normalised -> (B, D_t) float32 raw teacher embeddings, no grad."""
        x = self._pixels(images)
        if self.onnx:
            u8 = x.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            return torch.from_numpy(self.embedder(u8)).to(images.device).float()
        if next(self.net.parameters()).device != images.device:
            self.net.to(images.device)
        x = self.embedder.preprocess.normalize(x.permute(0, 2, 3, 1))  # takes (B, H, W, 3)
        self.net.eval()
        out = self.net(x)
        if not torch.isfinite(out).all():
            raise FacerecError(f"model.distill.teacher {self.path}: non-finite embeddings")
        return out.float()


def make_projection(student_dim: int, teacher_dim: int) -> nn.Linear | None:
    """The learned (D_s -> D_t) projection, no bias, orthogonal init; None when sizes agree."""
    if student_dim == teacher_dim:
        return None
    proj = nn.Linear(student_dim, teacher_dim, bias=False)
    nn.init.orthogonal_(proj.weight)
    return proj


__all__ = ["TEACHER_EXPECTED", "DistillOptions", "FrozenTeacher", "make_projection"]
