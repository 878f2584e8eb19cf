"""Building blocks of the heads: class centres, margins, and the maths kernels they share.

A head is class centres composed with a margin (as insightface's ``CombinedMarginLoss`` with its
FC layer or ``PartialFC_V2(margin_loss=...)``): :class:`ClassCentres` (one process) or the
sharded centres of :mod:`facerec.heads.sharded` own the (C·K, D) matrix and turn embeddings
into cosines; a :class:`Margin` turns cosines, labels and ‖x‖ into logits and owns its running
state (CurricularFace's t, AdaFace's μ and σ, ...). :class:`CosineMarginHead` composes the two;
the named heads (``ArcFaceHead``, ...) are that composition with their paper's margin. Every
head computes in float32 with autocast disabled, whatever the precision of the backbone.

Weights are initialised as insightface's arcface_torch does for its FC layer: normal, mean 0,
std 0.01 (the scale does not matter for the cosine heads, which normalise the centres).
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

__all__ = [
    "SINE_EPS",
    "ClassCentres",
    "CosineMarginHead",
    "Margin",
    "MarginHead",
    "arc_target",
    "check_batch",
    "check_float",
    "check_positive_int",
    "class_cosine",
    "compute_dtype",
    "margin_logits",
    "normalized_cosine",
    "target_cosine",
]

#: Lower clamp of 1 − cos² under the square root in sin θ = sqrt(1 − cos² θ). It keeps the
#: gradient of cos(θ + m) finite (at most sin m / sqrt(SINE_EPS) = 1e4·sin m per unit of cos θ;
#: the true one is infinite at θ = 0) and changes sin θ only for θ < 1e-4 rad. In float32,
#: 1 − cos² is either 0 or above 1.1e-7, so the clamp acts only at |cos θ| = 1 exactly.
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
    """cos[b, j] = <x_b, w_j> / (‖x_b‖·‖w_j‖) without materialising the normalised (C, D) weight.

    The forward is one (B, D) @ (D, C) product and an in-place rescale of its (B, C) output; the
    backward is two products plus rank-one corrections applied in place, so neither pass makes a
    (C, D) temporary beyond the weight gradient itself, and the backward makes one (B, C) buffer.
    """

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
    """Cosines between the rows of ``x`` (B, D) and of ``weight`` (C, D) -> (B, C), input dtype.

    Equal to ``F.normalize(x) @ F.normalize(weight).T`` (norms clamped at 1e-12) with the exact
    gradient, but without the normalised (C, D) copy of the weight in forward or backward.
    """
    return _NormalizedCosine.apply(x, weight)


class _MarginLogits(torch.autograd.Function):
    """logits = scale·clip(cos), then logits[b, y_b] = target_fn(cos[b, y_b], *extras)[b].

    The (B, 1) target function runs on a detached copy of the gathered target cosines under its
    own small autograd graph (as activation checkpointing does), so the (B, C) work is one
    output tensor in forward and one gradient tensor in backward, with no dense gather/scatter
    gradients to accumulate.
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
                # retain the tiny (B, 1) graph so that a retain_graph=True outer backward can
                # run again; it is freed with this node
                grads = torch.autograd.grad(
                    target, wanted, g_target, retain_graph=True, allow_unused=True
                )
        else:  # a target that does not depend on cos or the extras
            grads = tuple(None for _ in wanted)
        grads = [
            g if g is not None else torch.zeros_like(w) for g, w in zip(grads, wanted, strict=True)
        ]
        if ctx.clip is not None:
            # one fused kernel: grad where −clip < cos < clip, else 0 (the gradient of the clamp)
            grad_cos = torch.ops.aten.hardtanh_backward(grad, cos, -ctx.clip, ctx.clip)
            grad_cos.mul_(scale)
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
    """Scaled cosines with each row's target logit computed by ``target_fn``.

    Args:
        cos: (B, C) cosines (of all classes or of one shard of them).
        labels: (B,) int64 column of each row's target in ``cos``, or −1 where the target is not
            among these columns; such rows are ``scale·clip(cos)`` unchanged.
        scale: a float, or a (B, 1) tensor (e.g. ‖x‖).
        target_fn: ``target_fn(cos_t (B, 1), *extras) -> (B, 1)`` target logits, already scaled;
            it gets the unclipped target cosines (of every row; the values of rows with label
            −1 are discarded). It runs under its own small autograd graph: a tensor it reads
            that needs a gradient must be passed in ``extras``; tensors it closes over are
            constants.
        extras: tensors ``target_fn`` also reads, e.g. a (B, 1) margin; gradients flow to them.
        clip: if given, every non-target cosine is clamped to [−clip, clip] (gradient 0 outside).

    Returns:
        (B, C) logits. With a float scale (or one without grad) it makes one (B, C) tensor in
        forward and one in backward; a scale that requires grad falls back to plain autograd.
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
    """cos(θ + m) from cos θ with the ArcFace monotonic fallback; true gradient throughout.

    Args:
        cos_t: (B, 1) target cosines.
        margin: additive angular margin m in radians, a float or a (B, 1) tensor.
        easy_margin: use cos(θ + m) only where cos θ > 0 and cos θ elsewhere.
        fallback: (when not easy_margin) where θ + m > π, i.e. cos θ < cos(π − m), use
            cos θ − m·sin m instead, so the target decreases monotonically in θ.

    Returns:
        (B, 1) unscaled target values.

    cos(θ + m) = cos θ·cos m − sin θ·sin m with sin θ = sqrt(clamp(1 − cos² θ, min=SINE_EPS)).
    """
    if isinstance(margin, Tensor):
        cos_m, sin_m = torch.cos(margin), torch.sin(margin)
        threshold = torch.cos(math.pi - margin)
    else:
        cos_m, sin_m = math.cos(margin), math.sin(margin)
        threshold = math.cos(math.pi - margin)
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

    ``forward(cos (B, C'), labels (B,), norms (B, 1)) -> (B, C')`` float32 logits: ``cos``
    against all classes or some (a shard, a sample), ``labels`` each row's target column or −1
    where it is not among them (no margin), ``norms`` ‖x‖ with its graph.
    """

    #: True when rows whose target is elsewhere still need cos θ_y (CurricularFace's
    #: hard-negative threshold): a sharded head then supplies it as an extra column.
    needs_target_cosine = False

    def extra_repr(self) -> str:  # the constructor's arguments, as set in __init__
        skip = ("training", "needs_target_cosine")
        return ", ".join(f"{k}={v}" for k, v in vars(self).items() if k[0] != "_" and k not in skip)

    def regularizer(self, x: Tensor) -> Tensor | None:
        """(B, D) local embeddings (float32/64) -> a scalar term to add to the loss, or None."""
        return None


