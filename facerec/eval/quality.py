"""Image quality with a model, for ``facerec eval`` / ``facerec doctor`` / ``facerec embed``.

:func:`score_images` runs a :class:`facerec.metrics.quality.QualityScorer` through the one
embedding loop, so images are decoded, resized and skipped exactly as when embedding them.
"""

from __future__ import annotations

import argparse

import numpy as np

from facerec.data.sources import ImageSource
from facerec.inference import Embedder, embed_images
from facerec.metrics.quality import QUALITY_METHODS, QualityScorer, resolve_method


def add_quality_arguments(group: argparse._ArgumentGroup, what: str) -> None:
    """``--quality [METHOD]``, ``--min-quality Q``, ``--quality-passes``, ``--quality-seed``;
    ``what`` says what the quality is used for and what ``--min-quality`` leaves out."""
    group.add_argument(
        "--quality",
        nargs="?",
        const="auto",
        choices=("auto", *QUALITY_METHODS),
        metavar="METHOD",
        help=f"score each image's quality (higher is better) and {what}: auto (= norm, the "
        "raw embedding's norm), norm or stability (experimental: mean cosine of embeddings of "
        "slightly shifted/mirrored/noised copies; ranked degraded ORL copies above originals)",
    )
    group.add_argument(
        "--min-quality",
        type=float,
        metavar="Q",
        help="leave out what has quality below Q (implies --quality) and print how many",
    )
    group.add_argument(
        "--quality-passes",
        type=int,
        default=8,
        metavar="N",
        help="perturbed embeddings per image for the stability quality (default 8)",
    )
    group.add_argument("--quality-seed", type=int, default=0, help="draws the perturbations (0)")


def quality_method(method: str) -> str:
    """``method`` unless it is ``auto``, which is ``norm`` for every model
    (:func:`facerec.metrics.quality.resolve_method` says why)."""
    return resolve_method(method)


def score_images(
    embedder: Embedder,
    images: ImageSource,
    method: str = "stability",
    passes: int = 8,
    seed: int = 0,
    batch_size: int = 64,
    num_workers: int = 2,
    skipped: list[tuple[int, str]] | None = None,
    progress: bool = False,
) -> np.ndarray:
    """(M,) float32 quality of each image of ``images`` (higher is better); ``skipped`` as in
    :func:`facerec.inference.embed_images` (a list: unreadable images left out and listed)."""
    scorer = QualityScorer(embedder, method, passes, seed)
    q = embed_images(
        scorer, images, batch_size, False, num_workers, skipped=skipped, progress=progress
    )
    return q.reshape(-1).astype(np.float32)


__all__ = ["add_quality_arguments", "quality_method", "score_images"]
