"""The contract every backbone meets: (B, 3, H, W) normalised RGB -> (B, D) raw embeddings."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from facerec.errors import ConfigError


class Backbone(nn.Module):
    """Base class of the embedding networks (backbone + embedding head: what is exported).

    Subclasses set ``embedding_dim`` and ``input_size`` (height, width) and implement
    ``forward`` ((B, 3, H, W) ``(x − input_mean)/input_std`` -> (B, D), not normalised) or
    ``forward_features`` and an embedding ``head``, which the inherited ``forward`` chains.
    """

    embedding_dim: int
    input_size: tuple[int, int]
    head: nn.Module

    #: What the network expects of its input (recorded by ``Preprocess.for_backbone``): mean and
    #: std per channel in pixel units, and the 5-point template of its crops
    #: (``facerec.align.transform.TEMPLATES``). Training feeds (x − 127.5)/127.5 RGB, so a
    #: backbone with other statistics converts inside ``forward`` (as DlibResNet does).
    input_channel_order: str = "RGB"
    input_mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    input_std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    align_template: str = "arcface"
    #: (top-level module name in insightface arcface_torch's network, this one's) pairs.
    insightface_names: tuple[tuple[str, str], ...] = ()

    def preprocessing(self) -> dict[str, Any]:
        """The declared preprocessing (the keys of ``facerec.inference.Preprocess``)."""
        return {
            "input_size": tuple(self.input_size),
            "embedding_dim": int(self.embedding_dim),
            "channel_order": self.input_channel_order,
            "mean": tuple(self.input_mean),
            "std": tuple(self.input_std),
            "align_template": self.align_template,
        }

    def load_insightface_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load a state dict saved by insightface's arcface_torch (strict: torch's error on a
        missing/unexpected key or a shape mismatch), its names mapped by ``insightface_names``."""
        names = dict(self.insightface_names)
        split = ((key.partition("."), value) for key, value in state_dict.items())
        renamed = {names.get(top, top) + dot + rest: value for (top, dot, rest), value in split}
        self.load_state_dict(renamed, strict=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> the trunk's final feature map, which ``head`` embeds."""
        raise NotImplementedError(f"{type(self).__name__} implements neither forward nor this")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, embedding_dim) raw embedding (the shape checked unless traced)."""
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            self.check_input(x)
        return self.head(self.forward_features(x))

    def stages(self) -> list[list[nn.Module]]:
        """The trunk's stages, input side first (the stem in the first, not ``head``), for
        freezing the first N when fine-tuning."""
        raise ConfigError(
            f"{type(self).__name__} does not list its stages; freeze the whole trunk "
            "(model.freeze.stages: null) instead of its first N stages"
        )

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`ConfigError` when ``x`` is not (B, 3, H, W) at the input size."""
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != tuple(self.input_size):
            h, w = self.input_size
            raise ConfigError(
                f"{type(self).__name__} got input of shape {tuple(x.shape)}; expected "
                f"(B, 3, {h}, {w}) — set data.image_size to the model's input size"
            )


def conv_output_size(size: int, stages: int) -> int:
    """Spatial size after ``stages`` 3×3 stride-2 convolutions with padding 1."""
    return -(-size // 2**stages)  # each halves it, rounding up: ceil(size / 2**stages)
