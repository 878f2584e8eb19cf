"""Offline triplet selection and FAISS neighbourhoods against exhaustive loop references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mining_reference import (
    brute_force_neighbours,
    reference_distance,
    reference_select_triplets,
)

from facerec.errors import ConfigError, FacerecError
from facerec.mining.neighbours import nearest_identities
from facerec.mining.offline import (
    batch_layout_triplets,
    select_triplets,
)


def subset(seed: int, ids: int = 6, per: int = 4, dim: int = 8) -> tuple[torch.Tensor, list[int]]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(ids, dim, generator=g, dtype=torch.float64)
    x = centres.repeat_interleave(per, 0) + 0.9 * torch.randn(ids * per, dim, generator=g)
    labels = np.repeat(np.arange(ids), per)
    perm = torch.randperm(ids * per, generator=g)
    return x[perm], labels[perm.numpy()].tolist()


@pytest.mark.parametrize("distance", ["squared_euclidean", "euclidean", "cosine"])
@pytest.mark.parametrize("selection", ["hard", "semi_hard"])
def test_exhaustive_selection_equals_the_loop_reference(selection: str, distance: str) -> None:
    for seed in range(3):
        x, labels = subset(seed)
        got = select_triplets(x, labels, selection, margin=0.3, distance=distance, search_k=1000)
        ref = reference_select_triplets(x, labels, selection, margin=0.3, distance=distance)
        assert [tuple(map(int, t)) for t in got] == ref
        assert len(ref) > 0


@pytest.mark.parametrize("selection", ["hard", "semi_hard"])
def test_small_search_keeps_only_triplets_that_meet_the_definition(selection: str) -> None:
    x, labels = subset(5, ids=10, per=5)
    full = set(reference_select_triplets(x, labels, selection, margin=0.5))
    got = select_triplets(x, labels, selection, margin=0.5, search_k=8)
    assert len(got) > 0
    xn = x / x.norm(dim=1, keepdim=True)
    for a, p, n in got.tolist():
        assert labels[a] == labels[p] != labels[n] and a != p
        assert (a, p, n) in full  # the same negative the exhaustive definition picks
        d_ap = reference_distance(xn[a], xn[p], "squared_euclidean")
        d_an = reference_distance(xn[a], xn[n], "squared_euclidean")
        if selection == "semi_hard":
            assert d_ap < d_an < d_ap + 0.5
    if selection == "hard":  # every anchor here has a negative among its 8 neighbours
        assert len(got) == len(full)


def test_selection_errors_and_degenerate_inputs() -> None:
    x, labels = subset(0)
    with pytest.raises(ConfigError, match="unknown offline selection"):
        select_triplets(x, labels, "easy")
    with pytest.raises(ConfigError, match="distance"):
        select_triplets(x, labels, "hard", distance="manhattan")
    with pytest.raises(FacerecError, match="labels"):
        select_triplets(x, labels[:-1], "hard")
    assert select_triplets(x[:4], [0, 0, 0, 0], "hard").shape == (0, 3)  # no negatives


def test_batch_layout() -> None:
    a, p, n = batch_layout_triplets(torch.tensor([1, 1, 2, 3, 3, 1]))
    assert a.tolist() == [0, 3] and p.tolist() == [1, 4] and n.tolist() == [2, 5]
    with pytest.raises(FacerecError, match="offline_triplets"):
        batch_layout_triplets(torch.tensor([1, 1, 2, 3]))
    with pytest.raises(FacerecError, match="offline_triplets"):
        batch_layout_triplets(torch.tensor([1, 2, 2]))


def test_flat_neighbours_equal_brute_force_knn() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((300, 16)).astype(np.float32) * rng.uniform(0.5, 2, (300, 1))
    got = nearest_identities(centres, 7)
    ref = brute_force_neighbours(centres, 7)
    assert got.shape == (300, 7) and got.dtype == np.int64
    np.testing.assert_array_equal(got, ref)
    assert not (got == np.arange(300)[:, None]).any()


def test_approximate_indexes() -> None:
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((2000, 16)).astype(np.float32)
    ref = brute_force_neighbours(centres, 5)
    ivf_all = nearest_identities(centres, 5, index="ivf", nprobe=10_000)  # every list: exact
    np.testing.assert_array_equal(ivf_all, ref)
    for index in ("ivf", "hnsw"):
        got = nearest_identities(centres, 5, index=index, nprobe=8)
        recall = np.mean([len(set(g) & set(r)) / 5 for g, r in zip(got, ref, strict=True)])
        assert recall > 0.6, (index, recall)
        assert not (got == np.arange(2000)[:, None]).any()


def test_neighbour_errors() -> None:
    with pytest.raises(ConfigError, match="neighbours k"):
        nearest_identities(np.eye(4, dtype=np.float32), 4)
    with pytest.raises(ConfigError, match="index"):
        nearest_identities(np.eye(4, dtype=np.float32), 2, index="lsh")
    with pytest.raises(FacerecError, match="NaN"):
        nearest_identities(np.full((4, 2), np.nan, dtype=np.float32), 2)
