"""Nearest identities with FAISS: each class centre's k most similar other centres (cosine), for
hard-identity batches (:mod:`facerec.data.hard_identity`).

``index`` (on the CPU): ``"flat"``, exact, fine up to ~100k identities; ``"ivf"``, approximate, for
10⁵–10⁷ (``nprobe`` lists searched); ``"hnsw"``, approximate. Under DDP compute on one rank and
:func:`broadcast_neighbours` the table.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from facerec.base import distributed
from facerec.errors import ConfigError, FacerecError
from facerec.metrics.verification import l2_normalize
from facerec.mining.faiss_index import INDEX_KINDS, IndexKind, build_index, faiss_search


def _as_float32(centres: Tensor | np.ndarray) -> np.ndarray:
    x = centres.detach().float().cpu().numpy() if isinstance(centres, Tensor) else centres
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise FacerecError(f"class centres must be (C, D) with C >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise FacerecError("class centres contain NaN or inf; cannot search neighbours")
    return l2_normalize(x)


def nearest_identities(
    centres: Tensor | np.ndarray,
    k: int,
    index: IndexKind = "flat",
    nprobe: int = 16,
    threads: int | None = None,
) -> np.ndarray:
    """The ``k`` (1 ≤ k < C) nearest other identities of each of the (C, D) ``centres`` (any
    scale), most similar first: (C, k) int64, row c never holding c, padded with -1 where an
    approximate index finds fewer. ``threads``: FAISS OpenMP threads (None: its default).
    """
    if index not in INDEX_KINDS:
        raise ConfigError(f"unknown neighbour index {index!r}; expected one of {INDEX_KINDS}")
    x = _as_float32(centres)
    c = x.shape[0]
    if int(k) != k or not 1 <= k < c:
        raise ConfigError(f"neighbours k must be an integer in [1, {c - 1}], got {k}")
    if threads is not None:
        import faiss

        faiss.omp_set_num_threads(int(threads))
    # on the CPU: the refresh runs beside training, which keeps the GPU
    idx = build_index(x, index, use_gpu=False, nprobe=nprobe, ef_search=max(64, 2 * (k + 1)))
    _, found = faiss_search(idx, x, k + 1)  # (C, k + 1), usually the centre itself first
    return _drop_self(found, k)


def _drop_self(found: np.ndarray, k: int) -> np.ndarray:
    """Remove each row's own index (and -1 padding) from (C, k + 1) results, keep k columns."""
    keep = (found != np.arange(found.shape[0])[:, None]) & (found >= 0)
    order = np.argsort(~keep, axis=1, kind="stable")  # the kept entries first, in their order
    return np.take_along_axis(np.where(keep, found, -1), order, axis=1)[:, :k].copy()


def broadcast_neighbours(
    table: np.ndarray | None, device: torch.device | str = "cpu"
) -> np.ndarray:
    """Rank 0's (C, k) int64 table on every rank (a no-op in a single process); every rank calls
    it, the others may pass None. ``device``: where the collective runs (CUDA for NCCL)."""
    if not distributed.is_distributed():
        if table is None:
            raise FacerecError("broadcast_neighbours: no table in a single process")
        return table
    import torch.distributed as dist

    shape = torch.zeros(2, dtype=torch.int64, device=device)
    if distributed.rank() == 0:
        assert table is not None
        shape[0], shape[1] = table.shape
    dist.broadcast(shape, src=0)
    if distributed.rank() == 0:
        buf = torch.as_tensor(table, dtype=torch.int64).to(device)
    else:
        buf = torch.empty(int(shape[0]), int(shape[1]), dtype=torch.int64, device=device)
    dist.broadcast(buf, src=0)
    return buf.cpu().numpy()
