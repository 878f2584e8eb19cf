"""Optimiser and learning-rate schedule: linear warm-up, then polynomial or cosine decay."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from facerec.errors import ConfigError

OptimizerName = Literal["sgd", "adamw"]
ScheduleName = Literal["poly", "cosine", "constant"]

#: the module's flat optimiser keys before issue 23 -> their key in :class:`OptimOptions`
FLAT_KEYS: dict[str, str] = {
    "optimizer": "name",
    **{k: k for k in ("lr", "lr_reference_batch", "momentum", "weight_decay", "warmup_epochs")},
    "lr_schedule": "schedule",
    "poly_power": "poly_power",
}


@dataclass
class OptimOptions:
    """Optimiser and learning-rate schedule of a fit (``model.optim``).

    name: ``sgd`` (momentum) or ``adamw``. lr: the rate for a global batch of
    ``lr_reference_batch`` images, scaled linearly to the run's (null: used as it is).
    weight_decay applies to every parameter, as in insightface's recipes. warmup_epochs: linear
    warm-up (fractions allowed). schedule: ``poly`` (power ``poly_power``), ``cosine`` or
    ``constant`` after warm-up.
    """

    name: OptimizerName = "sgd"
    lr: float = 0.1
    lr_reference_batch: int | None = 512
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    schedule: ScheduleName = "poly"
    poly_power: float = 2.0

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first out-of-range option."""
        if self.name not in ("sgd", "adamw"):
            raise ConfigError(f"model.optim.name is {self.name!r}; expected 'sgd' or 'adamw'")
        if self.schedule not in ("poly", "cosine", "constant"):
            raise ConfigError(
                f"model.optim.schedule is {self.schedule!r}; expected poly, cosine or constant"
            )
        for key in ("lr", "momentum", "weight_decay", "warmup_epochs", "poly_power"):
            value = getattr(self, key)  # lr 0 is allowed: a run that only checks loaded weights
            if not value >= 0:  # also NaN
                raise ConfigError(f"model.optim.{key} is {value!r}; expected a number >= 0")
        if self.lr_reference_batch is not None and self.lr_reference_batch < 1:
            raise ConfigError(
                f"model.optim.lr_reference_batch is {self.lr_reference_batch!r}; expected an "
                "integer >= 1 or null"
            )

    def scaled_lr(self, global_batch: int | None) -> float:
        """The learning rate for ``global_batch`` images per step."""
        if self.lr_reference_batch and global_batch:
            return self.lr * global_batch / self.lr_reference_batch
        return self.lr

    def build_optimizer(self, params: list[dict], lr: float) -> torch.optim.Optimizer:
        """SGD with momentum (the published recipes) or AdamW, at ``lr``."""
        if self.name == "sgd":
            return torch.optim.SGD(
                params, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        if self.name == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=self.weight_decay)
        raise ConfigError(f"model.optim.name is {self.name!r}; expected 'sgd' or 'adamw'")


def upgrade_flat_keys(hparams: dict[str, Any]) -> dict[str, Any]:
    """Hyper-parameters saved before ``model.optim`` (flat ``lr``, ``lr_schedule``, ...) with
    those keys moved into the ``optim`` record; others are returned as they are."""
    if hparams.get("optim") is not None or not any(k in hparams for k in FLAT_KEYS):
        return hparams
    out = {k: v for k, v in hparams.items() if k not in FLAT_KEYS}
    out["optim"] = {new: hparams[old] for old, new in FLAT_KEYS.items() if old in hparams}
    return out


def lr_factor(
    step: int,
    total_steps: int,
    warmup_steps: int,
    schedule: ScheduleName,
    power: float = 2.0,
) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based): a linear warm-up from
    1/warmup_steps to 1, then (1 − progress)^power (``poly``; insightface's PolyScheduler),
    ½(1 + cos(π·progress)) (``cosine``) or 1 (``constant``)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if schedule == "poly":
        return (1.0 - progress) ** power
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ConfigError(f"model.optim.schedule is {schedule!r}; expected poly, cosine or constant")
