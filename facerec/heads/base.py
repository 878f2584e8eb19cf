"""Building blocks of the heads: class centres, margins, and the maths kernels they share.

A head is class centres (:class:`ClassCentres`, or the sharded ones of
:mod:`facerec.heads.sharded`: the (C·K, D) matrix, embeddings -> cosines) composed with a
:class:`Margin` (cosines, labels, ‖x‖ -> logits, with its running state), as insightface's
``CombinedMarginLoss``. Heads compute in float32 with autocast off; centres start N(0, 0.01²).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, get_type_hints

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from facerec.errors import ConfigError, FacerecError

#: Lower clamp of 1 − cos² in sin θ = sqrt(1 − cos² θ): keeps the gradient of cos(θ + m) finite
#: and changes sin θ only for θ < 1e-4 rad (in float32, only at |cos θ| = 1 exactly).
SINE_EPS = 1e-8
#: Lower clamp of the norms before dividing by them (as ``torch.nn.functional.normalize``).
NORM_EPS = 1e-12


def check_positive_int(name: str, value: object, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{owner}: {name} must be a positive integer, got {value!r}.")
    return value


def check_batch(owner: str, embeddings: Tensor, labels: Tensor, dim: int) -> None:
    """Raise :class:`FacerecError` unless ``embeddings`` is (B, dim) and ``labels`` is (B,)."""
    if embeddings.dim() != 2 or embeddings.shape[1] != dim:
        raise FacerecError(
            f"{owner}: embeddings must have shape (B, {dim}), got {tuple(embeddings.shape)}."
        )
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise FacerecError(
            f"{owner}: labels must have shape ({embeddings.shape[0]},) to match the "
            f"embeddings, got {tuple(labels.shape)}."
        )


def check_float(
    name: str,
    value: object,
    owner: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
) -> float:
    """Return ``value`` as float after checking it lies in [low, high] (or (low, high])."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{owner}: {name} must be a number, got {value!r}.")
    value = float(value)
    if value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ConfigError(f"{owner}: {name} must be in {bracket}{low}, {high}], got {value!r}.")
    return value


