"""Sharded margin head (Partial FC, An et al. 2022; insightface ``partial_fc_v2.py``).

Each of the W ranks holds the class centres of :func:`shard_range` and the logits of its
classes for all gathered rows; the softmax cross-entropy over all classes is computed across
ranks, so at sample rate 1.0 loss and gradients equal the unsharded head's (the backbone's after
DDP's average, through :func:`facerec.base.distributed.all_gather_sum_grad`). ``state_dict()``
holds the full matrix and its optimiser state, so a run resumes on any number of processes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from facerec.base import distributed
from facerec.errors import ConfigError, FacerecError
from facerec.heads.arcface import ArcFaceMargin
from facerec.heads.base import (
    CosineMarginHead,
    Margin,
    MarginHead,
    check_float,
    check_positive_int,
    class_cosine,
    compute_dtype,
    target_cosine,
)

#: read by facerec.inference.checkpoint.allowed_classes: the classes a checkpoint may name
__all__ = ["ShardedClassCentres", "ShardedMarginHead", "distributed_cross_entropy", "shard_range"]

#: Rows per block of the world-size-independent initialisation, and its std (insightface's).
INIT_BLOCK_ROWS = 65536
INIT_STD = 0.01


def shard_range(num_classes: int, world: int, rank: int) -> tuple[int, int]:
    """(class_start, num_local) of rank ``rank`` of ``world`` (insightface's layout)."""
    base, extra = divmod(num_classes, world)
    return base * rank + min(rank, extra), base + (1 if rank < extra else 0)


def _process_group() -> tuple[int, int]:
    """(world size, rank) of the default process group; (1, 0) without one."""
    return distributed.world_size(), distributed.rank()


class _DistributedCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy over classes split across ranks; see distributed_cross_entropy."""

    @staticmethod
    def forward(ctx: FunctionCtx, logits: Tensor, labels: Tensor) -> Tensor:
        n, cols = logits.shape
        valid = labels >= 0
        # a shard (or sample) with no class contributes nothing
        row_max = logits.amax(dim=1, keepdim=True) if cols else logits.new_full((n, 1), -math.inf)
        distributed.all_reduce_(row_max, "max")
        index = labels.clamp(min=0).unsqueeze(1)
        target = torch.zeros_like(row_max)
        if cols:
            target = torch.where(valid.unsqueeze(1), logits.gather(1, index) - row_max, target)
        distributed.all_reduce_(target, "sum")  # z_y − max, from the rank holding the target
        # The logits are only read by this function: turn them into probabilities in place.
        probs = logits.sub_(row_max).exp_()
        denom = probs.sum(dim=1, keepdim=True)
        distributed.all_reduce_(denom, "sum")
        probs.div_(denom)
        ctx.save_for_backward(probs, index, valid)
        ctx.consumed = False
        return (denom.log() - target).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        if ctx.consumed:
            raise FacerecError(
                "ShardedMarginHead: the distributed cross-entropy was back-propagated twice; "
                "it reuses its buffer for the gradient, so call backward once per forward."
            )
        ctx.consumed = True
        probs, index, valid = ctx.saved_tensors
        if probs.shape[1]:
            probs.scatter_(1, index, probs.gather(1, index) - valid.unsqueeze(1).to(probs.dtype))
        probs.mul_(grad / probs.shape[0])
        return probs, None


def distributed_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean softmax cross-entropy over classes split across the ranks, the same on every rank.

    ``logits`` (N, C_r) are this rank's columns of all N gathered rows (their buffer is reused
    for the gradient: pass logits nothing else reads); ``labels`` (N,) each row's column, or −1
    where another rank holds the target. In one process it is ``F.cross_entropy``.
    """
    return _DistributedCrossEntropy.apply(logits, labels)


class ShardedClassCentres(nn.Module):
    """This rank's rows of the (C·K, D) class centres, their sampling and checkpoint layout.

    ``sample_rate`` ρ in (0, 1]: below 1 a training step keeps, per rank, every centre that is a
    target in the global batch plus random others up to ⌊ρ·num_local⌋; ``last_sample`` is then
    the (S,) sorted shard-local classes kept. ``forward(x (N, D), labels (N,))`` -> cosines
    (N, S) with this rank's (sampled) classes and each row's column among them, or −1.
    """

    def __init__(
        self, embedding_dim: int, num_classes: int, k: int = 1, sample_rate: float = 1.0
    ) -> None:
        super().__init__()
        self.embedding_dim, self.num_classes, self.k = embedding_dim, num_classes, k
        self.sample_rate = float(sample_rate)
        self.init_seed = int(torch.randint(0, 2**62, ()).item())
        self.weight = nn.Parameter(torch.empty(0, embedding_dim))
        self._layout: tuple[int, int] | None = None  # (world, rank) of the rows held
        self.last_sample: Tensor | None = None
        if distributed.is_distributed():
            self.setup_shard()

    def extra_repr(self) -> str:
        start, count = self.shard
        return (
            f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, k={self.k}, "
            f"sample_rate={self.sample_rate}, shard=[{start}, {start + count})"
        )

    @property
    def shard(self) -> tuple[int, int]:
        """(class_start, num_local) of this rank in the current process group."""
        world, rank = self._layout or _process_group()
        return shard_range(self.num_classes, world, rank)

    def _init_rows(self, start: int, stop: int) -> Tensor:
        """Rows [start, stop) of the initial (C·K, D) matrix."""
        d, b = self.embedding_dim, INIT_BLOCK_ROWS
        out = torch.empty(stop - start, d)
        for block in range(start // b, (stop - 1) // b + 1 if stop > start else 0):
            lo, hi = block * b, min((block + 1) * b, self.num_classes * self.k)
            g = torch.Generator().manual_seed(self.init_seed + block)
            rows = torch.randn(hi - lo, d, generator=g).mul_(INIT_STD)
            a, z = max(lo, start), min(hi, stop)
            out[a - start : z - start] = rows[a - lo : z - lo]
        return out

    def reset_parameters(self) -> None:
        """Re-draw this rank's rows of the initial matrix."""
        start, count = self.shard
        rows = self._init_rows(start * self.k, (start + count) * self.k)
        self.weight.data = rows.to(device=self.weight.device, dtype=self.weight.dtype)

    def setup_shard(self) -> None:
        """Hold this rank's rows for the current process group (idempotent): a placeholder
        becomes the initial rows, a one-process matrix is sliced, another layout raises
        :class:`FacerecError`."""
        (world, rank), old = _process_group(), self._layout
        if old == (world, rank):
            return
        if old is not None and old[0] != 1:
            raise FacerecError(
                f"ShardedMarginHead holds the rows of rank {old[1]} of "
                f"{old[0]} processes but runs as rank {rank} of {world}; save a "
                "checkpoint and load it in the new process group instead."
            )
        self._layout = (world, rank)
        if old is None:
            self.reset_parameters()
        else:
            self.weight.data = self._local_rows_of(self.weight.data).clone()

    def _sample(self, local: Tensor) -> tuple[Tensor, Tensor]:
        """Pick the centres of a step: (S,) sorted shard-local classes and remapped labels."""
        _, num_local = self.shard
        num_sample = int(self.sample_rate * num_local)
        valid = local >= 0
        positive = torch.unique(local[valid], sorted=True)
        if num_sample >= positive.numel():
            perm = torch.rand(num_local, device=local.device)
            perm[positive] = 2.0
            index = torch.topk(perm, k=num_sample).indices.sort().values
        else:
            index = positive
        remapped = torch.searchsorted(index, local.clamp(min=0))
        return index, torch.where(valid, remapped, torch.full_like(local, -1))

    def forward(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(N, D) gathered embeddings, (N,) labels in [0, C) -> (N, S) cosines, (N,) columns."""
        self.setup_shard()
        start, num_local = self.shard
        local = labels - start
        local = torch.where((local >= 0) & (local < num_local), local, -1)
        weight = self.weight
        self.last_sample = None
        if self.training and self.sample_rate < 1.0:
            index, local = self._sample(local)
            self.last_sample = index
            rows = index.unsqueeze(1) * self.k + torch.arange(self.k, device=index.device)
            weight = weight[rows.flatten()]
        return class_cosine(x, weight.to(x.dtype), self.k), local

    def gather_full(self, rows: Tensor) -> Tensor:
        """This rank's (num_local·K, ...) rows -> the full (C·K, ...) tensor, in host memory
        with W > 1 (a collective: every rank must call it)."""
        world, rank = self._layout or _process_group()
        if world == 1:
            return rows
        if (world, rank) != _process_group():
            raise FacerecError(
                "ShardedMarginHead: the process group changed since the shard was laid out; "
                "cannot gather the class centres."
            )
        counts = [shard_range(self.num_classes, world, r)[1] * self.k for r in range(world)]
        return distributed.gather_rows_to_host(rows, counts)

    def _local_rows_of(self, full: Tensor) -> Tensor:
        start, count = self.shard
        return full[start * self.k : (start + count) * self.k]

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        self.setup_shard()
        destination[prefix + "weight"] = self.gather_full(self.weight.detach())

    def _load_from_state_dict(self, state_dict: Mapping, prefix: str, *args: Any) -> None:
        key = prefix + "weight"
        if key in state_dict:
            full = state_dict[key]
            expected = (self.num_classes * self.k, self.embedding_dim)
            if tuple(full.shape) != expected:
                args[-1].append(
                    f"ShardedMarginHead: weight has shape {tuple(full.shape)}, expected the full "
                    f"class-centre matrix {expected} (num_classes·k, embedding_dim)."
                )
                return
            self._layout = _process_group()
            local = self._local_rows_of(full)
            self.weight.data = self.weight.new_empty(local.shape)
            state_dict = {**state_dict, key: local}
        super()._load_from_state_dict(state_dict, prefix, *args)

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Make ``optimizer``'s per-row state of ``weight`` (momentum, Adam moments) full-size
        in its state_dict (a collective) and sliced on load; idempotent."""
        if not any(p is self.weight for g in optimizer.param_groups for p in g["params"]):
            raise FacerecError(
                "ShardedMarginHead.attach_optimizer: the optimiser does not hold the class centres."
            )
        attached = optimizer.__dict__.setdefault("_facerec_sharded_heads", set())
        if id(self) in attached:  # idempotent
            return
        attached.add(id(self))
        optimizer.register_state_dict_post_hook(self._gather_optimizer_state)
        optimizer.register_load_state_dict_pre_hook(self._slice_optimizer_state)

    def _state_entry(self, opt: torch.optim.Optimizer, state_dict: dict) -> tuple[dict, Any, Any]:
        """A copy of an optimiser state_dict to edit (its ``state`` copied too), the id of
        ``weight`` there and its state (or None)."""
        current = [p for g in opt.param_groups for p in g["params"]]
        saved = [p for g in state_dict["param_groups"] for p in g["params"]]
        pos = next(i for i, p in enumerate(current) if p is self.weight)
        pid = saved[pos] if pos < len(saved) else None
        return {**state_dict, "state": dict(state_dict["state"])}, pid, state_dict["state"].get(pid)

    def _gather_optimizer_state(self, optimizer: torch.optim.Optimizer, state_dict: dict) -> dict:
        state_dict, pid, entry = self._state_entry(optimizer, state_dict)
        if entry is None or (self._layout or (1, 0))[0] == 1:
            return state_dict
        rows = self.weight.shape[0]
        state_dict["state"][pid] = {
            k: self.gather_full(v)
            if isinstance(v, Tensor) and v.dim() and v.shape[0] == rows
            else v
            for k, v in entry.items()
        }
        return state_dict

    def _slice_optimizer_state(self, optimizer: torch.optim.Optimizer, state_dict: dict) -> dict:
        state_dict, pid, entry = self._state_entry(optimizer, state_dict)
        if entry is None:
            return state_dict
        self.setup_shard()
        full_rows, rows = self.num_classes * self.k, self.weight.shape[0]
        one_process = (self._layout or (1, 0))[0] == 1
        new: dict[str, Any] = {}
        for k, v in entry.items():
            if not isinstance(v, Tensor) or v.dim() == 0:
                new[k] = v
            elif v.shape[0] == full_rows:
                new[k] = self._local_rows_of(v).clone()
            elif v.shape[0] == rows and one_process:
                new[k] = v
            else:
                warnings.warn(
                    f"ShardedMarginHead: optimiser state {k!r} of head.weight has {v.shape[0]} "
                    f"rows, neither the full {full_rows} nor this shard's {rows}; its state is "
                    "reset (momentum restarts at zero).",
                    stacklevel=2,
                )
                del state_dict["state"][pid]
                return state_dict
        state_dict["state"][pid] = new
        return state_dict


class ShardedMarginHead(MarginHead):
    """Class centres split over the DDP ranks and a margin; returns the global-batch loss.

    Args:
        embedding_dim: D.
        num_classes: C, over all ranks.
        margin: a :class:`~facerec.heads.base.Margin` (e.g. ``facerec.heads.ArcFaceMargin``), or
            a one-process head class or factory (``margin(D, 1)``, e.g. ``class_path:
            facerec.heads.ArcFaceHead``) lending its margin and K; default ArcFace (64, 0.5).
        sample_rate: ρ in (0, 1] of :class:`ShardedClassCentres`, default 1.0.
        k: centres per class when ``margin`` is a :class:`Margin` (sub-centres), default 1.

    Shapes: forward(embeddings (B, D) float, labels (B,) int64 in [0, C)) -> scalar float32 loss
    (the mean softmax cross-entropy over all ranks' rows, plus the margin's ``regularizer`` of
    the local rows, e.g. MagFace's, which DDP then averages). The state_dict holds the full
    matrix under ``weight`` and the margin's buffers under ``margin.``.
    """

    returns_loss = True
    ddp_ignore = ("centres.weight",)
    flat_state = ("centres",)

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        margin: Margin | Callable[[int, int], CosineMarginHead] | None = None,
        sample_rate: float = 1.0,
        k: int = 1,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        name = type(self).__name__
        rate = check_float("sample_rate", sample_rate, name, low=0.0, high=1.0, low_open=True)
        k = check_positive_int("k", k, name)
        margin = ArcFaceMargin() if margin is None else margin
        if not isinstance(margin, Margin):
            if isinstance(margin, Mapping) or not callable(margin):
                raise ConfigError(
                    f"{name}: margin must be a Margin, or a margin head class or factory such as "
                    f"facerec.heads.ArcFaceHead (a class_path in a config), got {margin!r}."
                )
            template = margin(self.embedding_dim, 1)
            if not isinstance(template, CosineMarginHead):
                raise ConfigError(
                    f"{name}: margin must build a cosine margin head (ArcFace, CosFace, "
                    f"CurricularFace, AdaFace, ...), got {type(template).__name__}, whose logits "
                    "are not a function of the cosines and cannot be sharded."
                )
            if k != 1:
                raise ConfigError(f"{name}: k is for a Margin; a head class brings its own k.")
            margin, k = template.margin, template.centres.k
        self.centres = ShardedClassCentres(self.embedding_dim, self.num_classes, k, rate)
        self.margin = margin

    @property
    def weight(self) -> nn.Parameter:
        return self.centres.weight

    @property
    def shard(self) -> tuple[int, int]:
        return self.centres.shard

    def setup_shard(self) -> None:
        self.centres.setup_shard()

    def gather_full(self, rows: Tensor) -> Tensor:
        return self.centres.gather_full(rows)

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.centres.attach_optimizer(optimizer)

    def _margin_logits(self, cos: Tensor, local: Tensor, norms: Tensor) -> Tensor:
        """(N, C') cosines, (N,) shard columns or −1, (N, 1) norms -> (N, C') logits."""
        if not (self.margin.needs_target_cosine and distributed.is_distributed()):
            return self.margin(cos, local, norms)
        # every rank needs cos θ_y of every row: append it as a column that the rows whose
        # target is elsewhere point at (each row then counts W times in a running mean)
        with torch.no_grad():
            cos_t = distributed.all_reduce_(target_cosine(cos, local), "sum")
        extended = torch.cat([cos, cos_t], dim=1)
        labels = torch.where(local >= 0, local, torch.full_like(local, cos.shape[1]))
        return self.margin(extended, labels, norms)[:, : cos.shape[1]]

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """(B, D) raw local embeddings, (B,) int64 labels in [0, C) -> scalar global loss."""
        self._check_inputs(embeddings, labels)
        labels = labels.long()
        if labels.numel() and bool(((labels < 0) | (labels >= self.num_classes)).any()):
            raise FacerecError(
                f"ShardedMarginHead: labels must be in [0, {self.num_classes}), got values from "
                f"{int(labels.min())} to {int(labels.max())}."
            )
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x_local = embeddings.to(compute_dtype(embeddings))
            sizes = distributed.gather_sizes(x_local.shape[0], x_local.device)
            x = distributed.all_gather_sum_grad(x_local, sizes)  # (N, D)
            cos, local = self.centres(x, distributed.all_gather_rows(labels, sizes, fill=-1))
            norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
            # a fresh tensor that only the cross-entropy reads (it is overwritten in place)
            loss = distributed_cross_entropy(self._margin_logits(cos, local, norms), local)
            reg = self.margin.regularizer(x_local)
        return loss if reg is None else loss + reg
