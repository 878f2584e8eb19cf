"""PKSampler: batch shape, coverage, determinism, rank sharding, min_images, resume."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from facerec.data.samplers import PKSampler
from facerec.errors import ConfigError


def make_labels(seed: int = 0, identities: int = 23) -> np.ndarray:
    """Shuffled labels: identity i has 1 + (i % 7) images, so sizes 1..7 (1 < min_images=2)."""
    labels = np.concatenate([np.full(1 + i % 7, i) for i in range(identities)])
    return np.random.default_rng(seed).permutation(labels)


def epoch(sampler: PKSampler, e: int) -> list[list[int]]:
    sampler.set_epoch(e)
    return list(sampler)


def test_every_batch_is_p_identities_times_k_images() -> None:
    labels = make_labels()
    sampler = PKSampler(labels, p=4, k=3, num_replicas=1, rank=0)
    batches = epoch(sampler, 0)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        assert len(batch) == 12 and all(isinstance(i, int) for i in batch)
        counts = Counter(labels[batch].tolist())
        assert len(counts) == 4 and set(counts.values()) == {3}
        # K consecutive indices per identity
        assert [labels[batch[j]] for j in range(0, 12, 3)] == list(counts)


def test_one_epoch_visits_every_usable_identity_and_skips_small_ones() -> None:
    labels = make_labels()
    sampler = PKSampler(labels, p=4, k=3, min_images=2, num_replicas=1, rank=0)
    seen = Counter(int(labels[b[0 + 3 * j]]) for b in epoch(sampler, 0) for j in range(4))
    usable = {i for i in range(23) if 1 + i % 7 >= 2}
    assert set(seen) == usable  # identities with one image (i % 7 == 0) never appear
    assert sampler.num_identities == len(usable) == 19
    assert len(sampler) == 5  # ceil(19 / 4); the last step repeats 20 - 19 = 1 identity
    assert sum(seen.values()) == 20 and max(seen.values()) == 2
    with_one = PKSampler(labels, p=4, k=3, min_images=1, num_replicas=1, rank=0)
    assert with_one.num_identities == 23


def test_identities_with_fewer_than_k_images_are_drawn_with_replacement() -> None:
    labels = make_labels()
    sampler = PKSampler(labels, p=5, k=4, min_images=2, num_replicas=1, rank=0)
    for e in range(3):
        for batch in epoch(sampler, e):
            for j in range(0, 20, 4):
                group = batch[j : j + 4]
                identity = labels[group[0]]
                assert all(labels[i] == identity for i in group)
                n = int((labels == identity).sum())
                # every image of a small identity appears; large ones have K distinct images
                assert len(set(group)) == min(n, 4)


def test_deterministic_for_seed_and_epoch_and_different_across_epochs() -> None:
    labels = make_labels()
    a = PKSampler(labels, p=4, k=2, seed=7, num_replicas=1, rank=0)
    b = PKSampler(labels, p=4, k=2, seed=7, num_replicas=1, rank=0)
    assert epoch(a, 3) == epoch(b, 3)
    assert epoch(a, 3) == epoch(a, 3)  # re-iterating an epoch replays it
    assert epoch(a, 0) != epoch(a, 1)
    c = PKSampler(labels, p=4, k=2, seed=8, num_replicas=1, rank=0)
    assert epoch(a, 0) != epoch(c, 0)


def test_two_ranks_get_disjoint_identities_and_equal_batch_counts() -> None:
    labels = make_labels(identities=41)
    ranks = [PKSampler(labels, p=3, k=2, num_replicas=2, rank=r) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    usable = {i for i in range(41) if 1 + i % 7 >= 2}
    for e in range(2):
        per_rank = [epoch(s, e) for s in ranks]
        assert len(per_rank[0]) == len(per_rank[1]) == len(ranks[0])
        visited = set()
        for b0, b1 in zip(*per_rank, strict=True):
            ids0, ids1 = set(labels[b0].tolist()), set(labels[b1].tolist())
            assert len(ids0) == len(ids1) == 3
            assert not ids0 & ids1  # disjoint within each step
            visited |= ids0 | ids1
        assert visited == usable
    # as many steps as one process drawing the global batch of 2 × 3 identities
    single = PKSampler(labels, p=6, k=2, num_replicas=1, rank=0)
    assert len(single) == len(ranks[0])


def test_resume_mid_epoch_yields_the_remaining_batches() -> None:
    labels = make_labels(identities=60)
    sampler = PKSampler(labels, p=4, k=2, seed=3, num_replicas=2, rank=1)
    full = epoch(sampler, 5)
    assert len(full) >= 5
    sampler.set_epoch(5)
    it = iter(sampler)
    head = [next(it) for _ in range(3)]
    state = sampler.state_dict()
    assert state["epoch"] == 5 and state["batches_yielded"] == 3
    # a new process (fresh sampler) restores the state; Lightning then calls set_epoch(5)
    resumed = PKSampler(labels, p=4, k=2, seed=3, num_replicas=2, rank=1)
    resumed.load_state_dict(state)
    resumed.set_epoch(5)
    rest = list(resumed)
    assert head + rest == full
    assert resumed.state_dict()["batches_yielded"] == len(full)
    # the next epoch starts from the beginning again, and so does a later pass
    assert epoch(resumed, 6) == epoch(sampler, 6)
    assert len(list(resumed)) == len(full)


def test_resume_state_must_match_the_settings() -> None:
    labels = make_labels()
    state = PKSampler(labels, p=4, k=2, num_replicas=1, rank=0).state_dict()
    with pytest.raises(ConfigError, match="saved with p=4, but this sampler has p=3"):
        PKSampler(labels, p=3, k=2, num_replicas=1, rank=0).load_state_dict(state)
    with pytest.raises(ConfigError, match="batches_yielded"):
        PKSampler(labels, p=4, k=2, num_replicas=1, rank=0).load_state_dict(
            {**state, "batches_yielded": 999}
        )


def test_works_as_a_dataloader_batch_sampler() -> None:
    labels = make_labels()
    data = TensorDataset(torch.arange(len(labels)), torch.as_tensor(labels))
    loader = DataLoader(data, batch_sampler=PKSampler(labels, p=4, k=2, num_replicas=1, rank=0))
    batches = list(loader)
    assert len(batches) == len(loader) == 5
    for idx, lab in batches:
        assert idx.shape == (8,) and torch.equal(lab, torch.as_tensor(labels)[idx])


def test_lightning_sets_the_epoch_through_the_dataloader() -> None:
    data_utils = pytest.importorskip("lightning_fabric.utilities.data")
    labels = make_labels()
    sampler = PKSampler(labels, p=4, k=2, num_replicas=1, rank=0)
    loader = DataLoader(TensorDataset(torch.arange(len(labels))), batch_sampler=sampler)
    data_utils._set_sampler_epoch(loader, 3)  # what the fit loop calls at each epoch start
    assert sampler.epoch == 3
    fresh = PKSampler(labels, p=4, k=2, num_replicas=1, rank=0)
    assert [b[0].tolist() for b in loader] == epoch(fresh, 3)


def test_defaults_come_from_facerec_distributed() -> None:
    sampler = PKSampler(make_labels(), p=4, k=2)
    assert (sampler.num_replicas, sampler.rank) == (1, 0)


def test_configuration_errors() -> None:
    labels = make_labels()
    too_many = r"p × num_replicas = 10 × 2 = 20 identities .* have 19 \(23 identities, 4 skipped"
    with pytest.raises(ConfigError, match=too_many):
        PKSampler(labels, p=10, k=2, num_replicas=2, rank=0)
    with pytest.raises(ConfigError, match="p must be an integer >= 1"):
        PKSampler(labels, p=0, k=2)
    with pytest.raises(ConfigError, match="k must be an integer >= 1"):
        PKSampler(labels, p=2, k=0)
    with pytest.raises(ConfigError, match=r"rank must be in \[0, 2\)"):
        PKSampler(labels, p=2, k=2, num_replicas=2, rank=2)
    with pytest.raises(ConfigError, match="integer labels"):
        PKSampler(labels.astype(float), p=2, k=2)
    with pytest.raises(ConfigError, match="non-empty 1-D"):
        PKSampler([], p=2, k=2)
    with pytest.raises(ConfigError, match="seed"):
        PKSampler(labels, p=2, k=2, seed=-1)
