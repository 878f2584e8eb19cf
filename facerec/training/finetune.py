"""Fine-tuning controls of :class:`~facerec.training.module.FaceRecognitionModule`: per-part
learning rates and freezing (part or all of the backbone, for the first K steps or the whole run).

The parts of a model: the backbone's **trunk** (everything of ``model.backbone`` except its
embedding head), its **embedding** head (``backbone.head``: BN/Dropout/Linear/BN1d of IResNet, the
GDC head of MobileFaceNet), the margin **head** (``model.head``), and **other** trained parameters
(CenterLoss centres, a distillation projection) at the base rate.

Freezing is exact: frozen parameters get no update at all (no gradient step, no momentum, no
weight decay), and the BatchNorm layers of the frozen part keep their running statistics
(evaluation mode) while frozen. Frozen for the whole run, the parameters stop requiring
gradients (no backward through them); frozen for the first K steps, they stay in the optimiser
and in DDP's gradient reduction and only their gradients are dropped before each step, so they
train normally from step K on, on every rank alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from facerec.errors import ConfigError


@dataclass
class LrMultipliers:
    """Learning rate of each part, as a multiple of the module's ``lr``.

    ``backbone``: the trunk; ``embedding``: the backbone's embedding head; ``head``: the margin
    head. E.g. ``{backbone: 0.1, embedding: 1.0, head: 10.0}`` to fine-tune a pre-trained
    network gently with a new margin head. 0 keeps a part's weights (weight decay included).
    """

    backbone: float = 1.0
    embedding: float = 1.0
    head: float = 1.0


@dataclass
class FreezeOptions:
    """Which part of the backbone to freeze, and for how long.

    ``stages``: freeze the first N stages of the trunk (the stem belongs to the first; IResNet,
    the torchvision ResNets and MobileFaceNet have 4); null freezes the whole trunk.
    ``embedding``: freeze the backbone's embedding head too. ``steps``: train the frozen part
    again from this optimiser step on; 0 keeps it frozen for the whole run.
    """

    stages: int | None = None
    embedding: bool = False
    steps: int = 0


def _trunk_and_embedding(backbone: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    head = getattr(backbone, "head", None)
    emb_ids = {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()
    emb = [p for p in backbone.parameters() if id(p) in emb_ids]
    trunk = [p for p in backbone.parameters() if id(p) not in emb_ids]
    return trunk, emb


def param_groups(model: nn.Module, mult: LrMultipliers | None, lr: float) -> list[dict]:
    """Optimiser parameter groups of ``model`` (a FaceRecognitionModule) at ``lr`` × multiplier.

    Groups, in this order, each only if it has trainable parameters: ``backbone`` (the trunk),
    ``embedding``, ``head`` (the margin head), ``other``; each dict has ``params``, ``lr`` and
    ``name``. Parameters that do not require gradients are left out.
    """
    mult = mult or LrMultipliers()
    for part in ("backbone", "embedding", "head"):
        if getattr(mult, part) < 0:
            raise ConfigError(f"model.lr_multipliers.{part} is negative; expected >= 0")
    backbone = model.backbone  # type: ignore[attr-defined]
    trunk, emb = _trunk_and_embedding(backbone)
    margin = getattr(model, "head", None)
    head = list(margin.parameters()) if isinstance(margin, nn.Module) else []
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


class Freezer:
    """Freeze part of a backbone as :class:`FreezeOptions` says.

    Call :meth:`setup` once the weights are loaded (before the optimiser and DDP are built),
    :meth:`train_batch_start` before each training batch and :meth:`before_optimizer_step`
    between backward and the optimiser step, with the global step.
    """

    def __init__(self, backbone: nn.Module, options: FreezeOptions) -> None:
        if options.steps < 0:
            raise ConfigError(f"model.freeze.steps is {options.steps}; expected >= 0")
        self.options = options
        modules: list[nn.Module] = []
        if options.stages is None:
            head = getattr(backbone, "head", None)
            inside = {id(m) for m in head.modules()} if isinstance(head, nn.Module) else set()
            modules = [m for m in backbone.children() if id(m) not in inside]
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
        self.modules = modules
        ids: set[int] = set()
        self.params: list[nn.Parameter] = []
        for m in modules:
            for p in m.parameters():
                if id(p) not in ids and p.requires_grad:  # e.g. the BN1d weight fixed at 1 stays
                    ids.add(id(p))
                    self.params.append(p)
        self._modes: list[bool] | None = None
        self.batchnorms = [
            b
            for m in modules
            for b in m.modules()
            if isinstance(b, nn.modules.batchnorm._BatchNorm)
        ]

    def frozen(self, step: int) -> bool:
        """Whether the part is frozen at optimiser step ``step``."""
        return self.options.steps == 0 or step < self.options.steps

    def setup(self) -> None:
        """For a whole-run freeze, stop the frozen parameters from requiring gradients."""
        if self.options.steps == 0:
            for p in self.params:
                p.requires_grad_(False)

    def train_batch_start(self, step: int) -> None:
        """Keep the frozen part's BatchNorm statistics (eval mode) while frozen; once unfrozen,
        give them back the mode they had before (train, or eval under FreezeBatchNorm)."""
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