def class_cosine(x: Tensor, weight: Tensor, k: int) -> Tensor:
    """(B, D), (C'·K, D) -> (B, C') cosines, the best of each class's K sub-centres (rows c·K + j,
    insightface's and PML's layout); the gradient goes to the maximising sub-centre only."""
    cos = normalized_cosine(x, weight)
    return cos if k == 1 else cos.view(x.shape[0], -1, k).max(dim=2).values


class ClassCentres(nn.Module):
    """One process's class centres ``weight`` (C·K, D), N(0, 0.01²) at init (insightface's).

    ``forward(x (B, D) float32/64) -> (B, C)`` cosines with the centres (the best of K).
    """

    def __init__(self, embedding_dim: int, num_classes: int, k: int = 1) -> None:
        super().__init__()
        self.embedding_dim, self.num_classes, self.k = embedding_dim, num_classes, k
        self.weight = nn.Parameter(torch.empty(num_classes * k, embedding_dim).normal_(0.0, 0.01))

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, k={self.k}"

    def forward(self, x: Tensor) -> Tensor:
        return class_cosine(x, self.weight.to(x.dtype), self.k)


class MarginHead(nn.Module):
    """Base of all heads: (B, D) embeddings and (B,) labels -> (B, C) logits (or a loss).

    Children named in ``flat_state`` keep their state_dict entries directly under the head's
    prefix (``weight``, ``t``: the checkpoint layout from before centres and margins split).
    """

    flat_state: tuple[str, ...] = ()
    #: True when ``forward`` returns the cross-entropy itself (a scalar, e.g. the sharded head's
    #: softmax across ranks) instead of (B, C) logits; the module then uses it as the loss.
    returns_loss = False
    #: Parameters (names under the head) that differ per DDP rank: the module keeps them out of
    #: DDP's broadcast and gradient all-reduce (the sharded head's class centres).
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
        """This rank's rows of a per-centre (C·K, ...) tensor -> all rows (a collective for a
        sharded head); a head in one piece holds them all already."""
        return rows

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Called with the optimiser that trains the head (the sharded head makes its per-row
        state follow the weight into and out of checkpoints); nothing by default."""


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

    Shapes: embeddings (B, D) any float dtype, labels (B,) int64 -> logits (B, C) float32,
    computed in float32 with autocast off. ``weight`` is ``centres.weight``.

    A named head declares its margin, ``class ArcFaceHead(CosineMarginHead,
    margin=ArcFaceMargin)``, and takes ``(embedding_dim, num_classes, *the margin's arguments*)``
    with the margin's names, defaults and types (what a ``class_path`` config reads).
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
        """The (C·K, D) class centres."""
        return self.centres.weight

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """(B, D) raw embeddings, (B,) int64 labels in [0, C) -> (B, C) float32 logits."""
        self._check_inputs(embeddings, labels)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = embeddings.to(compute_dtype(embeddings))
            norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
            return self.margin(self.centres(x), labels.long(), norms)

    def regularizer(self, embeddings: Tensor) -> Tensor | None:
        """The margin's extra loss term of (B, D) embeddings (MagFace's), or None."""
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self.margin.regularizer(embeddings.to(compute_dtype(embeddings)))


def _named_head_init(cls: type[CosineMarginHead], margin: type[Margin]) -> Callable[..., None]:
    """``cls.__init__(self, embedding_dim, num_classes, *margin's arguments*)``, whose signature
    (names, defaults, resolved types) is the margin's after the two sizes."""
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
    return __init__
