"""Shared settings and fixtures for the eval tests.

``fit_run`` trains a tiny model once per session with ``facerec fit`` (the real CLI, config file,
data module and module), with the :class:`~facerec.eval.callback.VerificationCallback` evaluating
held-out synthetic pairs every step and ``ModelCheckpoint`` monitoring its accuracy. The eval
end-to-end test evaluates its checkpoint; the callback test reads what the run logged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

FIT_CONFIG = """\
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  max_steps: 3
  max_epochs: 1
  precision: 32-true
  num_sanity_val_steps: 0
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: pytorch_lightning.loggers.CSVLogger
    init_args: {save_dir: ROOT, name: logs, version: 0}
  callbacks:
    - class_path: facerec.eval.callback.VerificationCallback
      init_args:
        benchmarks: ["synthetic:40"]
        every_n_steps: 1
        batch_size: 64
        num_workers: 1
        fars: [0.1, 0.0001]
model:
  backbone:
    class_path: facerec.models.IResNet
    init_args: {depth: 18, width: 0.25, embedding_dim: 32, input_size: [32, 32]}
  optim: {lr_reference_batch: null}
data:
  image_size: [32, 32]
  batch_size: 16
  num_workers: 0
  synthetic: {identities: 12, images_per_identity: 4}
  val_identities: 4
  val_pairs: 20
checkpoint:
  monitor: val/synthetic/acc
  mode: max
  save_top_k: 1
  every_n_train_steps: 1
  filename: "step{step:03d}-synacc{val/synthetic/acc:.4f}"
"""


@dataclass(frozen=True)
class FitRun:
    """A finished ``facerec fit`` run: its folder and the checkpoint to evaluate."""

    root: Path
    checkpoint: Path
    metrics_csv: Path


@pytest.fixture(scope="session")
def fit_run(tmp_path_factory: pytest.TempPathFactory) -> FitRun:
    """Train 3 steps with ``facerec fit`` on synthetic faces (IResNet-18 x0.25, 32x32, D=32)."""
    from facerec.cli import main as facerec_main

    root = tmp_path_factory.mktemp("fit")
    cfg = root / "fit.yaml"
    cfg.write_text(FIT_CONFIG.replace("ROOT", str(root)))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = facerec_main(["fit", "--config", str(cfg), "--trainer.default_root_dir", str(root)])
    finally:
        torch.set_num_threads(before)
    assert rc == 0
    last = root / "checkpoints" / "last.ckpt"
    assert last.is_file(), sorted(root.rglob("*"))
    return FitRun(root, last, root / "logs" / "version_0" / "metrics.csv")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run torch single-threaded: the tiny models here are 10-20x slower with several OpenMP
    threads on a shared, oversubscribed CI machine (threads spin-wait for each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
