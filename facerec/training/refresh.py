"""Lightning callbacks that refresh what the samplers mine from, every N steps.

* :class:`HardIdentityRefresh` (``HardIdentityBatches``): each identity's nearest identities by
  class centre (the margin head's weights, or mean embeddings), found with FAISS.
* :class:`OfflineTripletRefresh` (``OfflineTripletBatches``): hard or semi-hard triplets of a
  random subset embedded with the current weights.

``facerec fit`` adds the callback the sampler needs (:func:`data_callbacks`); in Python pass
``callbacks=data_callbacks(datamodule)`` to the Trainer. Under DDP every rank embeds its share,
rank 0 searches and the result is broadcast. Logged: ``train/mining/refresh_seconds`` and
``train/mining/pool_size`` or ``train/mining/neighbour_similarity``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from facerec.base import distributed
from facerec.data.datasets import label_groups
from facerec.data.hard_identity import HardIdentityBatches, HardIdentityOptions
from facerec.data.offline_triplets import OfflineTripletBatches, OfflineTripletOptions
from facerec.errors import ConfigError
from facerec.heads.base import MarginHead
from facerec.inference import Preprocess, TorchEmbedder, embed_images
from facerec.mining.neighbours import broadcast_neighbours, nearest_identities
from facerec.mining.offline import select_triplets


class _Unaugmented:
    """Images ``indices`` of a FaceDataset, fitted but not augmented, as an ImageSource."""

    def __init__(self, base: Any, indices: np.ndarray) -> None:
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.base.load(int(self.indices[i]))


def embed_indices(
    pl_module: pl.LightningModule,
    dataset: Any,
    indices: np.ndarray,
    batch_size: int = 256,
    num_workers: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed dataset items ``indices`` (n,) unaugmented with the current weights, 1/R on each
    rank (a collective: every rank passes the same ``indices``). Returns (n, D) float32 raw CPU
    embeddings (zero rows for unreadable images) and the (n,) bool mask of readable ones.
    """
    n = len(indices)
    world, rank = distributed.world_size(), distributed.rank()
    per = max(1, math.ceil(n / world))
    padded = np.resize(np.asarray(indices, dtype=np.int64), per * world)
    mine = padded[rank * per : (rank + 1) * per]
    pre = getattr(pl_module, "preprocess", None)
    pre = Preprocess.for_backbone(pl_module.backbone) if pre is None else Preprocess.coerce(pre)
    embedder = TorchEmbedder.from_preprocess(pl_module.backbone, pre, pl_module.device, batch_size)
    skipped: list[tuple[int, str]] = []
    out = embed_images(
        embedder, _Unaugmented(dataset, mine), batch_size, False, num_workers, skipped=skipped
    )
    ok = np.ones(len(mine), dtype=bool)
    ok[[i for i, _ in skipped]] = False
    local = torch.zeros(len(mine), int(pl_module.embedding_dim))
    local[torch.from_numpy(ok)] = torch.from_numpy(out)
    ok_local = torch.from_numpy(ok.astype(np.uint8))
    emb = distributed.all_gather_nograd(local.to(pl_module.device))[:n].cpu()
    ok_all = distributed.all_gather_nograd(ok_local.to(pl_module.device))[:n].cpu().bool()
    return emb, ok_all


def data_callbacks(datamodule: Any) -> list[pl.Callback]:
    """The refresh callback the datamodule's sampler needs (from :data:`REFRESH`), or none."""
    sampler = getattr(datamodule, "sampler", None)
    seed = int(getattr(datamodule, "seed", 0))
    for kind, refresh in REFRESH.items():
        if isinstance(sampler, kind):
            return [refresh(datamodule, sampler.mining, seed=seed)]
    return []


def check_data_callbacks(trainer: pl.Trainer, datamodule: Any) -> None:
    """Refuse (:class:`ConfigError`) a fit whose trainer lacks the refresh its sampler needs."""
    for needed in data_callbacks(datamodule):
        if not any(isinstance(cb, type(needed)) for cb in trainer.callbacks):
            raise ConfigError(
                f"data.sampler {type(datamodule.sampler).__name__} needs "
                f"facerec.training.refresh.{type(needed).__name__} among the trainer's callbacks; "
                "`facerec fit` adds it, in Python pass "
                "callbacks=facerec.training.refresh.data_callbacks(datamodule)"
            )


def _sample_each(groups: list[np.ndarray], m: int, rng: np.random.Generator) -> np.ndarray:
    """The groups concatenated, each longer than ``m`` cut to ``m`` random members first."""
    return np.concatenate([g if len(g) <= m else rng.choice(g, m, replace=False) for g in groups])


