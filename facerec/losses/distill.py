"""Embedding distillation: pull a student's embeddings towards a frozen teacher's.

Two losses between the student's embeddings ``s`` (B, D) (projected to the teacher's size D when
the sizes differ) and the teacher's ``t`` (B, D) of the same images:

* ``l2``: mean squared error over the batch and the D components of the raw embeddings,
  (1/(B·D))·Σ_i ‖s_i − t_i‖² (the student also learns the teacher's embedding norms);
* ``cosine``: (1/B)·Σ_i (1 − cos(s_i, t_i)), scale-free: only directions, which is what cosine
  verification compares.

The teacher's embeddings are a target: no gradient flows into them.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from facerec.errors import ConfigError

DistillKind = Literal["l2", "cosine"]
KINDS = ("l2", "cosine")


def distill_loss(student: Tensor, teacher: Tensor, kind: DistillKind = "cosine") -> Tensor:
    """Distillation loss between (B, D) student and (B, D) teacher embeddings -> scalar.

    Computed in float32 whatever the input dtype (bf16 under mixed precision); ``teacher`` is
    detached. ``kind``: ``l2`` (mean squared error) or ``cosine`` (mean of 1 − cosine).
    """
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


__all__ = ["KINDS", "DistillKind", "distill_loss"]
