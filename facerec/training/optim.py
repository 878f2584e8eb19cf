"""Optimiser and learning-rate schedule: linear warm-up, then polynomial or cosine decay."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from facerec.errors import ConfigError

OptimizerName = Literal["sgd", "adamw"]
ScheduleName = Literal["poly", "cosine", "constant"]


def build_optimizer(
    params: list[nn.Parameter] | list[dict],
    name: OptimizerName,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> torch.optim.Optimizer:
    """SGD with momentum (the published recipes) or AdamW."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"model.optimizer is {name!r}; expected 'sgd' or 'adamw'")


def lr_factor(
    step: int,
    total_steps: int,
    warmup_steps: int,
    schedule: ScheduleName,
    power: float = 2.0,
    min_factor: float = 0.0,
) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based).

    Warm-up rises linearly from 1/warmup_steps to 1 over ``warmup_steps``; then ``poly`` decays
    as (1 − progress)^power (insightface's PolyScheduler uses power 2), ``cosine`` as
    ½(1 + cos(π·progress)), and ``constant`` stays at 1. The factor never drops below
    ``min_factor``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if schedule == "poly":
        f = (1.0 - progress) ** power
    elif schedule == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ConfigError(f"model.lr_schedule is {schedule!r}; expected poly, cosine or constant")
    return max(min_factor, f)
