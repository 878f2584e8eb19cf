"""Thin helpers over ``torch.distributed`` (as Lightning sets it up) that are no-ops in a single
process."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable


def is_distributed() -> bool:
    """True when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def all_gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (N, ...) of every rank (same shape on all) along dim 0; no gradient."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (N, ...) from every rank along dim 0; the local slice keeps its gradient
    (the others are constants here: each rank back-propagates through its own)."""
    if not is_distributed():
        return x
    gathered = list(all_gather_nograd(x.detach()).chunk(dist.get_world_size(), dim=0))
    gathered[dist.get_rank()] = x
    return torch.cat(gathered, dim=0)


def all_reduce_(x: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``op`` in sum, max, min) without gradient; returns ``x``."""
    if is_distributed():
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        dist.all_reduce(x, op=ops[op])
    return x


def gather_sizes(n: int, device: torch.device) -> list[int]:
    """Every rank's local row count ``n``, in rank order (``[n]`` in a single process)."""
    if not is_distributed():
        return [n]
    return all_gather_nograd(torch.tensor([n], device=device)).tolist()


def all_gather_rows(x: torch.Tensor, sizes: list[int], fill: float = 0) -> torch.Tensor:
    """(sizes[r], ...) rows of every rank (sizes from :func:`gather_sizes`) -> (Σ sizes, ...)
    in rank order, no gradient; shorter ones are padded with ``fill`` for the collective."""
    if len(sizes) == 1:
        return x
    most = max(sizes)
    if x.shape[0] < most:
        x = torch.cat([x, x.new_full((most - x.shape[0], *x.shape[1:]), fill)])
    parts = all_gather_nograd(x).split(most)
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])


class _GatherSumGrad(torch.autograd.Function):
    """All-gather rows; backward sums the gradient over ranks, keeps the local rows, times W."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        ctx.sizes = sizes
        return all_gather_rows(x, sizes)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        sizes: list[int] = ctx.sizes
        total = all_reduce_(grad.contiguous().clone(), "sum")
        start = sum(sizes[: dist.get_rank()])
        return total[start : start + sizes[dist.get_rank()]].mul_(len(sizes)), None


def all_gather_sum_grad(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """(B_r, D) local rows -> (Σ B_r, D) rows of all ranks in rank order, with a gradient: the
    sum over ranks of the gradients reaching rank r's rows, times W, so that after DDP's average
    a loss split over ranks (Partial FC) gets its exact gradient (insightface's
    ``grad_out *= world_size``)."""
    return x if len(sizes) == 1 else _GatherSumGrad.apply(x, sizes)


def gather_rows_to_host(rows: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Every rank's (counts[r], ...) rows -> all of them in rank order, in host memory, one
    rank's block at a time (no device holds more than the largest block extra)."""
    if len(counts) == 1:
        return rows
    out = torch.empty(sum(counts), *rows.shape[1:], dtype=rows.dtype)
    buf = rows.new_empty(max(counts), *rows.shape[1:])
    start = 0
    for src, n in enumerate(counts):
        if src == dist.get_rank():
            buf[:n] = rows
        dist.broadcast(buf, src=src)
        out[start : start + n] = buf[:n].cpu()
        start += n
    return out
