"""Embedding distillation: pull a student's embeddings (B, D) towards a frozen teacher's.

``l2``: (1/(B·D))·Σ_i ‖s_i − t_i‖² (norms too); ``cosine``: (1/B)·Σ_i (1 − cos(s_i, t_i)).
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from facerec.errors import ConfigError

DistillKind = Literal["l2", "cosine"]
KINDS = ("l2", "cosine")


def distill_loss(student: Tensor, teacher: Tensor, kind: DistillKind = "cosine") -> Tensor:
    """Distillation loss of (B, D) student and teacher embeddings -> scalar, in float32; no
    gradient flows into ``teacher``."""
    if kind not in KINDS:
        raise ConfigError(f"model.distill.loss is {kind!r}; expected one of {', '.join(KINDS)}")
    if student.shape != teacher.shape or student.ndim != 2:
        raise ConfigError(
            f"distillation: student embeddings {tuple(student.shape)} and teacher embeddings "
            f"{tuple(teacher.shape)}; expected the same (B, D) (a projection maps the student's "
            "size to the teacher's)"
        )
    s = student.float()
    t = teacher.detach().float()
    if kind == "l2":
        return F.mse_loss(s, t)
    return (1.0 - F.cosine_similarity(s, t, dim=1, eps=1e-8)).mean()
