"""The one FAISS index builder: every kind against exact search, GPU refused without GPU FAISS."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.errors import ConfigError, DataError
from facerec.mining.faiss_index import build_index, faiss_gpu_count, faiss_search


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_kinds_agree_with_exact_search() -> None:
    rows, queries = unit_rows(3000, 16, 0), unit_rows(50, 16, 1)
    exact = np.argsort(-(queries @ rows.T), axis=1, kind="stable")[:, :5]
    _, flat = faiss_search(build_index(rows, "flat", use_gpu=False), queries, 5)
    np.testing.assert_array_equal(flat, exact)
    ivf = build_index(rows, "ivf", use_gpu=False, nprobe=10_000)  # every list: exact
    assert ivf.nprobe == ivf.nlist == min(3000 // 39, int(4 * np.sqrt(3000)))
    np.testing.assert_array_equal(faiss_search(ivf, queries, 5)[1], exact)
    _, hnsw = faiss_search(build_index(rows, "hnsw", use_gpu=False), queries, 5)
    assert (hnsw[:, 0] == exact[:, 0]).mean() >= 0.9


def test_bad_requests_are_refused() -> None:
    with pytest.raises(ConfigError, match="expected one of flat, ivf, hnsw"):
        build_index(unit_rows(4, 2, 0), "lsh")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="non-empty"):
        build_index(np.zeros((0, 4), np.float32))
    if faiss_gpu_count() == 0:
        with pytest.raises(ConfigError, match="no GPU support"):
            build_index(unit_rows(4, 2, 0), use_gpu=True)
