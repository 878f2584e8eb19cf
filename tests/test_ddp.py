"""DDP on CPU (gloo): a two-process run gives the losses of a one-process run.

Two comparisons, each a one-process and a two-process run in child processes (Lightning starts
the second rank itself by re-running the command):

1. The real CLI (``facerec fit --config configs/quickstart.yaml``, shrunk), replicated ArcFace
   head, with every rank reading the same batches (``--trainer.use_distributed_sampler false``)
   against one process with the same per-process batch: DDP averages two identical gradients, so
   every logged loss must agree. Tolerance: |Δ| ≤ 1e-4·|loss| per step (seen: ≤ 1e-5; the
   difference is float summation order, as Lightning runs each CPU rank with fewer threads).
2. The same *global* batch split over two processes against one process with double the batch:
   sharded head (Partial FC, sample rate 1) + CenterLoss, a DataModule whose sampler is an
   explicit ``DistributedSampler(seed=data.seed)`` (the change proposed for FaceDataModule: with it,
   the global batch of step k is the same set of images for any number of processes), and
   BatchNorm frozen (eval mode) because BN statistics are per process on CPU (SyncBatchNorm
   needs GPUs; there ``--trainer.sync_batchnorm true`` plays that part). The sharded head logs
   the global-batch cross-entropy on every rank. Tolerance: |Δ| ≤ 1e-4·|loss| per step.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
RTOL = 1e-4

TINY = [
    "--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.strategy", "ddp",
    "--trainer.max_steps", "3", "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "1",
    "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--checkpoint_every_n_steps", "0",
    "--data.synthetic.identities", "16", "--data.synthetic.images_per_identity", "8",
    "--data.synthetic.size", "32", "--data.image_size", "[32,32]", "--data.val_identities", "0",
    "--model.backbone.init_args.input_size", "[32,32]", "--model.backbone.init_args.depth", "18",
    "--model.backbone.init_args.width", "0.125", "--model.backbone.init_args.embedding_dim", "16",
    "--data.batch_size", "8", "--data.num_workers", "0", "--data.augment", "[]",
    "--model.lr_reference_batch", "null",
]  # fmt: skip


def _losses(out: Path, key: str) -> list[float]:
    """Per-step values of ``key`` from the CSVLogger's metrics.csv, in step order."""
    rows = list(csv.DictReader(open(next(out.rglob("metrics.csv")))))
    return [float(r[key]) for r in rows if r.get(key)]


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _assert_same(one: list[float], two: list[float]) -> None:
    assert len(one) == len(two) == 3, (one, two)
    for step, (a, b) in enumerate(zip(one, two, strict=True)):
        assert abs(a - b) <= RTOL * abs(a), f"step {step}: one process {a}, two processes {b}"


def test_cli_two_processes_same_losses_as_one(tmp_path):
    runs = {}
    for devices in (1, 2):
        out = tmp_path / f"devices{devices}"
        cmd = [
            PYTHON, "-m", "facerec", "fit", "--config", str(REPO / "configs/quickstart.yaml"),
            *TINY, "--trainer.devices", str(devices), "--trainer.use_distributed_sampler", "false",
            "--trainer.default_root_dir", str(out),
            "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(out),
        ]  # fmt: skip
        _run(cmd, tmp_path)
        runs[devices] = _losses(out, "train/loss")
    _assert_same(runs[1], runs[2])
    assert runs[1][0] != runs[1][2]  # it trained


GLOBAL_BATCH = r'''
import sys

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, DistributedSampler

from facerec.data.datamodule import FaceDataModule, SyntheticOptions
from facerec.module import FaceRecognitionModule

devices, out = int(sys.argv[1]), sys.argv[2]


class GlobalBatchData(FaceDataModule):
    """The proposed FaceDataModule sampler: DistributedSampler for any number of processes."""

    def train_dataloader(self):
        sampler = DistributedSampler(
            self.train_set, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank,
            shuffle=True, seed=self.seed, drop_last=True,
        )
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler,
                          drop_last=True, num_workers=0)


class FrozenBatchNorm(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        for m in pl_module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


if __name__ == "__main__":
    pl.seed_everything(0)
    data = GlobalBatchData(
        image_size=(32, 32), batch_size=16 // devices, num_workers=0, augment=[],
        val_identities=0, synthetic=SyntheticOptions(identities=16, images_per_identity=8, size=32),
    )
    model = FaceRecognitionModule.from_config(
        backbone={"class_path": "facerec.models.IResNet", "init_args": {
            "depth": 18, "width": 0.125, "embedding_dim": 16, "input_size": [32, 32]}},
        head={"class_path": "facerec.heads.sharded.ShardedMarginHead",
              "init_args": {"sample_rate": 1.0}},
        center_loss={"weight": 0.01, "alpha": 0.5},
        num_classes=16, lr=0.01, lr_reference_batch=None, warmup_epochs=0,
        lr_schedule="constant",
    )
    trainer = pl.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp", max_steps=3,
        logger=CSVLogger(out), log_every_n_steps=1, use_distributed_sampler=False,
        callbacks=[FrozenBatchNorm()], enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, num_sanity_val_steps=0,
    )
    trainer.fit(model, data)
'''


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs a POSIX system")
def test_same_global_batch_two_processes_same_loss_as_one(tmp_path):
    script = tmp_path / "global_batch.py"
    script.write_text(GLOBAL_BATCH)
    runs = {}
    for devices in (1, 2):
        out = tmp_path / f"devices{devices}"
        _run([PYTHON, str(script), str(devices), str(out)], REPO)
        runs[devices] = _losses(out, "train/ce")
    _assert_same(runs[1], runs[2])
    assert runs[1][0] != runs[1][2]
