"""Batch samplers that know the DDP ranks and can resume in the middle of an epoch.

A :class:`Batches` (what ``data.sampler`` names by ``class_path``: :class:`PKBatches` here, the
others beside their samplers) builds its batch sampler once the labels are known; without one,
:class:`ShuffleBatchSampler`. Lightning stores :class:`ResumableDataLoader`'s state in every
checkpoint, so ``--ckpt_path last`` continues with the very next batch.

Under DDP pass ``use_distributed_sampler=False`` to the Trainer (``facerec fit`` does): the
samplers shard by rank themselves. Lightning calls ``set_epoch`` only on ``loader.sampler`` and
``loader.batch_sampler.sampler``, so each batch sampler is its own :attr:`sampler`.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from facerec.base import distributed, lightning_compat
from facerec.data.datasets import label_groups
from facerec.errors import ConfigError

__all__ = [
    "Batches",
    "PKBatches",
    "PKSampler",
    "ResumableDataLoader",
    "ShuffleBatchSampler",
    "check_count",
    "lightning_batches_done",
]


def check_count(owner: str, key: str, value: Any, least: int) -> int:
    """``value`` as an int, or :class:`ConfigError` naming ``owner``'s ``key`` and the bound."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{owner} {key} is {value!r}; expected an integer >= {least}")
    return int(value)


