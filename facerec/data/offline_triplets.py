"""Batches of offline-selected triplets (FaceNet): (anchor, positive, negative) image indices.

``data.sampler: {class_path: facerec.data.offline_triplets.OfflineTripletBatches, init_args:
{triplets_per_batch, mining: {...}}}``; ``facerec fit`` adds the refresh they need.

:class:`OfflineTripletSampler` yields ``T`` triplets per batch as ``[a₀, p₀, n₀, a₁, …]`` (3·T
dataset indices) from a pool that :class:`facerec.training.refresh.OfflineTripletRefresh`
replaces every N steps (:func:`facerec.mining.offline.select_triplets`). Per global step s of
epoch e, R·T pool rows are drawn with a generator seeded by (seed, e, s) (without replacement
when the pool is large enough) and rank r keeps rows [r·T, (r + 1)·T). While the pool is empty
the triplets are random: two images of an identity and one of another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from facerec.base.options import coerce
from facerec.data.samplers import (
    Batches,
    _check_int,
    _check_ranks,
    _check_seed,
    _ResumableBatchSampler,
    check_count,
)
from facerec.errors import ConfigError

#: where the options below stand in a config (for messages)
KEY = "data.sampler.init_args.mining"


@dataclass
class OfflineTripletOptions:
    """Offline triplet selection: the ``mining`` options of :class:`OfflineTripletBatches`.

    every_n_steps: select new triplets every N optimiser steps (0: once per epoch).
    identities / images_per_identity: the random subset embedded for each selection.
    selection: ``semi_hard`` (FaceNet's band d_ap < d_an < d_ap + margin) or ``hard``.
    margin / distance: the band's α and the distance (FaceNet: squared Euclidean, 0.2).
    search_k: candidate negatives per anchor in the FAISS search.
    embed_batch_size: images per forward pass of the embedding pass.
    """

    every_n_steps: int = 1000
    identities: int = 1000
    images_per_identity: int = 10
    selection: Literal["semi_hard", "hard"] = "semi_hard"
    margin: float = 0.2
    distance: Literal["squared_euclidean", "euclidean", "cosine"] = "squared_euclidean"
    search_k: int = 200
    embed_batch_size: int = 256

    def check(self) -> None:
        """Raise :class:`ConfigError` on an out-of-range option."""
        for name in ("identities", "search_k", "embed_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{KEY}.{name} must be >= 1, got {getattr(self, name)}")
        if self.images_per_identity < 2:
            raise ConfigError(
                f"{KEY}.images_per_identity must be >= 2 (anchor and positive), got "
                f"{self.images_per_identity}"
            )
        if self.every_n_steps < 0:
            raise ConfigError(f"{KEY}.every_n_steps must be >= 0, got {self.every_n_steps}")
        if self.selection not in ("semi_hard", "hard"):
            raise ConfigError(f"{KEY}.selection is {self.selection!r}; expected semi_hard or hard")
        if self.margin < 0:
            raise ConfigError(f"{KEY}.margin must be >= 0, got {self.margin}")


class OfflineTripletBatches(Batches):
    """Batches of T offline-selected triplets, 3·T images (:class:`OfflineTripletSampler`); the
    pool is selected anew every ``mining.every_n_steps`` steps.

    Args:
        triplets_per_batch: T, triplets per batch and process.
        mining: :class:`OfflineTripletOptions` (or a dict of them, as YAML gives it).
    """

    def __init__(
        self, triplets_per_batch: int = 32, mining: OfflineTripletOptions = OfflineTripletOptions()
    ) -> None:
        self.triplets_per_batch, self.mining = triplets_per_batch, mining

    def check(self) -> None:
        name = f"data.sampler {type(self).__name__}"
        t = check_count(name, "triplets_per_batch", self.triplets_per_batch, 1)
        self.triplets_per_batch, self.batch_size = t, 3 * t
        self.mining = coerce(self.mining, OfflineTripletOptions, KEY) or OfflineTripletOptions()
        self.mining.check()

    def build(self, labels: np.ndarray, seed: int) -> OfflineTripletSampler:
        return OfflineTripletSampler(labels, self.triplets_per_batch, seed=seed)


class OfflineTripletSampler(_ResumableBatchSampler):
    """Batch sampler of T triplets (3·T dataset indices) from the current offline pool.

    Args:
        labels: identity of each dataset item, (N,) integers.
        triplets_per_batch: T, triplets per batch per rank.
        seed, num_replicas, rank: as :class:`~facerec.data.samplers.PKSampler`.
    """

    _resume_keys = ("seed",)
    _state_arrays = ("pool",)

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        triplets_per_batch: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__()
        y = np.asarray(labels)
        if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.integer):
            raise ConfigError(f"OfflineTripletSampler needs 1-D integer labels, got {y.shape}")
        self.t = _check_int("triplets_per_batch", triplets_per_batch, 1)
        self.num_replicas, self.rank = _check_ranks("OfflineTripletSampler", num_replicas, rank)
        counts = self._group(y)
        if not (counts >= 2).any() or len(counts) < 2:
            raise ConfigError(
                "offline triplets need at least one identity with >= 2 images and 2 identities"
            )
        self.labels, self.batch_size = y, 3 * self.t
        self.seed = _check_seed("OfflineTripletSampler", seed)
        self._anchor_ids = np.flatnonzero(counts >= 2)
        per_step = self.num_replicas * self.batch_size
        self._steps = max(1, len(y) // per_step)  # N // (R·3T), as a shuffled loader with drop_last
        self._pool = np.zeros((0, 3), dtype=np.int64)

    def set_triplets(self, triplets: np.ndarray) -> None:
        """Replace the pool with ``triplets`` (M, 3) dataset indices (a, p, n); M may be 0."""
        t = np.asarray(triplets, dtype=np.int64).reshape(-1, 3)
        if len(t) and (t.min() < 0 or t.max() >= len(self.labels)):
            raise ConfigError("offline triplets index outside the dataset")
        self._pool = t

    @property
    def pool(self) -> np.ndarray:
        """The current (M, 3) pool of dataset-index triplets."""
        return self._pool

    def _random_triplets(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((n, 3), dtype=np.int64)
        for i, c in enumerate(rng.choice(self._anchor_ids, size=n)):
            out[i, :2] = rng.choice(self._images[c], size=2, replace=False)
            other = rng.integers(len(self._counts) - 1)
            other = other + (other >= c)
            out[i, 2] = self._images[other][rng.integers(self._counts[other])]
        return out

    def _epoch_plan(self) -> None:
        return None  # each step's triplets are drawn from the pool as the step comes

    def _batch(self, plan: None, step: int) -> list[int]:
        """Rank r's rows of the step's (R·T, 3) triplets, flattened."""
        rng = np.random.default_rng([self.seed, self.epoch, step])
        need, m = self.num_replicas * self.t, len(self._pool)
        if m == 0:
            step_triplets = self._random_triplets(need, rng)
        else:
            step_triplets = self._pool[rng.choice(m, size=need, replace=m < need)]
        return step_triplets[self.rank * self.t : (self.rank + 1) * self.t].reshape(-1).tolist()


__all__ = ["OfflineTripletBatches", "OfflineTripletOptions", "OfflineTripletSampler"]
