"""Slow, obvious references for the margin heads: one Python loop per sample and class.

Each function takes float64 tensors x (B, D), W (rows, D) (which may require grad), a list of
labels and the head's parameters, and builds the (B, C) logits entry by entry from the paper's
formula with scalar torch ops (so autograd gives the reference gradient) and ``math``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def cos_entry(x: Tensor, w: Tensor) -> Tensor:
    """Scalar cosine between two vectors."""
    return torch.dot(x, w) / (torch.sqrt(torch.dot(x, x)) * torch.sqrt(torch.dot(w, w)))


def build(
    x: Tensor,
    W: Tensor,
    labels: list[int],
    entry: Callable[[int, int, Tensor, bool], Tensor],
    k: int = 1,
) -> Tensor:
    """logits[i][j] = entry(i, j, cos θ_ij, j == labels[i]); cos is the max over k sub-centres."""
    rows = []
    for i in range(x.shape[0]):
        row = []
        for j in range(W.shape[0] // k):
            c = cos_entry(x[i], W[j * k])
            for r in range(1, k):
                c2 = cos_entry(x[i], W[j * k + r])
                c = c2 if c2.item() > c.item() else c
            row.append(entry(i, j, c, j == labels[i]))
        rows.append(torch.stack(row))
    return torch.stack(rows)


def norm(v: Tensor) -> Tensor:
    return torch.sqrt(torch.dot(v, v))


def arcface_value(c: Tensor, m: float | Tensor, easy: bool = False) -> Tensor:
    """cos(θ + m) by arccos, with the fallback cos θ − m·sin m where θ + m > π (or easy margin)."""
    theta = torch.acos(c)
    if easy:
        return torch.cos(theta + m) if c.item() > 0 else c
    if (theta + m).item() > math.pi:
        return c - m * torch.sin(torch.as_tensor(m, dtype=c.dtype))
    return torch.cos(theta + m)


def arcface(x, W, labels, s=64.0, m=0.5, easy=False, k=1):
    return build(x, W, labels, lambda i, j, c, t: s * (arcface_value(c, m, easy) if t else c), k)


def cosface(x, W, labels, s=64.0, m=0.35):
    return build(x, W, labels, lambda i, j, c, t: s * (c - m if t else c))


def combined(x, W, labels, m1, m2, m3, s=64.0):
    def entry(i, j, c, t):
        if not t:
            return s * c
        theta = torch.acos(c)
        if m1 == 1.0 and (theta + m2).item() > math.pi:
            return s * (c - m2 * math.sin(m2) - m3)
        return s * (torch.cos(m1 * theta + m2) - m3)

    return build(x, W, labels, entry)


def sphereface(x, W, labels, m=4, lam=0.0, feature_norm=False, s=64.0):
    def entry(i, j, c, t):
        scale = s if feature_norm else norm(x[i])
        if not t:
            return scale * c
        theta = math.acos(c.item())
        k = min(math.floor(theta * m / math.pi), m - 1)
        # cos(mθ) as a polynomial in c via the multiple-angle formula (binomial expansion)
        cos_m = sum(
            (-1) ** n * math.comb(m, 2 * n) * c ** (m - 2 * n) * (1 - c * c) ** n
            for n in range(m // 2 + 1)
        )
        psi = (-1) ** k * cos_m - 2 * k
        return scale * (lam * c + psi) / (1 + lam)

    return build(x, W, labels, entry)


def curricular(x, W, labels, t, s=64.0, m=0.5):
    """``t`` is the value of the buffer used in this step (already updated)."""
    cos_y = [cos_entry(x[i], W[labels[i]]).item() for i in range(x.shape[0])]

    def entry(i, j, c, tgt):
        if tgt:
            return s * arcface_value(c, m)
        if c.item() > math.cos(math.acos(cos_y[i]) + m):
            return s * c * (t + c)
        return s * c

    return build(x, W, labels, entry)


def adaface(x, W, labels, mu, sigma, m=0.4, h=0.333, s=64.0):
    """``mu``, ``sigma`` are the statistics used in this step (already updated)."""
    eps = 1e-3

    def entry(i, j, c, t):
        c = torch.clamp(c, -1 + eps, 1 - eps)
        if not t:
            return s * c
        n = min(max(norm(x[i]).item(), 0.001), 100.0)
        z = min(max(h * (n - mu) / (sigma + eps), -1.0), 1.0)
        theta = torch.acos(c) - m * z
        theta = torch.clamp(theta, eps, math.pi - eps)
        return s * (torch.cos(theta) - (m + m * z))

    return build(x, W, labels, entry)


def magface(x, W, labels, s=64.0, l_a=10.0, u_a=110.0, l_m=0.45, u_m=0.8):
    def entry(i, j, c, t):
        if not t:
            return s * c
        a = torch.clamp(norm(x[i]), l_a, u_a)
        margin = (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m
        return s * arcface_value(c, margin)

    return build(x, W, labels, entry)


def sample(
    b: int, d: int, c: int, *, seed: int = 0, x_scale: float = 1.0, rows: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Random float64 x (b, d), W (rows or c, d) and labels (b,) in [0, c) with every row a leaf."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(b, d, generator=g, dtype=torch.float64) * x_scale).requires_grad_()
    W = torch.randn(rows or c, d, generator=g, dtype=torch.float64).requires_grad_()
    y = torch.randint(0, c, (b,), generator=g)
    return x, W, y


def run_ours(head, x: Tensor, W: Tensor, y: Tensor) -> Tensor:
    """Logits of ``head`` (float64) with its weight replaced by the leaf ``W``, autograd to x, W."""
    name = next(n for n, p in head.named_parameters() if p is head.weight)  # centres.weight
    return torch.func.functional_call(head, {name: W}, (x, y))


def check_against(head, ref: Tensor, x: Tensor, W: Tensor, y: Tensor, *, atol: float = 1e-9):
    """Compare head(x, y) with ``ref`` (built from x, W) in value and in the gradients of a random
    linear functional of the logits with respect to x and W."""
    ours = run_ours(head, x, W, y)
    assert ours.dtype == torch.float64 and ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=atol, rtol=1e-9)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=ref.dtype)
    gx, gw = torch.autograd.grad((ours * g).sum(), (x, W))
    rx, rw = torch.autograd.grad((ref * g).sum(), (x, W))
    torch.testing.assert_close(gx, rx, atol=1e-7, rtol=1e-7)
    torch.testing.assert_close(gw, rw, atol=1e-7, rtol=1e-7)


def assert_matches_pml(ours, pml, x: Tensor, W: Tensor, y: Tensor) -> None:
    """Give the float64 head ``ours`` and pytorch-metric-learning's loss ``pml`` the same class
    centres ``W`` (C, D) (PML stores them as (D, C)) and check cross-entropy of our logits against
    PML's loss, and the gradients to the embeddings and the centres."""
    with torch.no_grad():
        ours.weight.copy_(W)
        pml.W.copy_(W.t())
    x1 = x.detach().clone().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    loss_ours = F.cross_entropy(ours(x1, y), y)
    loss_pml = pml(x2, y)
    torch.testing.assert_close(loss_ours, loss_pml, atol=1e-10, rtol=1e-10)
    loss_ours.backward()
    loss_pml.backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.weight.grad, pml.W.grad.t())


def gradcheck_head(head, x: Tensor, W: Tensor, y: Tensor) -> bool:
    """float64 ``torch.autograd.gradcheck`` of the head's forward in x and W."""
    return torch.autograd.gradcheck(lambda a, w: run_ours(head, a, w, y), (x, W))