class _NormalizedCosine(torch.autograd.Function):
    """cos[b, j] = <x_b, w_j> / (‖x_b‖·‖w_j‖) without a normalised (C, D) copy of the weight;
    the backward makes one (B, C) buffer and rank-one corrections in place."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, weight: Tensor) -> Tensor:
        inv_x = torch.linalg.vector_norm(x, dim=1).clamp_min(NORM_EPS).reciprocal()  # (B,)
        inv_w = torch.linalg.vector_norm(weight, dim=1).clamp_min(NORM_EPS).reciprocal()  # (C,)
        cos = torch.mm(x, weight.t())  # (B, C)
        cos.mul_(inv_x.unsqueeze(1)).mul_(inv_w.unsqueeze(0))
        ctx.save_for_backward(x, weight, inv_x, inv_w, cos)
        return cos

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, weight, inv_x, inv_w, cos = ctx.saved_tensors
        # d cos_bj / d x_b = (ŵ_j − cos_bj·x̂_b)/‖x_b‖ ; d cos_bj / d w_j = (x̂_b − cos_bj·ŵ_j)/‖w_j‖
        buf = torch.mul(grad, cos)  # (B, C), the only (B, C) buffer of the backward
        row = buf.sum(dim=1)  # (B,)  Σ_j g·cos
        col = buf.sum(dim=0)  # (C,)  Σ_b g·cos
        scaled = torch.mul(grad, inv_x.unsqueeze(1), out=buf).mul_(inv_w.unsqueeze(0))
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(scaled, weight)  # (B, D)
            grad_x.addcmul_(x, (row * inv_x * inv_x).unsqueeze(1), value=-1.0)
        if ctx.needs_input_grad[1]:
            grad_w = torch.mm(scaled.t(), x)  # (C, D)
            grad_w.addcmul_(weight, (col * inv_w * inv_w).unsqueeze(1), value=-1.0)
        return grad_x, grad_w


def normalized_cosine(x: Tensor, weight: Tensor) -> Tensor:
    """``F.normalize(x) @ F.normalize(weight).T`` for (B, D), (C, D) -> (B, C), exact gradient,
    without the normalised (C, D) copy of the weight."""
    return _NormalizedCosine.apply(x, weight)


class _MarginLogits(torch.autograd.Function):
    """logits = scale·clip(cos), then logits[b, y_b] = target_fn(cos[b, y_b], *extras)[b].

    ``target_fn`` runs on detached (B, 1) target cosines under its own small graph, so the
    (B, C) work is one tensor in forward and one in backward.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        cos: Tensor,
        index: Tensor,
        valid: Tensor,
        scale: Tensor,
        clip: float | None,
        target_fn: Callable[..., Tensor],
        *extras: Tensor,
    ) -> Tensor:
        with torch.enable_grad():
            leaf = cos.gather(1, index).detach().requires_grad_()
            extra_leaves = [e.detach().requires_grad_(e.requires_grad) for e in extras]
            target = target_fn(leaf, *extra_leaves)
        logits = cos.clamp(-clip, clip).mul_(scale) if clip is not None else cos * scale
        logits.scatter_(1, index, torch.where(valid, target.detach(), logits.gather(1, index)))
        ctx.graph = (leaf, extra_leaves, target)
        ctx.clip = clip
        ctx.save_for_backward(index, valid, scale, cos if clip is not None else None)
        return logits

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        index, valid, scale, cos = ctx.saved_tensors
        leaf, extra_leaves, target = ctx.graph
        g_target = torch.where(valid, grad.gather(1, index), grad.new_zeros(()))
        wanted = [leaf] + [e for e in extra_leaves if e.requires_grad]
        if target.requires_grad:
            with torch.enable_grad():
                # retained so that a retain_graph=True outer backward can run again
                grads = torch.autograd.grad(
                    target, wanted, g_target, retain_graph=True, materialize_grads=True
                )
        else:  # a target that does not depend on cos or the extras
            grads = [torch.zeros_like(w) for w in wanted]
        if ctx.clip is not None:
            # one fused kernel: grad where −clip < cos < clip, else 0 (the gradient of the clamp)
            grad_cos = torch.ops.aten.hardtanh_backward(grad, cos, -ctx.clip, ctx.clip).mul_(scale)
        else:
            grad_cos = grad * scale
        grad_cos.scatter_(1, index, torch.where(valid, grads[0], grad_cos.gather(1, index)))
        it = iter(grads[1:])
        extra_grads = [next(it) if e.requires_grad else None for e in extra_leaves]
        return (grad_cos, None, None, None, None, None, *extra_grads)


def margin_logits(
    cos: Tensor,
    labels: Tensor,
    scale: float | Tensor,
    target_fn: Callable[..., Tensor],
    *extras: Tensor,
    clip: float | None = None,
) -> Tensor:
    """(B, C) cosines -> scaled logits with each row's target logit from ``target_fn``.

    Args:
        labels: (B,) each row's target column in ``cos``, or −1 (row left ``scale·clip(cos)``).
        scale: a float, or a (B, 1) tensor (e.g. ‖x‖; with a gradient, plain autograd is used).
        target_fn: ``(cos_t (B, 1), *extras) -> (B, 1)`` scaled target logits of the unclipped
            target cosines. Tensors it closes over are constants: pass in ``extras`` those
            that need a gradient (e.g. a (B, 1) margin).
        clip: if given, non-target cosines are clamped to [−clip, clip] (gradient 0 outside).
    """
    valid = (labels >= 0).unsqueeze(1)
    index = labels.clamp(min=0).unsqueeze(1)
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (cos, scale, *extras) if isinstance(t, Tensor)
    )
    if not needs_grad or (isinstance(scale, Tensor) and scale.requires_grad):
        # inference (no graph to build) or a scale with gradient (W-Norm ‖x‖): plain ops
        base = cos.clamp(-clip, clip) if clip is not None else cos
        logits = base * scale
        target = target_fn(cos.gather(1, index), *extras)
        new = torch.where(valid, target, base.gather(1, index) * scale)
        return logits.scatter_(1, index, new)  # in place: nothing saved `logits` for backward
    if not isinstance(scale, Tensor):
        scale = cos.new_tensor(float(scale))
    return _MarginLogits.apply(cos, index, valid, scale, clip, target_fn, *extras)


