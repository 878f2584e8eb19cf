"""The one FAISS inner-product index builder (cosine for unit rows), on the CPU or a GPU.

* ``flat``: exact (``IndexFlatIP``).
* ``ivf``: ``IndexIVFFlat`` with ``nlist`` ≈ 4·√N lists (at most N/39), trained with k-means
  seed :data:`IVF_SEED` on at most 64·nlist rows drawn with ``numpy`` seed 0, ``nprobe`` lists
  searched (default nlist / 8, at most nlist); exact when nprobe = nlist.
* ``hnsw``: ``IndexHNSWFlat`` (``hnsw_m`` links, ``ef_search``); CPU only.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import numpy as np

from facerec.errors import ConfigError, DataError

IndexKind = Literal["flat", "ivf", "hnsw"]
INDEX_KINDS: tuple[str, ...] = ("flat", "ivf", "hnsw")
IVF_SEED = 1234


def faiss_gpu_count() -> int:
    """Number of GPUs the installed faiss can use (0 for faiss-cpu)."""
    import faiss

    try:
        return int(faiss.get_num_gpus())
    except Exception:  # no get_num_gpus in this build, or it failed
        return 0


@functools.cache
def _gpu_resources() -> Any:
    """One StandardGpuResources for the process (it must outlive every GPU index)."""
    import faiss

    return faiss.StandardGpuResources()


def build_index(
    rows: np.ndarray,
    kind: IndexKind = "flat",
    use_gpu: bool | None = None,
    nlist: int | None = None,
    nprobe: int | None = None,
    hnsw_m: int = 32,
    ef_search: int = 128,
) -> Any:
    """A FAISS inner-product index holding ``rows`` (N, D) float32 (``kind``: see the module
    doc). ``use_gpu``: None = GPU FAISS when available (flat, ivf); True requires it; False never.
    """
    import faiss

    if kind not in INDEX_KINDS:
        raise ConfigError(f"index {kind!r} is not known; expected one of {', '.join(INDEX_KINDS)}")
    x = np.ascontiguousarray(rows, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise DataError(f"embeddings of shape {x.shape}; expected a non-empty (N, D)")
    n, d = x.shape
    gpus = faiss_gpu_count()
    if use_gpu and gpus == 0:
        raise ConfigError("GPU FAISS asked for but the installed faiss has no GPU support")
    gpu = (gpus > 0) if use_gpu is None else bool(use_gpu)
    train = x
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        nlist = nlist or max(1, min(n // 39, int(4 * math.sqrt(n))))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = IVF_SEED
        index.nprobe = min(int(nprobe or max(1, nlist // 8)), nlist)
        if n > 64 * nlist:
            train = x[np.random.default_rng(0).choice(n, 64 * nlist, replace=False)]
    else:
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
        gpu = False
    if gpu:
        index = faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
    if not index.is_trained:
        index.train(train)
    index.add(x)
    return index


def faiss_search(
    index: Any, queries: np.ndarray, k: int, chunk_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k search of (Q, D) ``queries`` in a :func:`build_index` index, ``chunk_size`` at a
    time: ``(scores, ids)``, (Q, k) float32 descending and (Q, k) int64 row indices (-1 where an
    approximate index found fewer); k is clipped to the index size."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(int(k), int(index.ntotal))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(index.hnsw.efSearch, k)
    scores = np.empty((q.shape[0], k), np.float32)
    ids = np.empty((q.shape[0], k), np.int64)
    for s in range(0, q.shape[0], chunk_size):
        scores[s : s + chunk_size], ids[s : s + chunk_size] = index.search(q[s : s + chunk_size], k)
    return scores, ids
