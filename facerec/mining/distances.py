"""Pairwise distance matrices for metric losses and miners, "smaller is more similar":
``"euclidean"`` ‖x_i − x_j‖₂, ``"squared_euclidean"`` ‖x_i − x_j‖₂², ``"cosine"`` 1 − cos(x_i, x_j).

One matrix product (‖x‖² + ‖y‖² − 2·x·yᵀ, clamped at 0); the Euclidean square root of a zero
entry (the diagonal, identical embeddings) has gradient 0, not NaN (no double backward).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from facerec.errors import ConfigError

Distance = Literal["euclidean", "squared_euclidean", "cosine"]
DISTANCES: tuple[str, ...] = ("euclidean", "squared_euclidean", "cosine")


def check_distance(distance: str) -> None:
    """Raise :class:`ConfigError` unless ``distance`` is one of :data:`DISTANCES`."""
    if distance not in DISTANCES:
        raise ConfigError(
            f"unknown distance {distance!r}; expected one of {', '.join(map(repr, DISTANCES))}"
        )


class _SafeSqrt(torch.autograd.Function):
    """sqrt(x) for x ≥ 0 whose gradient is 0 where x == 0 (instead of 0·∞ = NaN)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        out = torch.sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return torch.where(out > 0, grad / (2.0 * out), grad.new_zeros(()))


def pairwise_distances(x: Tensor, y: Tensor | None = None, distance: str = "euclidean") -> Tensor:
    """(N, M) distances, in ``x``'s dtype, between the rows of ``x`` (N, D) and ``y`` (M, D)
    (``y=None``: ``x``, with an exactly zero diagonal)."""
    check_distance(distance)
    same = y is None
    y = x if y is None else y
    if distance == "cosine":
        d = torch.addmm(x.new_ones(()), F.normalize(x, dim=1), F.normalize(y, dim=1).T, alpha=-1.0)
    else:
        xx = (x * x).sum(dim=1, keepdim=True)  # (N, 1)
        yy = xx.T if same else (y * y).sum(dim=1).unsqueeze(0)  # (1, M)
        d = torch.addmm(xx + yy, x, y.T, alpha=-2.0)  # ‖x‖² + ‖y‖² − 2·x·yᵀ
    d = d.clamp_min(0.0)
    if same:
        d.diagonal().zero_()  # exact zeros (rounding leaves ~1e-7 there otherwise)
    if distance == "euclidean":
        d = _SafeSqrt.apply(d)
    return d