def target_cosine(cos: Tensor, labels: Tensor) -> Tensor:
    """(B, C) cosines, (B,) labels (−1 allowed) -> (B, 1) cosine of each row's target (0 if −1)."""
    picked = cos.gather(1, labels.clamp(min=0).unsqueeze(1))
    return torch.where((labels >= 0).unsqueeze(1), picked, torch.zeros_like(picked))


def arc_target(
    cos_t: Tensor, margin: float | Tensor, *, easy_margin: bool = False, fallback: bool = True
) -> Tensor:
    """(B, 1) cos θ -> unscaled cos(θ + m), m in radians (a float or (B, 1)); exact gradient.

    ``easy_margin``: cos(θ + m) only where cos θ > 0, else cos θ. ``fallback`` (otherwise):
    where θ + m > π use cos θ − m·sin m, so the target keeps decreasing in θ.
    """
    lib = torch if isinstance(margin, Tensor) else math
    cos_m, sin_m, threshold = lib.cos(margin), lib.sin(margin), lib.cos(math.pi - margin)
    sin_t = torch.sqrt(torch.clamp(1.0 - cos_t * cos_t, min=SINE_EPS))
    phi = cos_t * cos_m - sin_t * sin_m
    if easy_margin:
        return torch.where(cos_t > 0, phi, cos_t)
    if fallback:
        return torch.where(cos_t > threshold, phi, cos_t - margin * sin_m)
    return phi


