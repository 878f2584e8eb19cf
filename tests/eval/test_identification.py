"""FAISS identification against brute force; CMC and DIR@FAR on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.errors import ConfigError
from facerec.eval.identification import cmc, dir_at_far, identify, rank_identities, torch_search
from facerec.mining.faiss_index import build_index, faiss_search


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute(gallery: np.ndarray, queries: np.ndarray, k: int):
    sim = queries.astype(np.float64) @ gallery.astype(np.float64).T
    ids = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sim, ids, 1), ids


def test_flat_faiss_and_chunked_torch_equal_brute_force():
    rng = np.random.default_rng(0)
    gallery = unit(rng.normal(size=(3000, 64)))
    queries = unit(rng.normal(size=(517, 64)))
    ref_s, ref_i = brute(gallery, queries, 10)
    index = build_index(gallery, "flat", use_gpu=False)
    for chunk in (4096, 100, 7):  # results must not depend on the chunking
        s, i = faiss_search(index, queries, 10, chunk_size=chunk)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_allclose(s, ref_s, atol=1e-5)
    ts, ti = torch_search(gallery, queries, 10, chunk_size=64)
    np.testing.assert_array_equal(ti, ref_i)
    np.testing.assert_allclose(ts, ref_s, atol=1e-5)
    ts, ti = torch_search(gallery, queries, 10, chunk_size=50, gallery_chunk=333)
    np.testing.assert_array_equal(ti, ref_i)
    # k larger than the gallery is clipped
    s, i = faiss_search(build_index(gallery[:5], "flat", use_gpu=False), queries, 10)
    assert i.shape == (517, 5) and set(i[0]) == set(range(5))


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_find_the_true_neighbour(kind):
    rng = np.random.default_rng(1)
    centres = unit(rng.normal(size=(400, 32)))
    gallery = unit(np.repeat(centres, 5, 0) + 0.05 * rng.normal(size=(2000, 32)))
    queries = unit(centres + 0.05 * rng.normal(size=centres.shape))
    _, ref_i = brute(gallery, queries, 1)
    _, i = faiss_search(build_index(gallery, kind, use_gpu=False), queries, 1)
    assert np.mean(i[:, 0] == ref_i[:, 0]) >= 0.95


def test_unknown_index_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="flat, ivf, hnsw"):
        build_index(np.eye(4, dtype=np.float32), "lsh")


def test_rank_identities_and_cmc_by_hand():
    labels = np.array([7, 7, 3, 5, 5])
    # query 0: best images 1 (id 7), 0 (id 7 again), 3 (id 5), 2 (id 3)
    scores = np.array([[0.9, 0.8, 0.5, 0.4], [0.95, 0.7, 0.6, 0.1]], np.float32)
    ids = np.array([[1, 0, 3, 2], [2, 4, 1, 3]])
    s, lab = rank_identities(scores, ids, labels, 3)
    np.testing.assert_array_equal(lab, [[7, 5, 3], [3, 5, 7]])
    np.testing.assert_allclose(s, [[0.9, 0.5, 0.4], [0.95, 0.7, 0.6]])
    # truth: query 0 is id 5 (rank 2), query 1 is id 3 (rank 1)
    np.testing.assert_allclose(cmc(lab, np.array([5, 3])), [0.5, 1.0, 1.0])
    np.testing.assert_allclose(cmc(lab, np.array([9, 3])), [0.5, 0.5, 0.5])


def test_dir_at_far_by_hand():
    nonmated = np.array([0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.0, -0.1, -0.2])  # 10 searches
    mated = np.array([0.95, 0.85, 0.6, 0.45, 0.35])
    correct = np.array([True, True, False, True, True])
    res = dir_at_far(mated, correct, nonmated, (0.1, 0.3, 0.01))
    # FPIR 0.1: one non-mated may pass -> threshold just above 0.5: mated 0.95, 0.85 pass
    assert res[0].dir == pytest.approx(2 / 5) and 0.5 < res[0].threshold < 0.51
    assert res[0].achieved_far == pytest.approx(0.1) and res[0].resolvable
    # FPIR 0.3: three may pass -> threshold just above 0.3: 0.95, 0.85, (0.6 wrong), 0.45, 0.35
    assert res[1].dir == pytest.approx(4 / 5) and res[1].achieved_far == pytest.approx(0.3)
    # FPIR 0.01 < 1/10: not resolvable; threshold above every non-mated score
    assert not res[2].resolvable and res[2].threshold > 0.9
    assert res[2].dir == pytest.approx(1 / 5) and res[2].achieved_far == 0.0


def test_identify_closed_and_open_set():
    rng = np.random.default_rng(2)
    n_ids, d = 50, 32
    centres = unit(rng.normal(size=(n_ids, d)))
    g_lab = np.repeat(np.arange(n_ids), 2)
    gallery = unit(centres[g_lab] + 0.1 * rng.normal(size=(2 * n_ids, d)))
    p_lab = np.r_[np.arange(n_ids), [-1] * 5]  # 5 probes of unenrolled people
    others = unit(rng.normal(size=(5, d)))
    probes = unit(np.r_[centres + 0.1 * rng.normal(size=centres.shape), others])
    distractors = unit(rng.normal(size=(95, d)))
    r = identify(gallery, g_lab, probes, p_lab, distractors, fars=(0.1, 0.01, 0.001))
    assert r.num_mated == 50 and r.num_nonmated == 100
    assert r.rank1 == 1.0 and r.rank5 == 1.0 and r.cmc.shape == (10,)
    assert np.all(np.diff(r.cmc) >= 0)
    assert [x.resolvable for x in r.dir_at_far] == [True, True, False]
    assert r.dir_at_far[0].dir == 1.0  # clusters far apart: all mated pass at FPIR 0.1
    # a gallery with fewer identities than rank 10 still reports a full-length CMC
    r = identify(gallery[:6], g_lab[:6], probes[:3], p_lab[:3], max_rank=10)
    assert r.cmc.shape == (10,) and r.rank10 == 1.0 and r.dir_at_far == []


def slow_identification(gallery, g_lab, probes, p_lab, distractors, max_rank, fars):
    """Closed-set CMC and open-set DIR@FPIR from their definitions, one probe at a time."""
    ids = sorted(set(g_lab.tolist()))
    queries = list(zip(probes, p_lab, strict=True)) + [(d, -1) for d in distractors]
    ranks, mated_top, nonmated_top = [], [], []
    for q, truth in queries:
        # an identity's score is its best gallery image
        per_id = {
            i: max(float(q @ g) for g, lab in zip(gallery, g_lab, strict=True) if lab == i)
            for i in ids
        }
        order = sorted(per_id, key=lambda i: -per_id[i])
        top_id, top_score = order[0], per_id[order[0]]
        if truth in per_id:
            ranks.append(order.index(truth) + 1)
            mated_top.append((top_score, top_id == truth))
        else:
            nonmated_top.append(top_score)
    curve = np.array([np.mean([r <= k for r in ranks]) for k in range(1, max_rank + 1)])
    dirs = []
    for far in fars:
        # the lowest threshold (among all top scores, or above them all) with FPIR <= far
        candidates = sorted({s for s, _ in mated_top} | set(nonmated_top) | {np.inf})
        ok = [t for t in candidates if np.mean([s >= t for s in nonmated_top]) <= far]
        t = min(ok)
        dirs.append(np.mean([c and s >= t for s, c in mated_top]))
    return curve, dirs


def test_identify_equals_a_slow_reference_on_noisy_data():
    rng = np.random.default_rng(7)
    n_ids, d = 30, 16
    centres = unit(rng.normal(size=(n_ids, d)))
    g_lab = np.r_[np.arange(n_ids), np.arange(0, n_ids, 2), np.arange(0, n_ids, 3)]  # 1-3 each
    gallery = unit(centres[g_lab] + 0.2 * rng.normal(size=(g_lab.size, d)))
    p_lab = np.r_[np.arange(n_ids), np.arange(n_ids), [-1] * 6]  # noisy: ranks spread out
    probe_src = np.r_[centres, centres, unit(rng.normal(size=(6, d)))]
    probes = unit(probe_src + 0.2 * rng.normal(size=probe_src.shape))
    distractors = unit(rng.normal(size=(34, d)))
    fars = (0.3, 0.1, 0.05)
    r = identify(gallery, g_lab, probes, p_lab, distractors, fars=fars, chunk_size=7)
    ref_cmc, ref_dir = slow_identification(gallery, g_lab, probes, p_lab, distractors, 10, fars)
    np.testing.assert_allclose(r.cmc, ref_cmc)
    assert 0.2 < r.rank1 < 0.95 and r.rank10 > r.rank1  # the case is not trivial
    assert r.num_mated == 60 and r.num_nonmated == 40
    np.testing.assert_allclose([x.dir for x in r.dir_at_far], ref_dir)
    assert all(x.resolvable for x in r.dir_at_far)
    for x in r.dir_at_far:
        assert x.achieved_far <= x.far
        assert np.mean(r.nonmated_top1_scores >= x.threshold) == pytest.approx(x.achieved_far)


class SpyIndex:
    """A FAISS index that records how many queries each search call got."""

    def __init__(self, index) -> None:
        self.index, self.calls = index, []
        self.ntotal = index.ntotal

    def search(self, q, k):
        self.calls.append(q.shape[0])
        return self.index.search(q, k)


def test_chunked_search_memory_is_bounded():
    rng = np.random.default_rng(3)
    gallery = unit(rng.normal(size=(2000, 32)))
    queries = unit(rng.normal(size=(300, 32)))
    ref_s, ref_i = brute(gallery, queries, 5)
    # FAISS: never more than chunk_size queries (a (chunk, k) result) per call
    spy = SpyIndex(build_index(gallery, "flat", use_gpu=False))
    s, i = faiss_search(spy, queries, 5, chunk_size=64)
    assert max(spy.calls) <= 64 and sum(spy.calls) == 300
    np.testing.assert_array_equal(i, ref_i)
    # torch: every similarity block stays within max_elements, whatever the sizes
    import torch
    from torch.overrides import TorchFunctionMode

    sizes: list[int] = []

    class RecordMatmul(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__):
                sizes.append(out.numel())
            return out

    with RecordMatmul():
        ts, ti = torch_search(gallery, queries, 5, chunk_size=50, max_elements=50 * 300)
    assert sizes and max(sizes) <= 50 * 300
    assert len(sizes) == 6 * 7  # 6 query chunks x 7 gallery chunks of at most 300 rows
    np.testing.assert_array_equal(ti, ref_i)
    np.testing.assert_allclose(ts, ref_s, atol=1e-5)