class Batches:
    """How training batches are drawn: the class ``data.sampler`` names by ``class_path``.

    Built when the config is read; the DataModule calls :meth:`check` at once (bad settings are
    refused then, in one line: a check inside the constructor would reach the user wrapped in
    jsonargparse's message about the ``Batches | None`` union) and :meth:`build` once the
    training labels are known. A subclass that needs a mining
    refresh gets it from :func:`facerec.training.refresh.data_callbacks`, which holds the one
    table from batch kind to refresh callback.

    Attributes:
        batch_size: images per batch and process (it replaces ``data.batch_size``).
    """

    batch_size: int

    def check(self) -> None:
        """Raise :class:`ConfigError` on a bad setting; convert option dicts (from YAML)."""
        raise NotImplementedError

    def build(self, labels: np.ndarray, seed: int) -> _ResumableBatchSampler:
        """The batch sampler over dataset items of ``labels`` (N,), seeded by ``seed``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "batch_size")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]


class PKBatches(Batches):
    """P identities × K images per batch (:class:`PKSampler`); the batch holds P·K images.

    Args:
        p: identities per batch (per process).
        k: images per identity.
        min_images: identities with fewer images are left out (>= 1).
    """

    def __init__(self, p: int = 32, k: int = 4, min_images: int = 2) -> None:
        self.p, self.k, self.min_images = p, k, min_images

    def check(self) -> None:
        name = f"data.sampler {type(self).__name__}"
        for key in ("p", "k", "min_images"):
            setattr(self, key, check_count(name, key, getattr(self, key), 1))
        self.batch_size = self.p * self.k

    def build(self, labels: np.ndarray, seed: int) -> PKSampler:
        return PKSampler(labels, self.p, self.k, self.min_images, seed)


def _check_int(what: str, value: Any, least: int, bool_ok: bool = True) -> int:
    """``value`` as an int, or :class:`ConfigError` "``what`` must be an integer >= least"."""
    if (not bool_ok and isinstance(value, bool)) or int(value) != value or value < least:
        raise ConfigError(f"{what} must be an integer >= {least}, got {value}")
    return int(value)


def _check_seed(name: str, seed: Any) -> int:
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"{name} seed must be a non-negative integer, got {seed}")
    return int(seed)


def _check_ranks(name: str, num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    num_replicas = distributed.world_size() if num_replicas is None else num_replicas
    rank = distributed.rank() if rank is None else rank
    if num_replicas < 1:
        raise ConfigError(f"{name} num_replicas must be >= 1, got {num_replicas}")
    if not 0 <= rank < num_replicas:
        raise ConfigError(f"{name} rank must be in [0, {num_replicas}), got {rank}")
    return int(num_replicas), int(rank)


class _ResumableBatchSampler(Sampler[list[int]]):
    """Epoch selection and mid-epoch resume shared by the batch samplers.

    A subclass sets ``_steps`` (batches per epoch on every rank), implements :meth:`_epoch_plan`
    and :meth:`_batch`, and lists in ``_resume_keys`` the settings a saved state must match.
    """

    _steps: int
    _resume_keys: tuple[str, ...] = ()
    #: int64 arrays in the state: attribute ``_key`` (or None) saved as the tensor ``key``, so
    #: the checkpoint loads with torch.load(weights_only=True)
    _state_arrays: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.epoch = 0
        self.sampler = self  # where Lightning looks for set_epoch
        self._start = 0  # batches of the current epoch to skip on the next iteration
        self._yielded = 0  # batches of the current epoch handed out so far

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        return self._steps

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; a new epoch starts from its first batch (a resumed one does not)."""
        if epoch < 0:
            raise ConfigError(f"{type(self).__name__} epoch must be >= 0, got {epoch}")
        if epoch != self.epoch:
            self._start = self._yielded = 0
        self.epoch = int(epoch)

    def _group(self, labels: np.ndarray) -> np.ndarray:
        """Index the dataset by identity; returns the image count of each sorted label."""
        self._images = label_groups(labels)  # internal identity id -> its dataset indices
        self._counts = np.array([len(g) for g in self._images])
        return self._counts

    def _epoch_plan(self) -> Any:
        raise NotImplementedError

    def _batch(self, plan: Any, step: int) -> list[int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        plan = self._epoch_plan()
        start, self._start = self._start, 0
        self._yielded = start
        for step in range(start, self._steps):
            batch = self._batch(plan, step)
            self._yielded = step + 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Epoch, batches handed out in it, and the settings a resume must match."""
        state = {"epoch": self.epoch, "batches_yielded": self._yielded}
        state.update({k: getattr(self, k) for k in self._resume_keys})
        for key in self._state_arrays:
            a = getattr(self, f"_{key}")
            state[key] = None if a is None else torch.from_numpy(a.copy())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue ``state["epoch"]`` after ``state["batches_yielded"]`` batches;
        :class:`ConfigError` when it was saved with other settings or does not fit."""
        name = type(self).__name__
        for key in self._resume_keys:
            if key in state and state[key] != getattr(self, key):
                raise ConfigError(
                    f"{name} state was saved with {key}={state[key]}, but this sampler has "
                    f"{key}={getattr(self, key)}; resume with the same settings"
                )
        try:
            epoch, done = int(state["epoch"]), int(state["batches_yielded"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"{name} state must hold integers 'epoch' and 'batches_yielded', got "
                f"{sorted(state) if isinstance(state, dict) else type(state).__name__}"
            ) from None
        if epoch < 0 or not 0 <= done <= self._steps:
            raise ConfigError(
                f"{name} state has epoch={epoch}, batches_yielded={done}; expected epoch >= 0 "
                f"and 0 <= batches_yielded <= {self._steps}"
            )
        self.epoch, self._start, self._yielded = epoch, done, done
        for key in self._state_arrays:
            if state.get(key) is not None:
                setattr(self, f"_{key}", np.asarray(state[key]).astype(np.int64))


class ShuffleBatchSampler(_ResumableBatchSampler):
    """Shuffled batches of a global batch split over the ranks; drops the incomplete last one.

    Per epoch, the indices are permuted by a generator seeded with ``(seed, epoch)``; step s
    takes ``perm[s·G : (s+1)·G]`` with G = ``batch_size × num_replicas``, rank r its r-th slice.
    So one process with batch 2b and two with batch b train on the same images, and every rank
    yields ``⌊N / G⌋`` batches. A state saved with another number of processes loads as long
    as the global batch is the same.

    Args:
        num_samples: N, dataset size.
        batch_size: b, images per batch on each rank.
        seed: base seed (≥ 0).
        num_replicas, rank: ``None`` → :mod:`facerec.base.distributed`'s.
    """

    _resume_keys = ("seed", "global_batch_size", "num_samples")

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_samples = _check_int(f"{name} num_samples", num_samples, 1, bool_ok=False)
        self.batch_size = _check_int(f"{name} batch_size", batch_size, 1, bool_ok=False)
        self.seed = _check_seed(name, seed)
        self.num_replicas, self.rank = _check_ranks(name, num_replicas, rank)
        self.global_batch_size = self.batch_size * self.num_replicas
        if self.num_samples < self.global_batch_size:
            raise ConfigError(
                f"{name}: {self.num_samples} samples are fewer than one global batch of "
                f"batch_size × processes = {self.batch_size} × {self.num_replicas}; lower the "
                "batch size"
            )
        self._steps = self.num_samples // self.global_batch_size

    def _epoch_plan(self) -> np.ndarray:
        """This epoch's permutation of the dataset indices, (N,) int64."""
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)

    def _batch(self, plan: np.ndarray, step: int) -> list[int]:
        lo = step * self.global_batch_size + self.rank * self.batch_size
        return plan[lo : lo + self.batch_size].tolist()


class PKSampler(_ResumableBatchSampler):
    """Batch sampler: every batch holds exactly P identities × K images (dataset indices).

    Per epoch, the *usable* identities (at least ``min_images`` images) are shuffled (seeded by
    ``seed`` and the epoch) and dealt out in global steps of ``num_replicas × p`` distinct
    identities, rank r taking the r-th block of ``p``; every rank yields ``ceil(U /
    (num_replicas·p))`` batches. The last step is filled from the start of the epoch's order
    (never twice within one step). Each identity contributes K images, drawn without
    replacement when it has K, else all of them plus K − n drawn again with replacement; a batch
    lists them identity by identity. Deterministic for (seed, epoch, num_replicas, rank).

    Args:
        labels: identity label of each dataset item, (N,) integers.
        p, k: identities per batch (per rank), images per identity.
        min_images: identities with fewer images are skipped (≥ 1).
        seed: base seed (≥ 0).
        num_replicas, rank: ``None`` → :mod:`facerec.base.distributed`'s.
    """

    _resume_keys = ("seed", "p", "k", "min_images", "num_replicas", "num_identities")

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
        self.p, self.k = _check_int("PKSampler p", p, 1), _check_int("PKSampler k", k, 1)
        self.min_images = _check_int("PKSampler min_images", min_images, 1)
        self.seed = _check_seed("PKSampler", seed)
        self.num_replicas, self.rank = _check_ranks("PKSampler", num_replicas, rank)
        counts = self._group(labels_arr)
        self._usable = np.flatnonzero(counts >= min_images)  # identity ids (into counts)
        needed = p * self.num_replicas
        if len(self._usable) < needed:
            raise ConfigError(
                f"PKSampler needs at least p × num_replicas = {p} × {self.num_replicas} = {needed} "
                f"identities with >= min_images={min_images} images, but the labels have "
                f"{len(self._usable)} ({len(counts)} identities, "
                f"{len(counts) - len(self._usable)} skipped for too few images); lower p or "
                "min_images"
            )
        self.batch_size = self.p * self.k
        self.num_identities = len(self._usable)
        self._steps = math.ceil(self.num_identities / needed)

    def _epoch_plan(self) -> np.ndarray:
        """This epoch's identity order, padded to steps·num_replicas·p: (steps·R·p,) ids."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = self._usable[rng.permutation(self.num_identities)]
        pad = self._steps * self.num_replicas * self.p - self.num_identities
        return np.concatenate([order, order[:pad]])

    def _draw(self, identity: int, rng: np.random.Generator) -> np.ndarray:
        """K dataset indices of ``identity``: (k,) int64."""
        images, count = self._images[identity], self._counts[identity]
        if count >= self.k:
            return rng.choice(images, size=self.k, replace=False)
        return np.concatenate(
            [rng.permutation(images), rng.choice(images, size=self.k - count, replace=True)]
        )

    def step_identities(self, identities: np.ndarray, step: int) -> np.ndarray:
        """The R·P identity ids (internal) of global ``step``, given the epoch's plan."""
        step_size = self.num_replicas * self.p
        return identities[step * step_size : (step + 1) * step_size]

    def _batch(self, plan: np.ndarray, step: int) -> list[int]:
        mine = self.step_identities(plan, step)[self.rank * self.p : (self.rank + 1) * self.p]
        rng = np.random.default_rng([self.seed, self.epoch, step, self.rank])
        return np.concatenate([self._draw(int(i), rng) for i in mine]).tolist()


def lightning_batches_done(trainer: Any) -> Callable[[], int]:
    """A function returning how many batches of the current epoch ``trainer`` has trained
    (the count Lightning itself resumes from); holds the trainer by weak reference."""
    ref = weakref.ref(trainer)

    def done() -> int:
        if (t := ref()) is None:
            raise RuntimeError("the trainer of this DataLoader no longer exists")
        return lightning_compat.batches_processed(t)

    return done


class ResumableDataLoader(DataLoader):
    """A DataLoader over a resumable batch sampler that Lightning checkpoints and restores.

    Lightning saves ``state_dict()`` of a stateful train loader in the checkpoint and calls
    ``load_state_dict`` before a resumed epoch. Batch indices are handed out ahead of training
    (prefetching), so the state stores ``batches_done()`` (:func:`lightning_batches_done`), the
    batches actually trained, when it is given.

    Args: those of :class:`~torch.utils.data.DataLoader` (``batch_sampler`` must have
    ``state_dict``/``load_state_dict``), and ``batches_done``: optional () -> int.
    """

    def __init__(
        self, *args: Any, batches_done: Callable[[], int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        bs = self.batch_sampler
        if not (callable(getattr(bs, "state_dict", None)) and hasattr(bs, "load_state_dict")):
            raise ConfigError(
                "ResumableDataLoader needs a batch_sampler with state_dict/load_state_dict "
                f"(ShuffleBatchSampler, PKSampler), got {type(bs).__name__}"
            )
        self.batches_done = batches_done

    def state_dict(self) -> dict[str, Any]:
        """The batch sampler's state, positioned after the batches trained in this epoch."""
        state = dict(self.batch_sampler.state_dict())
        if self.batches_done is not None:
            state["batches_yielded"] = min(int(state["batches_yielded"]), self.batches_done())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the batch sampler at ``state`` (before iterating)."""
        self.batch_sampler.load_state_dict(state)
