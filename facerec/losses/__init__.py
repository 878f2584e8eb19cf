"""Losses on ``(embeddings (B, D), labels (B,))`` -> scalar, alone or added to a margin head's:
metric-learning losses (triplet, contrastive) and ``CenterLoss`` (imported on first access).
"""

from __future__ import annotations

from typing import Any

from facerec.losses.base import MetricLoss
from facerec.losses.contrastive import ContrastiveLoss
from facerec.losses.triplet import TripletLoss
from facerec.losses.tripletnet import TripletNetLoss

__all__ = [
    "CenterLoss",
    "ContrastiveLoss",
    "MetricLoss",
    "TripletLoss",
    "TripletNetLoss",
]


def __getattr__(name: str) -> Any:
    # Lazy: facerec.losses.center is another module's; importing this package must not need it.
    if name == "CenterLoss":
        from facerec.losses.center import CenterLoss

        return CenterLoss
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
