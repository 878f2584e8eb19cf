"""FaceDataModule: image folders, RecordIO or the embedded synthetic faces, with held-out pairs.

Identities held out of training give the verification pairs of ``val/acc``. ``num_classes``
reaches the margin head (LightningCLI links it); ``class_names`` is saved with checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from facerec.base.options import coerce
from facerec.data.datasets import FaceDataset, IndexedDataset, label_groups
from facerec.data.folder import read_name_list, scan_image_folder
from facerec.data.image import ResizeMode, image_size, read_image_bytes
from facerec.data.pairs import SYNTHETIC_HELD_OUT_START, make_pairs
from facerec.data.samplers import (
    Batches,
    ResumableDataLoader,
    ShuffleBatchSampler,
    lightning_batches_done,
)
from facerec.data.sources import FileImages, SubsetImages
from facerec.data.transforms import DEFAULT_AUGMENT, build_augment
from facerec.errors import ConfigError, DataError


@dataclass
class SyntheticOptions:
    """The embedded synthetic data set used when ``data.root`` is not set.

    identities / images_per_identity: training identities and images of each.
    size: side of the rendered square image (then brought to ``image_size``).
    seed: generator seed; difficulty: scale of the per-image nuisance variation.
    """

    identities: int = 200
    images_per_identity: int = 20
    size: int = 112
    seed: int = 0
    difficulty: float = 1.0


#: the ``data.sampler`` strings of before issue 23 -> how to write them now
OLD_SAMPLER_SPELLING = {
    "random": "leave data.sampler out (null: shuffled batches of data.batch_size)",
    "pk": "data.sampler: {class_path: facerec.data.samplers.PKBatches, init_args: {p: 32, k: 4, "
    "min_images: 2}}",
    "hard_identity": "data.sampler: {class_path: facerec.data.hard_identity.HardIdentityBatches, "
    "init_args: {p: 32, k: 4, min_images: 2, mining: {every_n_steps: 1000, ...}}}",
    "offline_triplets": "data.sampler: {class_path: "
    "facerec.data.offline_triplets.OfflineTripletBatches, init_args: {triplets_per_batch: 32, "
    "mining: {every_n_steps: 1000, ...}}}",
}
#: the option groups of before issue 23 -> (where their keys went, the sampler they belong to)
OLD_SAMPLER_KEYS = {
    "data.pk": ("data.sampler.init_args (p, k, min_images)", "pk"),
    "data.hard_identity": ("data.sampler.init_args.mining", "hard_identity"),
    "data.offline": (
        "data.sampler.init_args (triplets_per_batch) and data.sampler.init_args.mining (the rest)",
        "offline_triplets",
    ),
}


def old_sampler_message(old: str) -> str | None:
    """One line naming the new spelling of ``old``: a ``data.sampler`` string or option key of
    before issue 23 (``pk``, ``data.hard_identity``, ...); None for anything else."""
    if old in OLD_SAMPLER_SPELLING:
        return (
            f"data.sampler: {old} is the spelling of before issue 23; now "
            f"{OLD_SAMPLER_SPELLING[old]}"
        )
    if old in OLD_SAMPLER_KEYS:
        where, kind = OLD_SAMPLER_KEYS[old]
        return (
            f"{old} is no longer a key (issue 23): its keys go under {where} of "
            f"{OLD_SAMPLER_SPELLING[kind]} (a config.yaml saved before issue 23 holds data.pk, "
            "data.hard_identity and data.offline even when unused: delete them)"
        )
    return None


def _checked_sampler(sampler: Any) -> Batches | None:
    """``data.sampler`` as given (a :class:`Batches`, checked, or None), or one line saying what
    to write."""
    if sampler is None:
        return None
    if isinstance(sampler, Batches):
        sampler.check()
        return sampler
    if isinstance(sampler, str) and sampler in OLD_SAMPLER_SPELLING:
        raise ConfigError(str(old_sampler_message(sampler)))
    raise ConfigError(
        f"data.sampler is {sampler!r}; expected null (shuffled batches) or a sampler class: "
        "facerec.data.samplers.PKBatches, facerec.data.hard_identity.HardIdentityBatches or "
        "facerec.data.offline_triplets.OfflineTripletBatches (by class_path, like model.backbone)"
    )


class _EpochKeys:
    """A batch sampler whose batches are ``(index, epoch)`` keys instead of indices, so
    :class:`FaceDataset` seeds each sample's augmentation by ``(seed, epoch, index)``; everything
    else (``set_epoch`` through ``sampler``, ``state_dict``, ``len``) is the wrapped sampler's.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = int(getattr(self.inner, "epoch", 0))
        for batch in self.inner:
            yield [(int(i), epoch) for i in batch]

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def _check_each_identity_readable(paths: list[str], labels: np.ndarray, names: list[str]) -> None:
    """Refuse, at setup, an identity none of whose image files has a readable image header
    (reads files of each identity until one has a header)."""
    for group in label_groups(labels):
        for i in group:
            try:
                if image_size(read_image_bytes(paths[i])) is not None:
                    break
            except (OSError, DataError):
                continue
        else:
            lab = int(labels[group[0]])
            raise DataError(
                f"identity {names[lab]!r} (label {lab}): all its {len(group)} images are "
                f"unreadable (no image header in any, e.g. {paths[group[0]]}); expected at least "
                "one readable image per identity: fix or remove that folder"
            )


