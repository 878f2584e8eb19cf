"""The one embedding loop: an :class:`~facerec.data.sources.ImageSource` through an embedder.

Every embedding in facerec (eval, embed, the verification callback, the mining refresh, the
tools) goes through :func:`embed_images`; images decode in threads (OpenCV releases the GIL).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from facerec.data.image import ResizeMode, fit_to_size, image_bar, read_ahead, read_or_error
from facerec.data.sources import ImageSource
from facerec.errors import DataError, FacerecError
from facerec.metrics.verification import l2_normalize

from .embedder import Embedder


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
    bad: list[tuple[int, DataError]] | None = None,
) -> np.ndarray:
    """Decode and fit images ``indices``: -> (B, H, W, 3) uint8 RGB. An image that does not
    read raises its :class:`DataError` (the first in order), or, given a ``bad`` list, is left
    out and ``(index, error)`` appended."""
    read = partial(read_or_error, lambda i: fit_to_size(images[i], size, mode))
    loaded = pool.map(read, indices) if pool is not None else map(read, indices)
    good = []
    for i, r in zip(indices, list(loaded), strict=True):
        if not isinstance(r, DataError):
            good.append(r)
        elif bad is None:
            raise r
        else:
            bad.append((i, r))
    return np.stack(good) if good else np.zeros((0, *size, 3), np.uint8)


def embed_images(
    embedder: Embedder,
    images: ImageSource,
    batch_size: int = 256,
    flip: bool = True,
    num_workers: int = 2,
    stats: list[EmbedStats] | None = None,
    skipped: list[tuple[int, str]] | None = None,
    normalize: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """Embed the M images: -> (M, D) float32, each fitted to ``embedder.input_size`` with
    ``embedder.resize_mode`` here.

    Args:
        flip: return ``f(x) + f(mirror(x))`` (the flip test).
        num_workers: decoding threads, working one batch ahead of the model.
        stats: when a list, an :class:`EmbedStats` is appended to it.
        skipped: the bad-image policy. None: the first image that does not read raises its
            :class:`DataError`. A list: such images are left out of the result (fewer than M
            rows) and ``(index, reason)`` is appended for each.
        normalize: L2-normalise each row last.
    """
    n = len(images)
    size, mode = tuple(embedder.input_size), embedder.resize_mode
    t0 = time.perf_counter()
    load_time = 0.0
    chunks: list[np.ndarray] = []
    batches = [range(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    bar = image_bar(n, "embedding", progress)
    with bar, ThreadPoolExecutor(max(1, num_workers)) as pool:

        def fetch(r: range) -> tuple[np.ndarray, list[tuple[int, DataError]], float]:
            t = time.perf_counter()
            bad: list[tuple[int, DataError]] | None = None if skipped is None else []
            batch = load_batch(images, r, size, mode, pool, bad)
            return batch, bad or [], time.perf_counter() - t

        for rng, (batch, bad, dt) in read_ahead(fetch, batches):
            load_time += dt
            for i, e in bad:  # only with a skipped list: else load_batch raised
                skipped.append((i, str(e)))  # type: ignore[union-attr]
            bar.update(len(rng))
            if not len(batch):
                continue
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
    if normalize:
        out = l2_normalize(out)
    if stats is not None:
        stats.append(EmbedStats(n, time.perf_counter() - t0, load_time, int(out.shape[1])))
    return out


__all__ = ["EmbedStats", "embed_images", "l2_normalize", "load_batch"]
