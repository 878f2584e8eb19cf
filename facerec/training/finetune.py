"""Fine-tuning controls of :class:`~facerec.training.module.FaceRecognitionModule`: per-part
learning rates and freezing (part or all of the backbone, for the first K steps or the whole run).

The parts: the backbone's **trunk**, its **embedding** head (``backbone.head``), the margin
**head** and **other** parameters (CenterLoss centres, a distillation projection). Frozen
parameters get no update at all and the frozen part's BatchNorm statistics stay as loaded.
Frozen for the whole run they stop requiring gradients; frozen for K steps, only their gradients
are dropped before each step, so DDP's reduction is the same on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from facerec.errors import ConfigError


@dataclass
class LrMultipliers:
    """Learning rate of each part as a multiple of ``lr``: ``backbone`` (the trunk),
    ``embedding`` (the backbone's embedding head), ``head`` (the margin head); 0 keeps a part's
    weights (weight decay included)."""

    backbone: float = 1.0
    embedding: float = 1.0
    head: float = 1.0


@dataclass
class FreezeOptions:
    """Which part of the backbone to freeze, and for how long.

    ``stages``: the first N stages of the trunk (the stem belongs to the first); null: the whole
    trunk. ``embedding``: the embedding head too. ``steps``: train the frozen part again from
    this optimiser step on; 0 keeps it frozen for the whole run.
    """

    stages: int | None = None
    embedding: bool = False
    steps: int = 0


def param_groups(model: nn.Module, mult: LrMultipliers | None, lr: float) -> list[dict]:
    """Optimiser parameter groups of ``model`` (a FaceRecognitionModule) at ``lr`` × multiplier:
    ``backbone`` (the trunk), ``embedding``, ``head``, ``other``, each with ``params``, ``lr``
    and ``name``, only if it has parameters that require gradients."""
    mult = mult or LrMultipliers()
    for part in ("backbone", "embedding", "head"):
        if getattr(mult, part) < 0:
            raise ConfigError(f"model.lr_multipliers.{part} is negative; expected >= 0")
    backbone = model.backbone  # type: ignore[attr-defined]
    emb_ids = {id(p) for p in _params(getattr(backbone, "head", None))}
    emb = [p for p in backbone.parameters() if id(p) in emb_ids]
    trunk = [p for p in backbone.parameters() if id(p) not in emb_ids]
    head = _params(getattr(model, "head", None))
    seen = {id(p) for p in (*trunk, *emb, *head)}
    other = [p for p in model.parameters() if id(p) not in seen]
    groups = []
    for name, params, m in (
        ("backbone", trunk, mult.backbone),
        ("embedding", emb, mult.embedding),
        ("head", head, mult.head),
        ("other", other, 1.0),
    ):
        params = [p for p in params if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": lr * m, "name": name})
    return groups


def _params(module: object) -> list[nn.Parameter]:
    """The parameters of ``module`` if it is an ``nn.Module``, else none."""
    return list(module.parameters()) if isinstance(module, nn.Module) else []


class Freezer:
    """Freeze part of a backbone as :class:`FreezeOptions` says: call :meth:`setup` once the
    weights are loaded (before the optimiser and DDP), then the two hooks with the global step."""

    def __init__(self, backbone: nn.Module, options: FreezeOptions) -> None:
        if options.steps < 0:
            raise ConfigError(f"model.freeze.steps is {options.steps}; expected >= 0")
        self.options = options
        if options.stages is None:
            head = getattr(backbone, "head", None)
            inside = {id(m) for m in head.modules()} if isinstance(head, nn.Module) else set()
            modules: list[nn.Module] = [m for m in backbone.children() if id(m) not in inside]
        else:
            stages = backbone.stages()  # type: ignore[operator]
            if not 0 <= options.stages <= len(stages):
                raise ConfigError(
                    f"model.freeze.stages is {options.stages}; {type(backbone).__name__} has "
                    f"{len(stages)} stages (expected 0..{len(stages)}, or null for all)"
                )
            modules = [m for stage in stages[: options.stages] for m in stage]
        if options.embedding and isinstance(getattr(backbone, "head", None), nn.Module):
            modules.append(backbone.head)  # type: ignore[arg-type]
        # each once; a parameter fixed already (e.g. the BN1d weight at 1) is not touched
        unique = {id(p): p for m in modules for p in m.parameters() if p.requires_grad}
        self.params: list[nn.Parameter] = list(unique.values())
        self._modes: list[bool] | None = None
        norm = nn.modules.batchnorm._BatchNorm
        self.batchnorms = [b for m in modules for b in m.modules() if isinstance(b, norm)]

    def frozen(self, step: int) -> bool:
        """Whether the part is frozen at optimiser step ``step``."""
        return self.options.steps == 0 or step < self.options.steps

    def setup(self) -> None:
        """For a whole-run freeze, stop the frozen parameters from requiring gradients."""
        if self.options.steps == 0:
            for p in self.params:
                p.requires_grad_(False)

    def train_batch_start(self, step: int) -> None:
        """Keep the frozen part's BatchNorm layers in eval mode while frozen; then give them back
        the mode they had (train, or eval under FreezeBatchNorm)."""
        if self.frozen(step):
            self._modes = [b.training for b in self.batchnorms]
            for b in self.batchnorms:
                b.eval()
        elif self._modes is not None:
            for b, mode in zip(self.batchnorms, self._modes, strict=True):
                b.train(mode)
            self._modes = None

    def before_optimizer_step(self, step: int) -> None:
        """Drop the frozen parameters' gradients, so the optimiser skips them entirely."""
        if self.frozen(step):
            for p in self.params:
                p.grad = None