def _split(labels: np.ndarray, names: list[str], held: set[str], root: Any) -> dict[str, Any]:
    """Split samples (labels (N,) indexing ``names``) into training and held-out identities.

    Returns sample positions ``train``/``val`` (int64), their labels renumbered from 0
    (``train_labels``, ``val_labels``) and ``class_names`` (label -> identity of training).
    """
    is_held = np.array([n in held for n in names], dtype=bool)  # per identity, then per sample
    keep = ~is_held[labels]
    train_names = [n for n, h in zip(names, is_held, strict=True) if not h]
    if len(train_names) < 2:
        raise DataError(
            f"data root {root} leaves {len(train_names)} training identities after holding out "
            f"{len(held)} for validation; at least 2 training identities are needed"
        )
    # identity -> label: its rank among the training identities, or among the sorted held-out
    val_label = {n: i for i, n in enumerate(sorted(held))}
    remap = np.where(is_held, [val_label.get(n, -1) for n in names], np.cumsum(~is_held) - 1)
    return {
        "train": np.flatnonzero(keep),
        "val": np.flatnonzero(~keep),
        "train_labels": remap[labels[keep]],
        "val_labels": remap[labels[~keep]],
        "class_names": train_names,
    }


def _readable_only(held_out: FaceDataset) -> tuple[Any, np.ndarray]:
    """(images, labels) of the held-out images that decode now; the others are left out, named
    in a warning (validation reads strictly, so one would end the fit at the first validation).
    """

    def readable(i: int) -> bool:
        try:
            held_out.load(i)
        except DataError:
            return False
        return True

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        ok = np.fromiter(pool.map(readable, range(len(held_out))), dtype=bool, count=len(held_out))
    if ok.all():
        return held_out.images, held_out.labels
    bad = np.flatnonzero(~ok)
    named = ", ".join(held_out.describe(int(i)) for i in bad[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    rank_zero_warn(
        f"held-out validation: skipped {len(bad)} unreadable images ({named}{more}); val/acc "
        "leaves out the pairs they would have been in"
    )
    return SubsetImages(held_out.images, np.flatnonzero(ok)), held_out.labels[ok]


class FaceDataModule(pl.LightningDataModule):
    """Face images for training and held-out verification pairs for validation.

    Args:
        root: image folder root/<identity>/<image> or a folder with train.rec/train.idx
            (insightface RecordIO); None uses the synthetic faces.
        image_size: (height, width) of the network input; images of other sizes are resized or
            centre-cropped (``resize_mode``).
        batch_size: images per batch per process (a ``sampler`` sets its own: P·K, 3·T).
        num_workers: DataLoader worker processes.
        sampler: how training batches are drawn, a :class:`~facerec.data.samplers.Batches` given
            by ``class_path`` like ``model.backbone``: ``facerec.data.samplers.PKBatches`` (P
            identities × K images), ``facerec.data.hard_identity.HardIdentityBatches`` (P×K
            batches partly from FAISS neighbourhoods of the class centres) or
            ``facerec.data.offline_triplets.OfflineTripletBatches`` (FaceNet's offline
            selection); null (default): shuffled batches of ``batch_size``.
        augment: albumentations pipeline as a list of {name: ..., args...}; default: a
            horizontal flip with probability 0.5 (``[]``: none; null: the default). Each
            sample's draws are seeded by (seed, epoch, sample index): the same seed gives the
            same run, whatever the number of workers, and a resumed run the same draws.
        val_identities: number of identities held out of training for validation pairs
            (synthetic: fresh identities; folders and RecordIO: chosen with ``seed``). 0
            disables validation. Held-out images are all decoded when the data are set up; an
            unreadable one is left out (named, with its pairs) instead of stopping the fit.
        val_list: a file naming held-out identities, instead of a count (folders: folder
            names; RecordIO: labels).
        include_list: a file naming the images to use, one a line (as ``facerec doctor
            --write-clean-list`` writes it): paths relative to ``root`` for folders, sample
            indices for RecordIO; the others are left out without touching the data folder.
        val_images_per_identity: images of each held-out synthetic identity.
        val_pairs: genuine and impostor pairs each for ``val/acc``.
        resize_mode: how an image of another size than ``image_size`` is fitted: ``resize``
            (stretched) or ``center_crop``.
        synthetic: the embedded synthetic faces used when ``root`` is None (identities, images
            per identity, size, seed, difficulty: :class:`SyntheticOptions`).
        strict: make a corrupt training image an error instead of a counted skip.
        seed: seed for the held-out split, pairs and sampling.
        pin_memory: page-locked batches for faster copies to the GPU; None (default): on when
            the trainer runs on CUDA. Batches are uint8 images, normalised on the device.
    """

    def __init__(
        self,
        root: str | None = None,
        image_size: tuple[int, int] = (112, 112),
        resize_mode: ResizeMode = "resize",
        batch_size: int = 128,
        num_workers: int = 2,
        sampler: Batches | None = None,
        augment: list[dict[str, Any]] | None = DEFAULT_AUGMENT,
        synthetic: SyntheticOptions = SyntheticOptions(),
        val_identities: int = 50,
        val_list: str | None = None,
        include_list: str | None = None,
        val_images_per_identity: int = 10,
        val_pairs: int = 1000,
        strict: bool = False,
        seed: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        self.root = root
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.resize_mode = resize_mode
        self.sampler = _checked_sampler(sampler)
        self.batch_size = batch_size if self.sampler is None else self.sampler.batch_size
        self.num_workers = num_workers
        self.train_batch_sampler: Any = None
        self.augment_spec = list(DEFAULT_AUGMENT if augment is None else augment)
        self.synthetic = coerce(synthetic, SyntheticOptions, "data.synthetic") or SyntheticOptions()
        self.val_identities = val_identities
        self.val_list = val_list
        self.include_list = include_list
        self.val_images_per_identity = val_images_per_identity
        self.val_pairs = val_pairs
        self.strict = strict
        self.seed = seed
        self.pin_memory = pin_memory
        for name, value, least in (
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("val_identities", val_identities, 0),
            ("val_images_per_identity", val_images_per_identity, 1),
            ("val_pairs", val_pairs, 1),
        ):
            if not isinstance(value, int) or value < least:
                raise ConfigError(f"data.{name} is {value!r}; expected an integer >= {least}")
        build_augment(self.augment_spec)  # fail at configuration time on a bad pipeline
        self._index: dict[str, Any] | None = None
        self.train_set: FaceDataset | None = None
        self.val_set: FaceDataset | None = None
        self.pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _build_index(self) -> dict[str, Any]:
        """Decide the training and held-out samples (cheap: lists files, renders nothing)."""
        if self._index is not None:
            return self._index
        if self.root is None:
            s = self.synthetic
            if s.identities < 2 or s.images_per_identity < 1:
                raise ConfigError(
                    "data.synthetic needs identities >= 2 and images_per_identity >= 1, got "
                    f"{s.identities} and {s.images_per_identity}"
                )
            index = {"class_names": [f"id_{i:05d}" for i in range(s.identities)]}
        elif (Path(self.root) / "train.rec").exists() or str(self.root).endswith(".rec"):
            from facerec.data.recordio import RecordIODataset

            rec = RecordIODataset(self.root)
            names = [str(i) for i in range(rec.checked_num_classes())]  # checked vs the labels
            all_labels = np.asarray(rec.labels, dtype=np.int64)
            idx = self._included_indices(len(all_labels))
            split = _split(all_labels[idx], names, self._held_out_names(names), self.root)
            index = split | {p: SubsetImages(rec.images, idx[split[p]]) for p in ("train", "val")}
        else:
            paths, labels, names = scan_image_folder(self.root)
            if self.include_list:
                paths, labels, names = self._included_paths(paths, labels, names)
            _check_each_identity_readable(paths, labels, names)
            split = _split(labels, names, self._held_out_names(names), self.root)
            index = split | {p: FileImages([paths[i] for i in split[p]]) for p in ("train", "val")}
        self._index = index
        return index

    def _included_paths(
        self, paths: list[str], labels: np.ndarray, names: list[str]
    ) -> tuple[list[str], np.ndarray, list[str]]:
        """Only the images ``include_list`` names; identities left without images drop out."""
        listed = set(read_name_list(str(self.include_list)))
        rel = [Path(p).relative_to(str(self.root)).as_posix() for p in paths]
        if unknown := sorted(listed - set(rel)):
            raise DataError(
                f"data.include_list {self.include_list} names {len(unknown)} images not under "
                f"{self.root} (e.g. {unknown[0]}); expected paths relative to the root"
            )
        keep = np.array([r in listed for r in rel], dtype=bool)
        used, new_labels = np.unique(labels[keep], return_inverse=True)
        kept = [p for p, k in zip(paths, keep, strict=True) if k]
        return kept, new_labels, [names[i] for i in used]

    def _included_indices(self, n: int) -> np.ndarray:
        """Sample indices of a RecordIO set to train on: ``include_list``'s, else all ``n``."""
        if not self.include_list:
            return np.arange(n)
        listed = read_name_list(str(self.include_list))
        try:
            idx = np.unique(np.asarray([int(x) for x in listed], dtype=np.int64))
        except ValueError:
            raise DataError(
                f"data.include_list {self.include_list}: expected one sample index a line for "
                "a RecordIO set"
            ) from None
        if idx.size and (idx[0] < 0 or idx[-1] >= n):
            raise DataError(
                f"data.include_list {self.include_list} names sample indices outside "
                f"[0, {n}) of {self.root}"
            )
        return idx

    def _held_out_names(self, names: list[str]) -> set[str]:
        if self.val_list:
            listed = read_name_list(self.val_list)
            if unknown := [n for n in listed if n not in names]:
                raise DataError(
                    f"data.val_list {self.val_list} names identities not under {self.root}: "
                    f"{', '.join(unknown[:5])}"
                )
            return set(listed)
        if len(names) < 2:
            raise DataError(
                f"data root {self.root} has {len(names)} identity; at least 2 training "
                "identities are needed (plus any held out for validation)"
            )
        if self.val_identities <= 0:
            return set()
        if self.val_identities > len(names) - 2:
            raise DataError(
                f"data.val_identities={self.val_identities} holds out too many of the "
                f"{len(names)} identities under {self.root}: at least 2 training identities are "
                f"needed, so expected data.val_identities <= {len(names) - 2} (0: no validation)"
            )
        rng = np.random.default_rng(self.seed)
        return set(rng.choice(names, size=self.val_identities, replace=False).tolist())

    @property
    def num_classes(self) -> int:
        """Number of training identities (what the margin head's class count must be)."""
        return len(self._build_index()["class_names"])

    @property
    def class_names(self) -> list[str]:
        """Label → identity name of the training set."""
        return list(self._build_index()["class_names"])

    @property
    def has_validation(self) -> bool:
        return self.val_identities > 0 or (self.root is not None and bool(self.val_list))

    def _render_synthetic(self, ids: Collection[int], per_id: int) -> tuple[np.ndarray, np.ndarray]:
        from facerec.data.synthetic import SyntheticFaces

        s = self.synthetic
        gen = SyntheticFaces(s.identities, per_id, s.size, s.seed, s.difficulty)
        images = np.stack([gen.render(int(i), j) for i in ids for j in range(per_id)])
        return images, np.repeat(np.arange(len(ids)), per_id)

    def setup(self, stage: str | None = None) -> None:
        index = self._build_index()
        augment = build_augment(self.augment_spec)
        common = {"image_size": self.image_size, "resize_mode": self.resize_mode}
        if self.train_set is None:
            if self.root is None:
                s = self.synthetic
                images, labels = self._render_synthetic(range(s.identities), s.images_per_identity)
            else:
                images, labels = index["train"], index["train_labels"]
            train = {"augment": augment, "strict": self.strict, "seed": self.seed, **common}
            self.train_set = FaceDataset(images, labels, names=index["class_names"], **train)
        if self.val_set is None and self.has_validation:
            if self.root is None:
                ids = SYNTHETIC_HELD_OUT_START + np.arange(self.val_identities)
                images, labels = self._render_synthetic(ids, self.val_images_per_identity)
            else:
                images, labels = _readable_only(
                    FaceDataset(index["val"], index["val_labels"], strict=True, **common)
                )
            self.val_set = FaceDataset(images, labels, strict=True, **common)
            self.pairs = make_pairs(labels, self.val_pairs, seed=self.seed)

    def _loader_kwargs(self) -> dict[str, Any]:
        return {
            "num_workers": self.num_workers,
            "pin_memory": self._pin_memory(),
            "persistent_workers": self.num_workers > 0,
        }

    def _pin_memory(self) -> bool:
        """``pin_memory`` as set, or (None) whether the trainer's device is a CUDA GPU."""
        if self.pin_memory is not None:
            return bool(self.pin_memory)
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        n = len(self.train_set)
        if self.sampler is not None:
            sampler = self.sampler.build(self.train_set.labels, self.seed)
        elif n < self.batch_size:
            raise DataError(
                f"the training set has {n} images, fewer than data.batch_size={self.batch_size}; "
                "lower the batch size"
            )
        else:  # a shuffled global batch of batch_size × processes, split by rank (seed, epoch)
            sampler = ShuffleBatchSampler(n, self.batch_size, seed=self.seed)
        self.train_batch_sampler = sampler
        done = lightning_batches_done(self.trainer) if self.trainer is not None else None
        return ResumableDataLoader(
            self.train_set,
            batch_sampler=_EpochKeys(sampler),
            batches_done=done,
            **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(
            IndexedDataset(self.val_set),
            batch_size=min(256, max(self.batch_size, 64)),
            shuffle=False,
            **self._loader_kwargs(),
        )

    test_dataloader = val_dataloader

    def raw_pixel_accuracy(self) -> float | None:
        """Verification accuracy of raw pixels (mean-centred, cosine) on the validation pairs."""
        if self.val_set is None or self.pairs is None:
            return None
        from facerec.metrics.verification import best_threshold_accuracy, l2_normalize

        x = np.array([self.val_set.load(i).ravel() for i in range(len(self.val_set))], np.float32)
        x = l2_normalize(x - x.mean(axis=0, keepdims=True))
        i1, i2, same = self.pairs
        acc, _ = best_threshold_accuracy((x[i1] * x[i2]).sum(1), same)
        return float(acc)
