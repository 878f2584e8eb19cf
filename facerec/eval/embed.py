"""From images to embeddings: the :class:`Embedder` protocol, a PyTorch embedder, the eval loader.

An embedder maps a batch of RGB uint8 images already at its ``input_size`` to raw (not
normalised) embeddings. :func:`embed_images` is the eval loader: it decodes and resizes images in
a small thread pool (OpenCV releases the GIL), one batch ahead of the model, and applies the flip
test (the embedding of an image plus that of its mirror image). Normalisation happens later, when
pairs are scored.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from facerec.data.image import MEAN, STD, ResizeMode, fit_to_size
from facerec.errors import DataError, FacerecError

from .benchmarks import ImageSource


@runtime_checkable
class Embedder(Protocol):
    """Anything that embeds faces.

    ``__call__(images)``: (N, H, W, 3) uint8 RGB at ``input_size`` -> (N, D) float32 raw
    embeddings. ``input_size`` is (height, width); ``resize_mode`` is how images of another size
    are brought to it ("resize" or "center_crop").
    """

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

    Images are put in the model's channel order (RGB, or BGR with ``channel_order="BGR"``),
    normalised as ``(x - mean) / std`` (default 127.5 / 127.5; a scalar or one value per
    channel, in the model's channel order) and run under ``torch.inference_mode`` in eval mode
    (the module's train/eval flags are restored afterwards), ``batch_size`` images at a time.
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
        self.backbone = backbone
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.resize_mode: ResizeMode = resize_mode
        self.channel_order = channel_order
        # (1, 3, 1, 1) per-channel constants in the model's channel order
        self.mean = torch.tensor(np.broadcast_to(np.asarray(mean, np.float32), (3,)).copy())
        self.std = torch.tensor(np.broadcast_to(np.asarray(std, np.float32), (3,)).copy())
        self.mean, self.std = self.mean.view(1, 3, 1, 1), self.std.view(1, 3, 1, 1)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB -> (N, D) float32 raw embeddings."""
        if images.ndim != 4 or images.shape[3] != 3:
            raise DataError(f"images of shape {images.shape}; expected (N, H, W, 3) RGB")
        outs = []
        with eval_mode(self.backbone), torch.inference_mode():
            for s in range(0, images.shape[0], self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images[s : s + self.batch_size]))
                x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
                if self.channel_order == "BGR":
                    x = x.flip(1)
                x = (x - self.mean.to(x.device)) / self.std.to(x.device)
                outs.append(self.backbone(x).float().cpu())
        return torch.cat(outs).numpy() if outs else np.zeros((0, 0), np.float32)


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


def _preprocess_of(module: nn.Module) -> dict:
    pre = getattr(module, "preprocess", None)
    if not isinstance(pre, dict):
        hp = getattr(module, "hparams", {}) or {}
        pre = hp.get("preprocess", hp) if hasattr(hp, "get") else {}
    return dict(pre or {})


def load_checkpoint_embedder(
    path: str | os.PathLike[str],
    device: str = "cpu",
    batch_size: int = 256,
    resize_mode: ResizeMode | None = None,
) -> TorchEmbedder:
    """A facerec Lightning checkpoint as a :class:`TorchEmbedder` of its embedding network.

    Loaded by :func:`facerec.export.checkpoint.load_facerec_checkpoint` (the one loader of
    ``facerec eval``, ``facerec export`` and ``facerec embed``); the input size, resize mode,
    channel order and mean/std come from the checkpoint's stored preprocessing;
    ``resize_mode`` overrides the saved mode.

    Raises:
        DataError: the file is missing or is not a facerec checkpoint.
    """
    from facerec.export.checkpoint import load_facerec_checkpoint

    loaded = load_facerec_checkpoint(path)
    pre = loaded.preprocess
    return TorchEmbedder(
        loaded.backbone.to(device),
        input_size=loaded.input_size,
        device=device,
        batch_size=batch_size,
        resize_mode=resize_mode or pre.get("resize_mode", "resize"),
        mean=pre.get("mean", MEAN),
        std=pre.get("std", STD),
        channel_order=str(pre.get("channel_order", "RGB")),
    )


#: Loader for ``--onnx``: set by facerec.export (``OnnxEmbedder``) or by
#: :func:`register_onnx_loader`; signature ``(path, device, batch_size) -> Embedder``.
_ONNX_LOADER: Callable[[str, str, int], Embedder] | None = None


def register_onnx_loader(loader: Callable[[str, str, int], Embedder]) -> None:
    """Plug in the ONNX embedder factory ``(path, device, batch_size) -> Embedder``."""
    global _ONNX_LOADER
    _ONNX_LOADER = loader


