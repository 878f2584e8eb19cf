"""Scoring verification pairs with an embedder: each image embedded once, cosine per pair; and
the flags every command that runs a model on images shares."""

from __future__ import annotations

import argparse

import numpy as np

from facerec.data.sources import ImageSource, SubsetImages
from facerec.inference import Embedder, EmbedStats, embed_images, l2_normalize


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
    emb = embed_images(embedder, SubsetImages(images, used), batch_size, flip, num_workers, stats)
    emb = l2_normalize(emb).astype(np.float64)
    inv = inverse.reshape(-1, 2)
    return np.einsum("nd,nd->n", emb[inv[:, 0]], emb[inv[:, 1]])


def add_model_run_arguments(group: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--resize-mode`` and ``--device``, as ``eval``, ``embed`` and ``verify`` take them."""
    group.add_argument(
        "--resize-mode",
        choices=("resize", "center_crop"),
        help="for images not at the model's input size (default: the model's)",
    )
    group.add_argument(
        "--device",
        default="auto",
        help="auto (default: cuda when available, else cpu), cpu, cuda or cuda:N",
    )
