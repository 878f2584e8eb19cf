"""VerificationCallback in a real (tiny) Lightning fit: metrics logged, checkpoints selected."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from facerec.errors import ConfigError
from facerec.eval.benchmarks import write_bin
from facerec.eval.callback import VerificationCallback


class Tiny(pl.LightningModule):
    def __init__(self, with_val: bool = False) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
        )
        self.preprocess = {"input_size": [16, 16], "resize_mode": "resize"}
        self.with_val = with_val

    def training_step(self, batch, batch_idx):
        assert self.backbone.training  # the callback gives back train mode
        return self.backbone(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.backbone(batch[0]).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader():
    return DataLoader(TensorDataset(torch.randn(16, 3, 16, 16)), batch_size=4)


@pytest.fixture
def bench_file(tmp_path):
    rng = np.random.default_rng(0)
    bins = []
    for _ in range(40):
        img = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        bins.append(cv2.imencode(".png", img)[1].tobytes())
    path = tmp_path / "tiny.bin"
    write_bin(path, bins, [i % 2 == 0 for i in range(20)])
    return path


def trainer(tmp_path, callbacks, **kw):
    return pl.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **kw,
    )


def test_every_n_steps_logs_and_selects_checkpoints(tmp_path, bench_file):
    cb = VerificationCallback([str(bench_file)], every_n_steps=2, batch_size=8, fars=(1e-4, 1e-1))
    ckpt = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", monitor="val/tiny/acc", mode="max", every_n_train_steps=2
    )
    model = Tiny()
    tr = trainer(tmp_path, [cb, ckpt], max_steps=4)
    tr.fit(model, loader())
    keys = {"val/tiny/acc", "val/tiny/tar@far=1e-4", "val/tiny/tar@far=1e-1"}
    assert keys <= set(tr.callback_metrics)
    assert set(cb.last_metrics) == keys
    assert all(0.0 <= v <= 1.0 for v in cb.last_metrics.values())
    # evaluated at steps 2 and 4; the checkpoint kept is the one with the best accuracy
    assert [step for step, _ in cb.history] == [2, 4]
    best = max(m["val/tiny/acc"] for _, m in cb.history)
    assert float(ckpt.best_model_score) == pytest.approx(best)
    assert Path(ckpt.best_model_path).is_file()
    # compute() on the final weights reproduces the last logged numbers
    assert cb.compute(model) == pytest.approx(cb.last_metrics)


def test_epoch_mode_with_and_without_validation(tmp_path, bench_file):
    cb = VerificationCallback([str(bench_file)], batch_size=8)
    tr = trainer(tmp_path, [cb], max_epochs=1, num_sanity_val_steps=0)
    tr.fit(Tiny(), loader())
    assert "val/tiny/acc" in tr.callback_metrics
    cb2 = VerificationCallback([str(bench_file)], batch_size=8)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "c2", monitor="val/tiny/tar@far=1e-4", mode="max")
    tr = trainer(tmp_path, [cb2, ckpt], max_epochs=1, num_sanity_val_steps=0)
    tr.fit(Tiny(with_val=True), loader(), loader())
    assert "val/tiny/acc" in tr.callback_metrics and "val/loss" in tr.callback_metrics
    assert ckpt.best_model_score is not None


def test_bad_arguments():
    with pytest.raises(ConfigError, match="every_n_steps"):
        VerificationCallback(["x.bin"], every_n_steps=0)
    with pytest.raises(ConfigError, match="at least one"):
        VerificationCallback([])
    for spec in ("synthetic:", "synthetic:abc", "synthetic:-3", "synthetic:1"):
        with pytest.raises(ConfigError, match="expected synthetic:N with N a number of pairs"):
            _ = VerificationCallback([spec]).benchmarks


def test_callback_in_facerec_fit_logs_and_selects_the_checkpoint(fit_run) -> None:
    """Configured under ``trainer.callbacks`` of a ``facerec fit`` YAML (see conftest), the
    callback logs val/synthetic/acc and tar@far every step, and ``checkpoint.monitor:
    val/synthetic/acc`` keeps the best-scoring step."""
    import csv

    rows = list(csv.DictReader(fit_run.metrics_csv.open()))
    acc_key, tar_key = "val/synthetic/acc", "val/synthetic/tar@far=1e-4"
    assert acc_key in rows[0] and tar_key in rows[0], list(rows[0])
    logged = {int(r["step"]): float(r[acc_key]) for r in rows if r.get(acc_key)}
    tars = [float(r[tar_key]) for r in rows if r.get(tar_key)]
    assert len(logged) == 3 and len(tars) == 3  # every_n_steps: 1, max_steps: 3
    assert all(0.0 <= v <= 1.0 for v in [*logged.values(), *tars])
    # 20 impostor pairs: FAR 1e-4 is not resolvable, FAR 0.1 is
    assert "val/synthetic/tar@far=1e-1" in rows[0]
    ckpt = torch.load(fit_run.checkpoint, map_location="cpu", weights_only=False)
    states = [s for k, s in ckpt["callbacks"].items() if s.get("monitor") == acc_key]
    assert len(states) == 1, list(ckpt["callbacks"])
    state = states[0]
    assert float(state["best_model_score"]) == pytest.approx(max(logged.values()), abs=1e-6)
    best = Path(state["best_model_path"])
    assert best.is_file() and best.name.startswith("step") and "synacc" in best.name
    # the callback's own state is not needed to reload: the best checkpoint evaluates the same
    cb = VerificationCallback(["synthetic:40"], batch_size=64, num_workers=1, fars=(1e-4,))
    from facerec.training.module import FaceRecognitionModule

    module = FaceRecognitionModule.load_from_checkpoint(str(best), map_location="cpu")
    got = cb.compute(module)[acc_key]
    assert got == pytest.approx(float(state["best_model_score"]), abs=1e-6)
