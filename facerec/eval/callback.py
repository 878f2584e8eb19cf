"""In-training verification: a Lightning callback that evaluates benchmark files during ``fit``.

It embeds each benchmark with ``pl_module.backbone`` (eval mode, flip test), runs the k-fold
protocol and logs ``val/<set>/acc`` (mean k-fold accuracy) and ``val/<set>/tar@far=1e-4`` (and
any other FAR asked for), so that ``ModelCheckpoint(monitor="val/lfw/acc", mode="max")`` can select
checkpoints by them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pytorch_lightning as pl
import torch

from facerec.errors import ConfigError
from facerec.inference import Preprocess, TorchEmbedder
from facerec.metrics.verification import far_key, kfold_accuracy, tar_at_far

from . import benchmarks as bm
from .embed import score_benchmark
from .pair_args import load_benchmark, name_benchmarks


class VerificationCallback(pl.Callback):
    """Evaluate verification benchmarks every ``every_n_steps`` steps, or at each epoch's end.

    Args:
        benchmarks: .bin files (name = file stem: lfw.bin -> val/lfw/...), pairs CSV files, or
            "synthetic" / "synthetic:N" for N held-out synthetic pairs.
        every_n_steps: evaluate after every N optimiser steps; None = once per epoch (after the
            validation loop when there is one, so ModelCheckpoint sees the metrics, else at the
            training epoch's end).
        batch_size: images per forward pass.
        flip: use the flip test.
        n_folds: folds of the accuracy protocol where the benchmark defines none.
        fars: FARs whose TAR is logged as ``tar@far=<far>``.
        prefix: metric prefix ("val").
        num_workers: image decoding threads.
        prog_bar: show the accuracies in the progress bar.

    ``pl_module`` must have a ``backbone`` (B, 3, H, W) -> (B, D); its ``preprocess``
    (:class:`~facerec.inference.Preprocess` or its dict) gives input_size, resize_mode, mean and
    std (default: the backbone's input size, 127.5/127.5).
    The latest numbers are kept in :attr:`last_metrics`, all of them as (global step, metrics)
    in :attr:`history`. Under DDP rank 0 evaluates and
    broadcasts the numbers so every rank logs the same values.
    """

    def __init__(
        self,
        benchmarks: Sequence[str],
        every_n_steps: int | None = None,
        batch_size: int = 256,
        flip: bool = True,
        n_folds: int = 10,
        fars: Sequence[float] = (1e-4,),
        prefix: str = "val",
        num_workers: int = 2,
        prog_bar: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(benchmarks, str):
            benchmarks = [benchmarks]
        if not benchmarks:
            raise ConfigError("VerificationCallback needs at least one benchmark file")
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigError(f"every_n_steps={every_n_steps}; expected a positive integer or None")
        self.specs = [str(b) for b in benchmarks]
        self.every_n_steps = every_n_steps
        self.batch_size = batch_size
        self.flip = flip
        self.n_folds = n_folds
        self.fars = tuple(float(f) for f in fars)
        self.prefix = prefix
        self.num_workers = num_workers
        self.prog_bar = prog_bar
        self._benchmarks: list[bm.PairBenchmark] | None = None
        self._last_step = -1
        self._evaluated_since_epoch_end = False
        self.last_metrics: dict[str, float] = {}
        self.history: list[tuple[int, dict[str, float]]] = []

    @property
    def benchmarks(self) -> list[bm.PairBenchmark]:
        """The loaded benchmarks (read on first use, so a bad path fails at setup)."""
        if self._benchmarks is None:
            self._benchmarks = name_benchmarks([load_benchmark(s) for s in self.specs])
        return self._benchmarks

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            _ = self.benchmarks

    def compute(self, pl_module: pl.LightningModule) -> dict[str, float]:
        """Evaluate all benchmarks with ``pl_module.backbone``: -> {metric name: value}."""
        backbone = getattr(pl_module, "backbone", None)
        if not isinstance(backbone, torch.nn.Module):
            raise ConfigError("VerificationCallback needs pl_module.backbone (an nn.Module)")
        pre = getattr(pl_module, "preprocess", None)
        pre = Preprocess.for_backbone(backbone) if pre is None else Preprocess.coerce(pre)
        embedder = TorchEmbedder.from_preprocess(backbone, pre, pl_module.device, self.batch_size)
        metrics: dict[str, float] = {}
        for b in self.benchmarks:
            s = score_benchmark(
                embedder, b.images, b.pairs, self.batch_size, self.flip, self.num_workers
            )
            kf = kfold_accuracy(s, b.issame, n_folds=self.n_folds, folds=b.folds)
            metrics[f"{self.prefix}/{b.name}/acc"] = kf.accuracy_mean
            for t in tar_at_far(s, b.issame, self.fars):
                metrics[f"{self.prefix}/{b.name}/tar@far={far_key(t.far)}"] = t.tar
        return metrics

    def _evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, on_step: bool) -> None:
        metrics = self.compute(pl_module) if trainer.is_global_zero else None
        if trainer.world_size > 1:
            metrics = trainer.strategy.broadcast(metrics, src=0)
        assert metrics is not None
        self.last_metrics = dict(metrics)
        self.history.append((trainer.global_step, dict(metrics)))
        values = {k: float(v) for k, v in metrics.items()}
        pl_module.log_dict(
            values, on_step=on_step, on_epoch=not on_step, prog_bar=self.prog_bar, logger=True
        )
        if trainer.is_global_zero and not on_step:
            text = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
            print(f"[VerificationCallback] epoch {trainer.current_epoch}: {text}", file=sys.stderr)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = self.every_n_steps
        step = trainer.global_step
        if n is None or step == 0 or step % n or step == self._last_step:
            return
        self._last_step = step
        self._evaluate(trainer, pl_module, on_step=True)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.every_n_steps is not None or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._evaluate(trainer, pl_module, on_step=False)
        self._evaluated_since_epoch_end = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.every_n_steps is None and not self._evaluated_since_epoch_end:
            self._evaluate(trainer, pl_module, on_step=False)
        self._evaluated_since_epoch_end = False


__all__ = ["VerificationCallback"]