def compute_dtype(t: Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs, float64 for float64 (used by the tests)."""
    return torch.promote_types(t.dtype, torch.float32)


class Margin(nn.Module):
    """Cosines -> logits; owns its running state (buffers) but no class centres.

    ``forward(cos (B, C'), labels (B,), norms (B, 1)) -> (B, C')`` float32 logits, ``labels``
    being each row's target column or −1 where it is not among them, ``norms`` ‖x‖.
    """

    #: True when rows whose target is elsewhere still need cos θ_y (a sharded head adds it).
    needs_target_cosine = False

    def extra_repr(self) -> str:  # the constructor's arguments, as set in __init__
        skip = ("training", "needs_target_cosine")
        return ", ".join(f"{k}={v}" for k, v in vars(self).items() if k[0] != "_" and k not in skip)

    def regularizer(self, x: Tensor) -> Tensor | None:
        """(B, D) local embeddings (float32/64) -> a scalar term to add to the loss, or None."""
        return None


def class_cosine(x: Tensor, weight: Tensor, k: int) -> Tensor:
    """(B, D), (C'·K, D) -> (B, C') cosines, the best of each class's K sub-centres (rows
    c·K + j)."""
    cos = normalized_cosine(x, weight)
    return cos if k == 1 else cos.view(x.shape[0], -1, k).max(dim=2).values


class ClassCentres(nn.Module):
    """One process's class centres ``weight`` (C·K, D); ``forward(x (B, D)) -> (B, C)`` cosines."""

    def __init__(self, embedding_dim: int, num_classes: int, k: int = 1) -> None:
        super().__init__()
        self.embedding_dim, self.num_classes, self.k = embedding_dim, num_classes, k
        self.weight = nn.Parameter(torch.empty(num_classes * k, embedding_dim).normal_(0.0, 0.01))

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, k={self.k}"

    def forward(self, x: Tensor) -> Tensor:
        return class_cosine(x, self.weight.to(x.dtype), self.k)


class MarginHead(nn.Module):
    """Base of all heads: (B, D) embeddings and (B,) labels -> (B, C) logits (or a loss)."""

    #: Children whose state_dict entries sit directly under the head's prefix (``weight``, ``t``).
    flat_state: tuple[str, ...] = ()
    #: True when ``forward`` returns the cross-entropy itself (a scalar), not logits.
    returns_loss = False
    #: Parameters that differ per DDP rank, kept out of DDP's broadcast and all-reduce.
    ddp_ignore: tuple[str, ...] = ()
    #: The (C·K, D) class centres (this rank's rows for a sharded head).
    weight: Tensor

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        name = type(self).__name__
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim, name)
        self.num_classes = check_positive_int("num_classes", num_classes, name)
        if self.flat_state:
            self.register_state_dict_post_hook(_flatten_state)
            self.register_load_state_dict_pre_hook(_nest_state)

    def _check_inputs(self, embeddings: Tensor, labels: Tensor) -> None:
        name = type(self).__name__
        check_batch(name, embeddings, labels, self.embedding_dim)
        if labels.dtype not in (torch.int64, torch.int32):
            raise FacerecError(f"{name}: labels must be int64 class indices, got {labels.dtype}.")

    def regularizer(self, embeddings: Tensor) -> Tensor | None:
        """Extra loss term (a scalar) to add to the cross-entropy, or None (the default)."""
        return None

    def gather_full(self, rows: Tensor) -> Tensor:
        """This rank's rows of a per-centre (C·K, ...) tensor -> all rows (sharded heads)."""
        return rows

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Called with the optimiser that trains the head; nothing by default."""


def _flatten_state(head: MarginHead, state: dict, prefix: str, _meta: dict) -> None:
    for key in [k for k in state if k.startswith(prefix)]:  # in order: the head's are last
        child, _, rest = key[len(prefix) :].partition(".")
        state[prefix + rest if rest and child in head.flat_state else key] = state.pop(key)


def _nest_state(head: MarginHead, state: dict, prefix: str, *_: object) -> None:
    for child in head.flat_state:
        module = head.get_submodule(child)
        own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        for name, _ in own:
            if prefix + name in state:
                state[f"{prefix}{child}.{name}"] = state.pop(prefix + name)


class CosineMarginHead(MarginHead):
    """``margin(centres(x), y, ‖x‖)``: a :class:`Margin` over :class:`ClassCentres` (K per class).

    A named head, ``class ArcFaceHead(CosineMarginHead, margin=ArcFaceMargin)``, takes
    ``(embedding_dim, num_classes, *the margin's arguments*)`` with their names, defaults, types.
    """

    flat_state = ("centres", "margin")

    def __init_subclass__(cls, margin: type[Margin] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if margin is not None:
            cls.__init__ = _named_head_init(cls, margin)  # type: ignore[method-assign]

    def __init__(self, embedding_dim: int, num_classes: int, margin: Margin, k: int = 1) -> None:
        super().__init__(embedding_dim, num_classes)
        k = check_positive_int("k", k, type(self).__name__)
        self.centres = ClassCentres(self.embedding_dim, self.num_classes, k)
        self.margin = margin

    @property
    def weight(self) -> nn.Parameter:
        return self.centres.weight

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        self._check_inputs(embeddings, labels)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = embeddings.to(compute_dtype(embeddings))
            norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
            return self.margin(self.centres(x), labels.long(), norms)

    def regularizer(self, embeddings: Tensor) -> Tensor | None:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self.margin.regularizer(embeddings.to(compute_dtype(embeddings)))


def _named_head_init(cls: type[CosineMarginHead], margin: type[Margin]) -> Callable[..., None]:
    """The named head's ``__init__(self, embedding_dim, num_classes, *margin's arguments*)``."""
    hints = get_type_hints(margin.__init__)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    sizes = [inspect.Parameter(n, kind, annotation=int) for n in ("embedding_dim", "num_classes")]
    own = list(inspect.signature(margin.__init__).parameters.values())
    params = [own[0], *sizes, *(q.replace(annotation=hints[q.name]) for q in own[1:])]

    def __init__(self: CosineMarginHead, embedding_dim: int, num_classes: int, *args, **kwargs):
        CosineMarginHead.__init__(self, embedding_dim, num_classes, margin(*args, **kwargs))

    __init__.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore
    __init__.__annotations__ = {q.name: q.annotation for q in params[1:]} | {"return": None}
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__module__ = cls.__module__
    __init__.__doc__ = margin.__doc__  # its Args are the head's --help
    return __init__
