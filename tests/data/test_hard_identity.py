"""Hard-identity and offline-triplet batch samplers: P×K shape, distinct ranks, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.data.hard_identity import HardIdentityOptions, HardIdentitySampler
from facerec.data.offline_triplets import OfflineTripletOptions, OfflineTripletSampler
from facerec.data.samplers import PKSampler
from facerec.errors import ConfigError
from facerec.mining.neighbours import nearest_identities

P, K, WORLD = 6, 3, 2


def make_labels(ids: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 7, size=ids)  # some identities below K, some below min_images
    labels = np.repeat(np.arange(ids), counts)
    return labels[rng.permutation(len(labels))]


def neighbour_table(ids: int = 40) -> np.ndarray:
    centres = np.random.default_rng(3).standard_normal((ids, 8)).astype(np.float32)
    return nearest_identities(centres, 6)


def ranks(labels, table, hard_fraction=0.5, group_size=3, epoch=0):
    out = []
    for r in range(WORLD):
        s = HardIdentitySampler(
            labels, P, K, num_replicas=WORLD, rank=r, hard_fraction=hard_fraction,
            group_size=group_size, seed=4,
        )  # fmt: skip
        s.set_neighbours(table)
        s.set_epoch(epoch)
        out.append(list(s))
    return out


@pytest.mark.parametrize("hard_fraction", [0.0, 0.5, 1.0])
def test_batches_are_p_by_k_with_distinct_identities_across_two_ranks(hard_fraction) -> None:
    labels, table = make_labels(), neighbour_table()
    batches = ranks(labels, table, hard_fraction)
    assert len(batches[0]) == len(batches[1]) == len(PKSampler(labels, P, K, num_replicas=2))
    usable = {c for c in np.unique(labels) if (labels == c).sum() >= 2}
    for step in range(len(batches[0])):
        seen: set[int] = set()
        for r in range(WORLD):
            b = np.asarray(batches[r][step])
            assert b.shape == (P * K,)
            ids = labels[b].reshape(P, K)
            assert (ids == ids[:, :1]).all()  # K consecutive images of one identity
            assert len(set(ids[:, 0])) == P
            assert set(ids[:, 0]) <= usable
            assert not seen & set(ids[:, 0])  # the ranks of a step hold disjoint identities
            seen |= set(ids[:, 0])


def test_hard_slots_are_neighbourhood_groups() -> None:
    labels, table = make_labels(), neighbour_table()
    usable = {c for c in np.unique(labels) if (labels == c).sum() >= 2}
    batches = ranks(labels, table, hard_fraction=1.0, group_size=3)
    grouped = 0
    for b in batches[0] + batches[1]:
        ids = labels[np.asarray(b)].reshape(P, K)[:, 0]
        for g in range(0, P, 3):
            seed, rest = ids[g], ids[g + 1 : g + 3]
            # the first unused usable neighbours of the seed, in similarity order
            if set(rest) <= set(table[seed]):
                grouped += 1
                order = [n for n in table[seed] if n in usable]
                assert [order.index(n) for n in rest] == sorted(order.index(n) for n in rest)
    assert grouped >= 0.8 * (len(batches[0]) * 2 * P // 3)


def test_without_neighbours_or_hard_fraction_0_it_is_pk_and_it_is_deterministic() -> None:
    labels, table = make_labels(), neighbour_table()
    pk = list(PKSampler(labels, P, K, num_replicas=2, rank=1, seed=4))
    s = HardIdentitySampler(labels, P, K, num_replicas=2, rank=1, seed=4)
    assert list(s) == pk
    assert ranks(labels, table, 0.0)[1] == pk
    assert ranks(labels, table) == ranks(labels, table)
    assert ranks(labels, table) != ranks(labels, table, epoch=1)
    s.set_neighbours(table)
    assert list(s) != pk
    s.set_neighbours(None)
    assert list(s) == pk


def test_hard_identity_errors() -> None:
    labels = make_labels()
    with pytest.raises(ConfigError, match="hard_fraction"):
        HardIdentitySampler(labels, P, K, hard_fraction=1.5)
    with pytest.raises(ConfigError, match="group_size"):
        HardIdentitySampler(labels, P, K, group_size=1)
    with pytest.raises(ConfigError, match="neighbour table"):
        HardIdentitySampler(labels, P, K).set_neighbours(np.zeros(5))
    with pytest.raises(ConfigError, match="neighbours"):
        HardIdentityOptions(neighbours=0).check()
    with pytest.raises(ConfigError, match="images_per_identity"):
        OfflineTripletOptions(images_per_identity=1).check()


def test_offline_sampler_layout_ranks_and_pool() -> None:
    labels = make_labels()
    samplers = [OfflineTripletSampler(labels, 5, num_replicas=2, rank=r, seed=1) for r in (0, 1)]
    assert len(samplers[0]) == len(samplers[1]) == len(labels) // 30
    for s in samplers:  # random triplets before the first selection
        for b in s:
            t = labels[np.asarray(b)].reshape(5, 3)
            assert (t[:, 0] == t[:, 1]).all() and (t[:, 0] != t[:, 2]).all()
            assert (np.asarray(b).reshape(5, 3)[:, 0] != np.asarray(b).reshape(5, 3)[:, 1]).all()
    pool = np.arange(len(labels) // 3 * 3).reshape(-1, 3)  # distinct rows
    assert len(pool) >= 10
    for s in samplers:
        s.set_triplets(pool)
    rows = {tuple(r) for r in pool.tolist()}
    for step, (b0, b1) in enumerate(zip(*samplers, strict=True)):
        t0 = [tuple(x) for x in np.asarray(b0).reshape(5, 3).tolist()]
        t1 = [tuple(x) for x in np.asarray(b1).reshape(5, 3).tolist()]
        assert set(t0) <= rows and set(t1) <= rows
        assert len(set(t0) | set(t1)) == 10, step  # distinct triplets across the two ranks
    assert list(samplers[0]) == list(samplers[0])
    with pytest.raises(ConfigError, match="outside"):
        samplers[0].set_triplets(np.array([[0, 1, len(labels)]]))
    for seed in (-1, 1.5):  # checked up front like every sampler's, not deep inside numpy
        with pytest.raises(ConfigError, match="OfflineTripletSampler seed must be a non-negative"):
            OfflineTripletSampler(labels, 5, seed=seed)
