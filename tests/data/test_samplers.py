"""PKSampler, ShuffleBatchSampler, ResumableDataLoader: batches, rank sharding, resume."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from facerec.data.samplers import PKSampler, ResumableDataLoader, ShuffleBatchSampler
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


# ------------------------------------------------------------------- ShuffleBatchSampler
def test_shuffle_global_batch_is_the_same_for_one_and_two_ranks() -> None:
    one = ShuffleBatchSampler(70, 8, seed=5, num_replicas=1, rank=0)
    two = [ShuffleBatchSampler(70, 4, seed=5, num_replicas=2, rank=r) for r in range(2)]
    assert len(one) == len(two[0]) == len(two[1]) == 70 // 8
    for e in (0, 1):
        single = epoch(one, e)
        per_rank = [epoch(s, e) for s in two]
        # step k: rank 0's batch then rank 1's is the one-process batch, in order
        assert [a + b for a, b in zip(*per_rank, strict=True)] == single
        flat = [i for b in single for i in b]
        assert len(set(flat)) == len(flat) == 64  # no repeats; 70 - 64 dropped
        expected = np.random.default_rng([5, e]).permutation(70)[:64].tolist()
        assert flat == expected  # the permutation of (seed, epoch), cut in global batches
    assert epoch(one, 0) != epoch(one, 1)


def test_shuffle_resume_mid_epoch_and_with_another_world_size() -> None:
    two = ShuffleBatchSampler(50, 5, seed=1, num_replicas=2, rank=1)
    full = epoch(two, 3)
    two.set_epoch(3)
    it = iter(two)
    head = [next(it) for _ in range(2)]
    state = two.state_dict()
    assert state["batches_yielded"] == 2 and state["global_batch_size"] == 10
    again = ShuffleBatchSampler(50, 5, seed=1, num_replicas=2, rank=1)
    again.load_state_dict(state)
    again.set_epoch(3)
    assert head + list(again) == full
    # one process with the same global batch continues at the same global step
    one = ShuffleBatchSampler(50, 10, seed=1, num_replicas=1, rank=0)
    one.load_state_dict(state)
    one.set_epoch(3)
    assert [b[5:] for b in one] == full[2:]
    with pytest.raises(ConfigError, match="global_batch_size=10, but this sampler has"):
        ShuffleBatchSampler(50, 4, seed=1, num_replicas=2, rank=0).load_state_dict(state)
    with pytest.raises(ConfigError, match="batches_yielded"):
        again.load_state_dict({"epoch": 0})
    with pytest.raises(ConfigError, match="fewer than one global batch"):
        ShuffleBatchSampler(7, 4, num_replicas=2, rank=0)
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
        ShuffleBatchSampler(7, 0)


def test_resumable_loader_saves_the_batches_trained_not_those_prefetched() -> None:
    data = TensorDataset(torch.arange(40))
    trained = {"n": 0}
    loader = ResumableDataLoader(
        data,
        batch_sampler=ShuffleBatchSampler(40, 4, seed=2, num_replicas=1, rank=0),
        batches_done=lambda: trained["n"],
        num_workers=1,  # the worker runs ahead of training
    )
    full = [b[0].tolist() for b in loader]
    it = iter(loader)
    got = [next(it)[0].tolist() for _ in range(4)]
    trained["n"] = 3  # the fourth batch was fetched but not trained when the checkpoint was made
    state = loader.state_dict()
    assert state["batches_yielded"] == 3
    assert loader.batch_sampler.state_dict()["batches_yielded"] > 3
    del it
    fresh = ResumableDataLoader(
        data, batch_sampler=ShuffleBatchSampler(40, 4, seed=2, num_replicas=1, rank=0)
    )
    fresh.load_state_dict(state)
    assert got[:3] + [b[0].tolist() for b in fresh] == full
    with pytest.raises(ConfigError, match="batch_sampler with state_dict"):
        ResumableDataLoader(data, batch_size=4)
