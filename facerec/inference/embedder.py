"""The :class:`Embedder` protocol (embeddings raw unless the preprocessing says
``normalized_output``) and its PyTorch implementation; the onnxruntime one is
:class:`facerec.inference.onnx.OnnxEmbedder`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from facerec.base.device import resolve_device
from facerec.data.image import MEAN, STD, ResizeMode
from facerec.errors import DataError

from .preprocess import Preprocess


@runtime_checkable
class Embedder(Protocol):
    """Anything that embeds faces: (N, H, W, 3) uint8 RGB at ``input_size`` (height, width) ->
    (N, D) float32; ``resize_mode``: how images of another size are brought to it."""

    input_size: tuple[int, int]
    resize_mode: ResizeMode

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the block, then restore its training flags."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes.items():
            m.training = training


class TorchEmbedder:
    """Wrap a backbone ``(B, 3, H, W) float -> (B, D)`` as an :class:`Embedder`.

    Images are put in ``channel_order``, normalised as ``(x - mean) / std`` (a scalar or one value
    per channel, in that order) and run in eval mode under ``torch.inference_mode`` (the train
    flags are restored after), ``batch_size`` at a time. :meth:`from_preprocess` takes these
    from a :class:`Preprocess`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        input_size: tuple[int, int] = (112, 112),
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        resize_mode: ResizeMode = "resize",
        mean: float | Sequence[float] = MEAN,
        std: float | Sequence[float] = STD,
        channel_order: str = "RGB",
    ) -> None:
        if channel_order not in ("RGB", "BGR"):
            raise DataError(f"channel order {channel_order!r} is not known; expected RGB or BGR")
        self.preprocess = Preprocess(input_size, channel_order, mean, std, resize_mode=resize_mode)  # type: ignore[arg-type]
        self.backbone = backbone
        self.input_size = self.preprocess.input_size
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.resize_mode: ResizeMode = resize_mode

    @classmethod
    def from_preprocess(
        cls,
        backbone: nn.Module,
        preprocess: Preprocess,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        resize_mode: ResizeMode | None = None,
    ) -> TorchEmbedder:
        """The embedder of ``backbone`` fed as ``preprocess`` says (``resize_mode`` overrides)."""
        emb = cls(
            backbone,
            input_size=preprocess.input_size,
            device=device,
            batch_size=batch_size,
            resize_mode=resize_mode or preprocess.resize_mode,
            mean=preprocess.mean,
            std=preprocess.std,
            channel_order=preprocess.channel_order,
        )
        for name in ("embedding_dim", "normalized_output", "align_template"):
            setattr(emb.preprocess, name, getattr(preprocess, name))
        return emb

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB -> (N, D) float32 raw embeddings."""
        if images.ndim != 4 or images.shape[3] != 3:
            raise DataError(f"images of shape {images.shape}; expected (N, H, W, 3) RGB")
        outs = []
        dtype = next((p.dtype for p in self.backbone.parameters() if p.is_floating_point()), None)
        with eval_mode(self.backbone), torch.inference_mode():
            for s in range(0, images.shape[0], self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images[s : s + self.batch_size]))
                x = self.preprocess.normalize(x.to(self.device, non_blocking=True))
                if dtype is not None:  # a half-precision network takes half-precision input
                    x = x.to(dtype)
                outs.append(self.backbone(x).float().cpu())
        return torch.cat(outs).numpy() if outs else np.zeros((0, 0), np.float32)


__all__ = ["Embedder", "TorchEmbedder", "eval_mode", "resolve_device"]
