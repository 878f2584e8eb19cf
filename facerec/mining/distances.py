"""Pairwise distance matrices for metric losses and miners.

Three distances, all "smaller is more similar":

* ``"euclidean"``: ‖x_i − x_j‖₂
* ``"squared_euclidean"``: ‖x_i − x_j‖₂²
* ``"cosine"``: 1 − cos(x_i, x_j), in [0, 2] (the inputs are normalised inside, whatever they are)

The matrix comes from one matrix product (‖x‖² + ‖y‖² − 2·x·yᵀ, clamped at 0), so it costs
O(B²·D) time and O(B²) memory. The Euclidean square root is guarded: an entry whose squared
distance is 0 (the diagonal, or two identical embeddings, as a PK batch drawn with replacement can
hold) is exactly 0 with gradient 0 instead of NaN (first derivatives only: the guarded square
root does not support double backward).
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
    """Distance matrix between the rows of ``x`` (N, D) and ``y`` (M, D) (``y=None``: ``x``).

    Returns (N, M) in the dtype of ``x``. When ``y`` is ``None`` the diagonal is exactly 0.
    Differentiable with respect to ``x`` and ``y``.
    """
    check_distance(distance)
    same = y is None
    y = x if y is None else y
    if distance == "cosine":
        d = torch.addmm(
            torch.ones((), dtype=x.dtype, device=x.device),
            F.normalize(x, dim=1),
            F.normalize(y, dim=1).T,
            alpha=-1.0,
        )
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
