"""The torch device a command runs on: ``--device auto`` resolved once for every command."""

from __future__ import annotations

import torch

from facerec.errors import FacerecError


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when available else "cpu"; anything else is checked and returned."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FacerecError(f"device {device!r} asked for but CUDA is not available; use cpu")
    try:
        torch.device(device)
    except RuntimeError:
        raise FacerecError(
            f"device {device!r} is not known; expected cpu, cuda or cuda:N"
        ) from None
    return device
