"""Thin helpers over ``torch.distributed`` that are no-ops in a single process.

Everything distributed in facerec runs on torch.distributed as Lightning sets it up (DDP with NCCL
on GPUs, gloo on CPU); these functions only hide the ``is_initialized()`` checks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def all_gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (N, ...) from every rank along dim 0, in rank order; no gradient.

    Every rank must pass the same shape. Returns ``x`` itself in a single process.
    """
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (N, ...) from every rank along dim 0; the local slice keeps its gradient.

    The slices from other ranks are constants here (their own rank back-propagates through its
    own slice), which is what a loss over the global batch needs: each rank's gradient is the
    gradient of the global loss with respect to its local inputs, summed by DDP as usual.
    """
    if not is_distributed():
        return x
    gathered = list(all_gather_nograd(x.detach()).chunk(dist.get_world_size(), dim=0))
    gathered[dist.get_rank()] = x
    return torch.cat(gathered, dim=0)


def all_reduce_(x: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``op`` in sum, max, min, mean) without gradient; returns ``x``."""
    if not is_distributed():
        return x
    if op == "mean":
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= dist.get_world_size()
        return x
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    dist.all_reduce(x, op=ops[op])
    return x
