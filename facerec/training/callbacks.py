"""Lightning plumbing: atomic checkpoint writes and the end-of-fit verification summary."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_only

from facerec.base import lightning_compat
from facerec.data.interface import TrainingData
from facerec.errors import ConfigError, DataError, FacerecError
from facerec.inference.checkpoint import check_hyperparameters, read_checkpoint_dict
from facerec.io import atomic_path, write_failed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file beside it and rename it into place, so a kill
    while saving never leaves a truncated file; read them safely (:func:`read_resume`). Remote
    (fsspec) paths fall back to Lightning's own writer."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if _remote(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path) as tmp:
            started = tmp.stat().st_mtime
            torch.save(checkpoint, tmp)
        remove_stale_temporaries(Path(path).parent, before=started)

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        # ``weights_only`` other than True is ignored: facerec never unpickles code
        if _remote(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return read_resume(path)


def _remote(path: str | os.PathLike) -> bool:
    return "file" not in get_filesystem(path).protocol  # "file" or ("file", "local")


def remove_stale_temporaries(folder: str | os.PathLike, before: float) -> list[Path]:
    """Delete the ``.<name>.ckpt.<random>.tmp`` files of checkpoint saves a kill left in
    ``folder``: those last written before the time stamp ``before`` (so no save in progress is
    touched). Returns the files removed."""
    removed = []
    for f in Path(folder).glob(".*.ckpt.*.tmp"):
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            if f.is_file() and f.stat().st_mtime < before:
                f.unlink()
                removed.append(f)
    return removed


def read_resume(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint dict of ``path`` for a resume, read with ``weights_only=True``.

    Raises:
        DataError: one line naming ``path``, why it cannot be read, and the newest intact
            checkpoint beside it (with the ``--ckpt_path`` that resumes from it), if any.
    """
    p = Path(path)
    try:
        return _read_checked(p, "expected a checkpoint written by facerec fit")
    except DataError as e:
        other = newest_intact_checkpoint(p.parent, exclude=p)
        hint = (
            f"; the newest intact checkpoint beside it is {other} (resume from it with "
            f"--ckpt_path {other})"
            if other is not None
            else "; no intact checkpoint lies beside it (start again without --ckpt_path)"
        )
        raise DataError(f"cannot resume: {e}{hint}") from None


def newest_intact_checkpoint(
    folder: str | os.PathLike, exclude: str | os.PathLike | None = None
) -> Path | None:
    """The most recently written ``*.ckpt`` in ``folder`` (not ``exclude``) that reads safely
    with the training state in it; None if there is none."""
    skip = Path(exclude).resolve() if exclude is not None else None
    files = [f for f in Path(folder).glob("*.ckpt") if f.is_file() and f.resolve() != skip]
    for f in sorted(files, key=lambda f: f.stat().st_mtime, reverse=True):
        try:
            ckpt = _read_checked(f)
        except DataError:
            continue
        if "state_dict" in ckpt and "loops" in ckpt:
            return f
    return None


def _read_checked(path: Path, *expected: str) -> dict[str, Any]:
    """``path``'s checkpoint dict (``weights_only=True``), its hyper-parameters checked;
    ``expected``: the hint of the error message, if not the default."""
    ckpt = read_checkpoint_dict(path, *expected)
    check_hyperparameters(ckpt, path)
    return ckpt


class VerificationSummary(pl.Callback):
    """At the end of fit, print held-out verification accuracy next to its baselines: the
    untrained network's (measured when ``num_sanity_val_steps`` is -1) and mean-centred pixel
    cosine on the same pairs."""

    def __init__(self, raw_pixel_baseline: bool = True) -> None:
        self.raw_pixel_baseline = raw_pixel_baseline

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        history = getattr(pl_module, "val_history", [])
        if not history:
            return
        step, final = history[-1]
        best = max(a for _, a in history)
        lines = ["", "Held-out verification (identities never seen in training):"]
        lines.append(f"  trained network  : {final:.2%}  (step {step}; best {best:.2%})")
        if (untrained := getattr(pl_module, "untrained_val_acc", None)) is not None:
            start = getattr(pl_module, "start_weights", None)
            what = "untrained network" if start is None else f"starting weights (from {start})"
            lines.append(f"  {what}: {untrained:.2%}")
        dm = getattr(pl_module, "training_data", None)  # what the module was given (attach_data)
        if self.raw_pixel_baseline and isinstance(dm, TrainingData):
            if (raw := dm.raw_pixel_accuracy()) is not None:
                lines.append(f"  raw-pixel cosine : {raw:.2%}")
        if ckpt := getattr(trainer.checkpoint_callback, "best_model_path", ""):
            lines.append(f"  best checkpoint  : {ckpt}")
        print("\n".join(lines), flush=True)


class FreezeBatchNorm(pl.Callback):
    """Keep every BatchNorm layer in evaluation mode during training (the affine weights still
    train): for small per-device batches, or to compare a DDP run on CPUs exactly with one
    process. Use: ``--trainer.callbacks+=facerec.training.callbacks.FreezeBatchNorm``.
    """

    def _freeze(self, pl_module: pl.LightningModule) -> None:
        for m in pl_module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._freeze(pl_module)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._freeze(pl_module)  # validation puts the module back into train mode


class ResumeLoaderState(pl.Callback):
    """Hand a checkpoint's train-loader position to the loader at ``on_train_start`` even when
    Lightning does not (:func:`facerec.base.lightning_compat.restore_pending_loader_state`)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lightning_compat.restore_pending_loader_state(trainer)


class RunLock:
    """One ``facerec fit`` at a time per run folder (two would share ``last.ckpt``): an
    exclusive ``flock`` on ``<folder>/fit.lock`` holding the PID and host, dropped by the kernel
    when the process ends however it ends. Only the launching process locks (DDP's other ranks
    belong to its run). A no-op without ``fcntl``.
    """

    RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / "fit.lock"
        self._fd: int | None = None

    @classmethod
    def launching_process(cls) -> bool:
        return all(os.environ.get(v, "0") == "0" for v in cls.RANK_VARIABLES)

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`ConfigError` naming the run that holds it; an
        unwritable folder raises :class:`FacerecError` (one line) before any training."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise write_failed(self.path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode("utf-8", "replace").split()
            os.close(fd)
            who = f"PID {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
            raise ConfigError(
                f"{self.path.parent} is in use by another facerec fit ({who}): two runs in one "
                "folder would share checkpoints/last.ckpt; wait for it to end, or give this run "
                "its own --trainer.default_root_dir"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        except OSError as e:
            os.close(fd)
            raise FacerecError(f"cannot write {self.path}: {e.strerror}") from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