class _PeriodicRefresh(pl.Callback):
    """Calls :meth:`refresh` every ``options.every_n_steps`` steps (0: at each epoch start after
    the first) and logs ``train/mining/refresh_seconds`` and the refresh's own statistic."""

    #: the sampler's method that takes the new table
    SETTER = ""

    def __init__(self, datamodule: Any, options: Any, seed: int = 0) -> None:
        self.dm = datamodule
        self.options = options
        self.seed = seed
        self.refreshes = 0
        self.last_step = -1
        self.last_seconds: float | None = None
        self.last_stat: tuple[str, float] = ("", 0.0)

    def mine(self, pl_module: pl.LightningModule) -> tuple[np.ndarray, tuple[str, float]]:
        """The new table (the same on every rank) and the (name, value) to log with it."""
        raise NotImplementedError

    def refresh(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> np.ndarray:
        """Mine a new table and give it to the sampler."""
        start = time.perf_counter()
        table, self.last_stat = self.mine(pl_module)
        if (sampler := getattr(self.dm, "train_batch_sampler", None)) is not None:
            getattr(sampler, self.SETTER)(table)
        self.refreshes += 1
        self.last_seconds = time.perf_counter() - start
        return table

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.options.every_n_steps == 0 and trainer.current_epoch > 0:
            self.refresh(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        step, every = trainer.global_step, self.options.every_n_steps
        if every > 0 and step > 0 and step % every == 0 and step != self.last_step:
            self.last_step = step
            self.refresh(trainer, pl_module)
        if self.last_seconds is not None:
            pl_module.log("train/mining/refresh_seconds", self.last_seconds, batch_size=1)
            pl_module.log(*self.last_stat, batch_size=1)


class HardIdentityRefresh(_PeriodicRefresh):
    """Recompute the hard-identity neighbourhoods; until the first refresh the batches are
    plain PK batches."""

    options: HardIdentityOptions
    SETTER = "set_neighbours"

    def class_centres(self, pl_module: pl.LightningModule) -> torch.Tensor:
        """(C, D) class centres by ``options.centres`` (identical on every rank)."""
        mode = self.options.centres
        head: MarginHead | None = pl_module.head
        if mode == "auto":
            mode = "head" if head is not None else "embeddings"
        if mode == "head":
            if head is None:
                raise ConfigError(
                    "data.sampler.init_args.mining.centres is 'head' but the model has no margin "
                    "head with class weights; use centres: embeddings"
                )
            w = head.gather_full(head.weight.detach())  # sharded: every rank gathers them all
            w = w.float().cpu().reshape(head.num_classes, -1, w.shape[-1])
            return F.normalize(w, dim=2).mean(dim=1)
        labels = np.asarray(self.dm.train_set.labels)
        rng = np.random.default_rng([self.seed, self.refreshes, 17])
        idx = _sample_each(label_groups(labels), self.options.images_per_identity, rng)
        emb, ok = embed_indices(pl_module, self.dm.train_set, idx, self.options.embed_batch_size)
        emb = F.normalize(emb, dim=1) * ok.unsqueeze(1)
        c = int(labels.max()) + 1
        return torch.zeros(c, emb.shape[1]).index_add_(0, torch.from_numpy(labels[idx]), emb)

    def mine(self, pl_module: pl.LightningModule) -> tuple[np.ndarray, tuple[str, float]]:
        """Each identity's nearest identities, searched on rank 0, and their mean similarity."""
        centres = self.class_centres(pl_module)
        table = None
        k = min(self.options.neighbours, centres.shape[0] - 1)
        if distributed.rank() == 0:
            table = nearest_identities(centres, k, index=self.options.index)
        table = broadcast_neighbours(table, device=pl_module.device)
        x = F.normalize(centres, dim=1)
        first = torch.from_numpy(table[:, 0]).clamp_min(0)
        similarity = float((x * x[first]).sum(1).mean())
        return table, ("train/mining/neighbour_similarity", similarity)


class OfflineTripletRefresh(_PeriodicRefresh):
    """Select a new pool of offline triplets at the start of training and at each refresh."""

    options: OfflineTripletOptions
    SETTER = "set_triplets"

    def subset(self) -> np.ndarray:
        """Dataset indices of this refresh's subset (the same on every rank)."""
        labels = np.asarray(self.dm.train_set.labels)
        rng = np.random.default_rng([self.seed, self.refreshes, 29])
        groups = [g for g in label_groups(labels) if len(g) >= 2]
        n_ids = min(self.options.identities, len(groups))
        chosen = np.sort(rng.choice(len(groups), n_ids, replace=False))
        return _sample_each([groups[c] for c in chosen], self.options.images_per_identity, rng)

    def mine(self, pl_module: pl.LightningModule) -> tuple[np.ndarray, tuple[str, float]]:
        """Embed a subset and select triplets there on rank 0; the pool and its size."""
        idx = self.subset()
        emb, ok = embed_indices(pl_module, self.dm.train_set, idx, self.options.embed_batch_size)
        triplets = None
        if distributed.rank() == 0:
            labels = np.asarray(self.dm.train_set.labels)[idx][ok.numpy()]
            kept = idx[ok.numpy()]
            o = self.options
            local = select_triplets(emb[ok], labels, o.selection, o.margin, o.distance, o.search_k)
            triplets = kept[local] if len(local) else np.full((1, 3), -1, dtype=np.int64)
        triplets = broadcast_neighbours(triplets, device=pl_module.device)
        triplets = triplets[triplets[:, 0] >= 0]
        return triplets, ("train/mining/pool_size", float(len(triplets)))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.refresh(trainer, pl_module)


#: data.sampler's class -> the refresh callback it needs (built with its ``mining`` options)
REFRESH: dict[type, type[_PeriodicRefresh]] = {
    HardIdentityBatches: HardIdentityRefresh,
    OfflineTripletBatches: OfflineTripletRefresh,
}

__all__ = [
    "REFRESH",
    "HardIdentityRefresh",
    "OfflineTripletRefresh",
    "check_data_callbacks",
    "data_callbacks",
    "embed_indices",
]
