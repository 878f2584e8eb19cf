"""Image quality with a model, for ``facerec eval`` / ``facerec doctor`` (issue 24).

:func:`score_images` runs a :class:`facerec.metrics.quality.QualityScorer` through the one
embedding loop, so images are decoded, resized and skipped exactly as when embedding them.
:func:`quality_method` picks ``norm`` for checkpoints trained with a head that ties the norm of
the embedding to quality (MagFace, AdaFace) and ``stability`` otherwise. :func:`benchmark_erc`
gives the error-versus-reject curve of a pair benchmark from its images' qualities.
"""

from __future__ import annotations

import numpy as np

from facerec.data.sources import ImageSource
from facerec.inference import Embedder, embed_images
from facerec.metrics.quality import (
    ErrorRejectCurve,
    QualityScorer,
    error_versus_reject,
    pair_quality,
    resolve_method,
)


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


def benchmark_erc(
    scores: np.ndarray,
    issame: np.ndarray,
    quality: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    far: float = 1e-2,
) -> ErrorRejectCurve:
    """The ERC of a pair benchmark: pair ``k`` is images ``left[k]``, ``right[k]`` with
    similarity ``scores[k]``; its quality is the lower of their two ``quality`` values."""
    q = pair_quality(quality[np.asarray(left)], quality[np.asarray(right)])
    return error_versus_reject(scores, issame, q, far)


__all__ = ["benchmark_erc", "quality_method", "score_images"]