def load_onnx_embedder(
    path: str | os.PathLike[str], device: str = "cpu", batch_size: int = 256
) -> Embedder:
    """An exported ONNX model as an :class:`Embedder`.

    Uses the registered loader, else ``facerec.export.onnx.OnnxEmbedder(path, device=...,
    batch_size=...)``; a clear :class:`FacerecError` while neither exists.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: ONNX model not found; expected a .onnx written by facerec export")
    loader = _ONNX_LOADER
    if loader is None:
        try:
            from facerec.export.onnx import OnnxEmbedder
        except ImportError:
            raise FacerecError(
                "--onnx is not available in this version (facerec.export.onnx.OnnxEmbedder is "
                "missing); evaluate the checkpoint with --checkpoint instead"
            ) from None

        def loader(q: str, d: str, b: int) -> Embedder:
            return OnnxEmbedder(q, device=d, batch_size=b)

    emb = loader(str(p), device, batch_size)
    if not isinstance(emb, Embedder):
        raise FacerecError(f"{p}: the ONNX loader returned no Embedder (needs input_size etc.)")
    return emb


@dataclass
class EmbedStats:
    """One :func:`embed_images` run: images, total and loading seconds, embedding size."""

    num_images: int
    seconds: float
    load_seconds: float
    dim: int

    @property
    def images_per_second(self) -> float:
        return self.num_images / self.seconds if self.seconds > 0 else float("nan")


def load_batch(
    images: ImageSource,
    indices: range | list[int],
    size: tuple[int, int],
    mode: ResizeMode,
    pool: ThreadPoolExecutor | None = None,
) -> np.ndarray:
    """Decode and fit images ``indices``: -> (B, H, W, 3) uint8 RGB."""

    def one(i: int) -> np.ndarray:
        return fit_to_size(images[i], size, mode)

    out = list(pool.map(one, indices)) if pool is not None else [one(i) for i in indices]
    return np.stack(out) if out else np.zeros((0, *size, 3), np.uint8)


def embed_images(
    embedder: Embedder,
    images: ImageSource,
    batch_size: int = 256,
    flip: bool = True,
    num_workers: int = 2,
    stats: list[EmbedStats] | None = None,
) -> np.ndarray:
    """Embed every image of ``images``: -> (M, D) float32 raw embeddings.

    Each image is brought to ``embedder.input_size`` with ``embedder.resize_mode``. With ``flip``
    the result is ``f(x) + f(mirror(x))``. Loading runs in ``num_workers`` threads one batch
    ahead of the model. When ``stats`` is a list, an :class:`EmbedStats` is appended to it.
    """
    n = len(images)
    size, mode = tuple(embedder.input_size), embedder.resize_mode
    t0 = time.perf_counter()
    load_time = 0.0
    chunks: list[np.ndarray] = []
    batches = [range(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    with ThreadPoolExecutor(max(1, num_workers)) as pool, ThreadPoolExecutor(1) as ahead:

        def fetch(r: range) -> tuple[np.ndarray, float]:
            t = time.perf_counter()
            return load_batch(images, r, size, mode, pool), time.perf_counter() - t

        pending = ahead.submit(fetch, batches[0]) if batches else None
        for b in range(len(batches)):
            assert pending is not None
            batch, dt = pending.result()
            load_time += dt
            pending = ahead.submit(fetch, batches[b + 1]) if b + 1 < len(batches) else None
            emb = np.asarray(embedder(batch), dtype=np.float32)
            if flip:
                emb = emb + np.asarray(
                    embedder(np.ascontiguousarray(batch[:, :, ::-1])), np.float32
                )
            if emb.ndim != 2 or emb.shape[0] != batch.shape[0]:
                raise FacerecError(
                    f"the model returned shape {emb.shape} for {batch.shape[0]} images; "
                    "expected (N, D) embeddings"
                )
            chunks.append(emb)
    out = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    if stats is not None:
        stats.append(EmbedStats(n, time.perf_counter() - t0, load_time, int(out.shape[1])))
    return out


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows to unit length: (N, D) -> (N, D) float32 (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


class _Subset:
    """Images ``indices`` of an :class:`ImageSource`, as an ImageSource."""

    def __init__(self, images: ImageSource, indices: np.ndarray) -> None:
        self.images, self.indices = images, indices

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.images[int(self.indices[i])]


def score_benchmark(
    embedder: Embedder,
    images: ImageSource,
    pairs: np.ndarray,
    batch_size: int = 256,
    flip: bool = True,
    num_workers: int = 2,
    stats: list[EmbedStats] | None = None,
) -> np.ndarray:
    """Cosine score of every pair: embeds each image used by ``pairs`` (N, 2) once -> (N,).

    Images no pair uses are not decoded. Embeddings are flip-summed (with ``flip``), then
    L2-normalised, then the two rows of each pair are dotted.
    """
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    used, inverse = np.unique(pairs, return_inverse=True)
    emb = embed_images(embedder, _Subset(images, used), batch_size, flip, num_workers, stats)
    emb = l2_normalize(emb).astype(np.float64)
    inv = inverse.reshape(-1, 2)
    return np.einsum("nd,nd->n", emb[inv[:, 0]], emb[inv[:, 1]])
