"""TrainingCurves: what a fit logs ends up in curves.png, and survives a resume."""

from __future__ import annotations

import warnings

import cv2
import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from facerec.training.curves import TrainingCurves, plot_training_curves


class Tiny(pl.LightningModule):
    """Linear regression that logs like facerec's module (train/loss, val/acc per benchmark)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = ((self.lin(x).squeeze(1) - y) ** 2).mean()
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", 0.5 + 0.01 * self.global_step)
        self.log("val/synthetic/acc", 0.25)
        self.log("val/threshold", 0.3)  # not an accuracy: not drawn

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1)), batch_size=4)


def _fit(root, max_steps: int, ckpt=None) -> tuple[pl.Trainer, TrainingCurves]:
    cb = TrainingCurves()
    trainer = pl.Trainer(
        max_steps=max_steps,
        val_check_interval=2,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[cb],
        default_root_dir=str(root),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Tiny(), _loader(), _loader(), ckpt_path=ckpt)
    return trainer, cb


def test_curves_record_the_run_and_draw_it(tmp_path):
    trainer, cb = _fit(tmp_path, 6)
    h = cb.history
    assert [s for s, _ in h["loss"]] == [1, 2, 3, 4, 5, 6]
    assert all(v > 0 for _, v in h["loss"])
    # the lr each step used: StepLR halves it every 2 steps
    assert [v for _, v in h["lr"]] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert h["val/acc"] == [
        (2, pytest.approx(0.52)),
        (4, pytest.approx(0.54)),
        (6, pytest.approx(0.56)),
    ]  # no point from the sanity check
    assert [v for _, v in h["val/synthetic/acc"]] == [0.25] * 3
    assert "val/threshold" not in h
    img = cv2.imread(str(tmp_path / "curves.png"))
    assert img is not None and img.shape[0] > 500 and img.shape[1] > 500 and img.std() > 10


def test_curves_continue_after_a_resume(tmp_path):
    trainer, _ = _fit(tmp_path / "a", 4)
    ckpt = tmp_path / "a" / "last.ckpt"
    trainer.save_checkpoint(str(ckpt))
    _, cb = _fit(tmp_path / "a", 8, ckpt=str(ckpt))
    assert [s for s, _ in cb.history["loss"]] == list(range(1, 9))
    assert [s for s, _ in cb.history["val/acc"]] == [2, 4, 6, 8]


def test_plot_without_validation_or_loss(tmp_path):
    plot_training_curves(tmp_path / "c.png", {"loss": [], "lr": [(1, 0.1), (2, 0.1)]})
    assert cv2.imread(str(tmp_path / "c.png")) is not None
