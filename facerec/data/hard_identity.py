"""Hard-identity batches: P×K batches whose identities come partly from confusable neighbourhoods.

``data.sampler: {class_path: facerec.data.hard_identity.HardIdentityBatches, init_args: {p, k,
min_images, mining: {...}}}``; ``facerec fit`` adds the refresh they need.

:class:`HardIdentitySampler` is a :class:`~facerec.data.samplers.PKSampler` whose identity choice
changes once :class:`facerec.training.refresh.HardIdentityRefresh` sets a neighbour table (each
identity's nearest identities by class centre). One global step (rank r keeps block r):

1. PKSampler's order gives the step's R·P distinct identities, R blocks of P.
2. In each block, ``h = round(hard_fraction·P)`` slots are filled group by group: the block's
   next PK identity (the seed), then its nearest identities not yet in the step, until the group
   holds ``group_size`` or the hard slots are full. The other P − h slots keep their PK
   identities in order, skipping any taken by a group.
3. A slot still empty gets an identity not yet in the step, drawn with the step's generator.

Batches stay P distinct identities × K images, disjoint across the ranks of a step, and a pure
function of (seed, epoch, step, neighbour table); before the first table they are PKSampler's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from facerec.base.options import coerce
from facerec.data.samplers import PKBatches, PKSampler, _check_int
from facerec.errors import ConfigError

#: where the options below stand in a config (for messages)
KEY = "data.sampler.init_args.mining"


@dataclass
class HardIdentityOptions:
    """The mining options of :class:`HardIdentityBatches` (``init_args.mining``).

    every_n_steps: recompute the neighbourhoods every N optimiser steps (0: once per epoch).
    neighbours: nearest identities kept per identity (FAISS k).
    group_size: identities per neighbourhood in a batch (the seed and its nearest).
    hard_fraction: share of the P identities of a batch taken from neighbourhoods (0..1).
    centres: ``head`` (the margin head's class weights), ``embeddings`` (mean embedding of
        ``images_per_identity`` images per identity) or ``auto`` (head if the model has one).
    images_per_identity / embed_batch_size: the embedding pass of ``centres: embeddings``.
    index: FAISS index, ``flat`` (exact), ``ivf`` or ``hnsw`` (approximate, for millions).
    """

    every_n_steps: int = 1000
    neighbours: int = 16
    group_size: int = 4
    hard_fraction: float = 0.5
    centres: Literal["auto", "head", "embeddings"] = "auto"
    images_per_identity: int = 4
    embed_batch_size: int = 256
    index: Literal["flat", "ivf", "hnsw"] = "flat"

    def check(self) -> None:
        """Raise :class:`ConfigError` on an out-of-range option."""
        for name, ok, need in (
            ("every_n_steps", self.every_n_steps >= 0, ">= 0"),
            ("neighbours", self.neighbours >= 1, ">= 1"),
            ("group_size", self.group_size >= 2, ">= 2"),
            ("hard_fraction", 0.0 <= self.hard_fraction <= 1.0, "in [0, 1]"),
        ):
            if not ok:
                raise ConfigError(f"{KEY}.{name} must be {need}, got {getattr(self, name)}")
        if self.centres not in ("auto", "head", "embeddings"):
            raise ConfigError(
                f"{KEY}.centres is {self.centres!r}; expected auto, head or embeddings"
            )
        if self.images_per_identity < 1 or self.embed_batch_size < 1:
            raise ConfigError(f"{KEY}.images_per_identity and embed_batch_size must be >= 1")
        if self.index not in ("flat", "ivf", "hnsw"):
            raise ConfigError(f"{KEY}.index is {self.index!r}; expected flat, ivf or hnsw")


class HardIdentityBatches(PKBatches):
    """P×K batches, ``mining.hard_fraction`` of their identities from FAISS neighbourhoods of the
    class centres, refreshed every ``mining.every_n_steps`` (:class:`HardIdentitySampler`).

    Args:
        p: identities per batch, as :class:`~facerec.data.samplers.PKBatches`.
        k: images per identity.
        min_images: identities with fewer images are not sampled.
        mining: :class:`HardIdentityOptions` (or a dict of them, as YAML gives it).
    """

    def __init__(
        self,
        p: int = 32,
        k: int = 4,
        min_images: int = 2,
        mining: HardIdentityOptions = HardIdentityOptions(),
    ) -> None:
        super().__init__(p, k, min_images)
        self.mining = mining

    def check(self) -> None:
        super().check()
        self.mining = coerce(self.mining, HardIdentityOptions, KEY) or HardIdentityOptions()
        self.mining.check()

    def build(self, labels: np.ndarray, seed: int) -> HardIdentitySampler:
        m, pk = self.mining, (labels, self.p, self.k, self.min_images, seed)
        return HardIdentitySampler(*pk, hard_fraction=m.hard_fraction, group_size=m.group_size)


class HardIdentitySampler(PKSampler):
    """PKSampler whose batches draw ``hard_fraction`` of their identities from neighbourhoods.

    Args:
        labels, p, k, min_images, seed, num_replicas, rank: as :class:`PKSampler`.
        hard_fraction: share of each batch's P identities taken from neighbourhoods, in [0, 1].
        group_size: identities per neighbourhood (the seed plus its nearest), ≥ 2.
    """

    _state_arrays = ("neighbours",)

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        p: int,
        k: int,
        min_images: int = 2,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        hard_fraction: float = 0.5,
        group_size: int = 4,
    ) -> None:
        super().__init__(labels, p, k, min_images, seed, num_replicas, rank)
        if not 0.0 <= hard_fraction <= 1.0:
            raise ConfigError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
        self.group_size = _check_int("group_size", group_size, 2)
        self.hard_fraction = float(hard_fraction)
        self.hard_slots = round(self.hard_fraction * self.p)
        self._classes = np.unique(np.asarray(labels))  # label of each internal identity id
        self._usable_mask = self._counts >= self.min_images
        self._neighbours: np.ndarray | None = None  # (num internal ids, k) internal ids, -1 pad

    def set_neighbours(self, table: np.ndarray | None) -> None:
        """Use ``table`` (C, k) int from now on: row y lists the labels nearest to label y, most
        similar first (-1 and unusable labels are skipped). ``None`` goes back to PK batches.
        Every rank must set the same table."""
        if table is None:
            self._neighbours = None
            return
        t = np.asarray(table)
        if t.ndim != 2 or not np.issubdtype(t.dtype, np.integer):
            raise ConfigError(
                f"neighbour table must be a (C, k) integer array, got {t.shape} {t.dtype}"
            )
        # label -> internal id (-1 for labels this sampler does not know or cannot use)
        to_id = np.full(max(int(self._classes.max()), int(t.max(initial=0))) + 1, -1, np.int64)
        to_id[self._classes] = np.where(self._usable_mask, np.arange(len(self._classes)), -1)
        rows = np.full((len(self._classes), t.shape[1]), -1, dtype=np.int64)
        have = self._classes < t.shape[0]
        src = t[self._classes[have]]
        rows[have] = np.where(src >= 0, to_id[np.maximum(src, 0)], -1)
        self._neighbours = rows

    @property
    def neighbours(self) -> np.ndarray | None:
        """The current table in internal identity ids (None before the first refresh)."""
        return self._neighbours

    def step_identities(self, identities: np.ndarray, step: int) -> np.ndarray:
        """The step's PK identities, regrouped so ``hard_slots`` of each rank's P are
        neighbourhoods (R·P internal ids)."""
        base = super().step_identities(identities, step)
        if self._neighbours is None or self.hard_slots == 0:
            return base
        used = np.zeros(len(self._classes), dtype=bool)
        # pass 1: the hard slots of every block (groups), so that neighbours are claimed first
        blocks: list[tuple[list[int], list[int]]] = []  # (its groups, its PK identities left)
        for block in base.reshape(self.num_replicas, self.p).tolist():
            hard: list[int] = []
            pos = 0
            while len(hard) < self.hard_slots and pos < len(block):
                seed_id = block[pos]
                pos += 1
                if used[seed_id]:
                    continue
                near = (int(nb) for nb in self._neighbours[seed_id] if nb >= 0 and not used[nb])
                group = list(dict.fromkeys([seed_id, *near]))
                group = group[: min(self.group_size, self.hard_slots - len(hard))]
                used[group] = True
                hard += group
            blocks.append((hard, block[pos:]))
        # pass 2: the random slots keep the block's remaining PK identities, skipping taken ones
        out = np.full((self.num_replicas, self.p), -1, dtype=np.int64)
        for r, (hard, left) in enumerate(blocks):
            rest = [i for i in left if not used[i]][: self.p - len(hard)]
            out[r, : len(hard) + len(rest)] = hard + rest
            used[rest] = True
        # pass 3: anything still empty gets an unused usable identity (the step's generator)
        out = out.reshape(-1)
        empty, free = np.flatnonzero(out < 0), np.flatnonzero(self._usable_mask & ~used)
        rng = np.random.default_rng([self.seed, self.epoch, step, 7919])
        out[empty] = rng.choice(free, size=len(empty), replace=False)
        return out


__all__ = ["HardIdentityBatches", "HardIdentityOptions", "HardIdentitySampler"]
