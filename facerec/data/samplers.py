"""Samplers: the P×K identity batch sampler for metric learning.

Use as ``DataLoader(dataset, batch_sampler=PKSampler(dataset_labels, p=..., k=...))``. Under
Lightning with DDP, pass ``use_distributed_sampler=False`` to the Trainer: the sampler shards
by rank itself (and Lightning cannot rebuild a custom batch sampler around a DistributedSampler;
it raises a TypeError otherwise). Lightning calls ``set_epoch`` on ``loader.sampler`` and on
``loader.batch_sampler.sampler`` only, so :attr:`PKSampler.sampler` forwards it to the sampler.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from facerec import distributed
from facerec.errors import ConfigError


class _EpochForwarder:
    """Found by Lightning at ``batch_sampler.sampler``: forwards ``set_epoch`` to the PKSampler."""

    def __init__(self, owner: PKSampler) -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class PKSampler(Sampler[list[int]]):
    """Batch sampler: every batch holds exactly P identities × K images (dataset indices).

    Rules, per epoch:

    * Identities with fewer than ``min_images`` images are skipped; the rest are *usable*.
    * The usable identities are shuffled (seeded by ``seed`` and the epoch) and dealt out in
      global steps of ``num_replicas × p`` distinct identities; rank r takes the r-th block of
      ``p`` in each step, so within a step the ranks hold disjoint identities, and every rank
      yields the same number of batches, ``ceil(U / (num_replicas·p))`` for U usable identities.
      Every usable identity is visited once per epoch; to fill the last step, identities from the
      start of that epoch's order are visited a second time (never twice within one step).
    * For each identity in a batch, K of its images are drawn: without replacement when it has
      at least K images, otherwise all of its images plus K − n drawn again with replacement.
    * Batches are lists of ``p·k`` dataset indices, identity by identity (K consecutive each).
    * Deterministic for (seed, epoch, num_replicas, rank): call :meth:`set_epoch` each epoch
      (Lightning's loops do, through :attr:`sampler`); a different epoch gives a different
      order and different draws.

    Resuming mid-epoch: :meth:`state_dict` records the epoch and how many batches this sampler has
    handed out in it; after :meth:`load_state_dict` the next iteration of that epoch yields only
    the remaining batches, identical to those of an uninterrupted run. A DataLoader with workers
    prefetches batch indices ahead of training, so the caller should store the number of batches
    actually trained as ``batches_yielded`` when that is known.

    Args:
        labels: identity label of each dataset item, (N,) integers.
        p: identities per batch (per rank).
        k: images per identity.
        min_images: identities with fewer images are skipped (≥ 1).
        seed: base seed (≥ 0).
        num_replicas: number of ranks; ``None`` → :func:`facerec.distributed.world_size`.
        rank: this rank; ``None`` → :func:`facerec.distributed.rank`.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        p: int,
        k: int,
        min_images: int = 2,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__()
        labels_arr = np.asarray(labels)
        if labels_arr.ndim != 1 or labels_arr.size == 0:
            raise ConfigError(
                f"PKSampler needs a non-empty 1-D sequence of labels, got shape {labels_arr.shape}"
            )
        if not np.issubdtype(labels_arr.dtype, np.integer):
            raise ConfigError(f"PKSampler needs integer labels, got dtype {labels_arr.dtype}")
        for name, value, low in (("p", p, 1), ("k", k, 1), ("min_images", min_images, 1)):
            if int(value) != value or value < low:
                raise ConfigError(f"PKSampler {name} must be an integer >= {low}, got {value}")
        if int(seed) != seed or seed < 0:
            raise ConfigError(f"PKSampler seed must be a non-negative integer, got {seed}")
        num_replicas = distributed.world_size() if num_replicas is None else num_replicas
        rank = distributed.rank() if rank is None else rank
        if num_replicas < 1:
            raise ConfigError(f"PKSampler num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ConfigError(f"PKSampler rank must be in [0, {num_replicas}), got {rank}")

        _, inverse, counts = np.unique(labels_arr, return_inverse=True, return_counts=True)
        self._order = np.argsort(inverse, kind="stable")  # dataset indices grouped by identity
        self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._counts = counts
        self._usable = np.flatnonzero(counts >= min_images)  # identity ids (into counts)
        needed = p * num_replicas
        if len(self._usable) < needed:
            raise ConfigError(
                f"PKSampler needs at least p × num_replicas = {p} × {num_replicas} = {needed} "
                f"identities with >= min_images={min_images} images, but the labels have "
                f"{len(self._usable)} ({len(counts)} identities, "
                f"{len(counts) - len(self._usable)} skipped for too few images); lower p or "
                "min_images"
            )
        self.p, self.k, self.min_images, self.seed = int(p), int(k), int(min_images), int(seed)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.batch_size = self.p * self.k
        self.num_identities = len(self._usable)
        self._steps = math.ceil(self.num_identities / needed)
        self.epoch = 0
        self.sampler = _EpochForwarder(self)  # where Lightning looks for set_epoch
        self._start = 0  # batches of the current epoch to skip on the next iteration
        self._yielded = 0  # batches of the current epoch handed out so far

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        return self._steps

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; a new epoch starts from its first batch (a resumed one does not)."""
        if epoch < 0:
            raise ConfigError(f"PKSampler epoch must be >= 0, got {epoch}")
        if epoch != self.epoch:
            self._start = 0
            self._yielded = 0
        self.epoch = int(epoch)

    def _epoch_identities(self) -> np.ndarray:
        """This epoch's identity order, padded to steps·num_replicas·p: (steps·R·p,) ids."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = self._usable[rng.permutation(self.num_identities)]
        pad = self._steps * self.num_replicas * self.p - self.num_identities
        return np.concatenate([order, order[:pad]])

    def _draw(self, identity: int, rng: np.random.Generator) -> np.ndarray:
        """K dataset indices of ``identity``: (k,) int64."""
        start, count = self._starts[identity], self._counts[identity]
        images = self._order[start : start + count]
        if count >= self.k:
            return rng.choice(images, size=self.k, replace=False)
        return np.concatenate(
            [rng.permutation(images), rng.choice(images, size=self.k - count, replace=True)]
        )

    def __iter__(self) -> Iterator[list[int]]:
        identities = self._epoch_identities()
        start, self._start = self._start, 0
        self._yielded = start
        step_size = self.num_replicas * self.p
        for step in range(start, self._steps):
            offset = step * step_size + self.rank * self.p
            rng = np.random.default_rng([self.seed, self.epoch, step, self.rank])
            batch = np.concatenate(
                [self._draw(int(i), rng) for i in identities[offset : offset + self.p]]
            )
            self._yielded = step + 1
            yield batch.tolist()

    def state_dict(self) -> dict[str, Any]:
        """Epoch, batches handed out in it, and the settings a resume must match."""
        return {
            "epoch": self.epoch,
            "batches_yielded": self._yielded,
            "seed": self.seed,
            "p": self.p,
            "k": self.k,
            "min_images": self.min_images,
            "num_replicas": self.num_replicas,
            "num_identities": self.num_identities,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue ``state["epoch"]`` after ``state["batches_yielded"]`` batches.

        Raises :class:`ConfigError` when the state was saved with different settings (seed, p, k,
        min_images, num_replicas, or labels with a different number of usable identities).
        """
        for key in ("seed", "p", "k", "min_images", "num_replicas", "num_identities"):
            if key in state and state[key] != getattr(self, key):
                raise ConfigError(
                    f"PKSampler state was saved with {key}={state[key]}, but this sampler has "
                    f"{key}={getattr(self, key)}; resume with the same settings"
                )
        epoch, done = int(state["epoch"]), int(state["batches_yielded"])
        if epoch < 0 or not 0 <= done <= self._steps:
            raise ConfigError(
                f"PKSampler state has epoch={epoch}, batches_yielded={done}; expected epoch >= 0 "
                f"and 0 <= batches_yielded <= {self._steps}"
            )
        self.epoch, self._start, self._yielded = epoch, done, done
