"""DDP on CPU (gloo): two processes give the per-step losses and weights of one process.

The real CLI (``facerec fit --config configs/quickstart.yaml``, shrunk: IResNet-18 at width 1/8,
32×32 input, 16-D embeddings), ArcFace + CenterLoss, the same *global* batch of 16 images: one
process with ``data.batch_size 16`` against ``--trainer.strategy ddp --trainer.devices 2`` with
``data.batch_size 8``. FaceDataModule's ShuffleBatchSampler makes the global batch of each step the
same set of images for any number of processes (checked: the labels gathered in rank order are
those of the one-process batch, in order). BatchNorm normalises with per-process batch statistics
on CPUs (SyncBatchNorm needs GPUs; there ``--trainer.sync_batchnorm true`` plays this part), so
the runs use ``facerec.training.callbacks.FreezeBatchNorm``. DDP averages the two ranks' gradients,
which
is the gradient of the global-batch mean loss; CenterLoss updates its centres from the gathered
batch.

Tolerance: per-step loss (averaged over ranks) |Δ| ≤ 1e-5·|loss|; weights after 4 steps, per
tensor W, |Δ| ≤ 1e-4·|w| + 1e-5·max(1, max|W|). Observed: ≤ 1e-7 relative on the losses (float
summation order: the batch is split, so convolutions run on other shapes).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lightning_probe import REPO, fit

LOSS_RTOL = 1e-5

TINY = [
    "--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.strategy", "ddp",
    "--trainer.max_steps", "4", "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "1",
    "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
    "--checkpoint_every_n_steps", "0", "--trainer.enable_checkpointing", "false",
    "--data.synthetic.identities", "16", "--data.synthetic.images_per_identity", "8",
    "--data.synthetic.size", "32", "--data.image_size", "[32,32]", "--data.val_identities", "0",
    "--model.backbone.init_args.input_size", "[32,32]", "--model.backbone.init_args.depth", "18",
    "--model.backbone.init_args.width", "0.125", "--model.backbone.init_args.embedding_dim", "16",
    "--data.num_workers", "0", "--data.augment", "[]", "--model.optim.lr_reference_batch", "null",
    "--model.optim.lr", "0.01",
    "--model.optim.schedule", "constant", "--model.optim.warmup_epochs", "0",
    "--trainer.callbacks+=facerec.training.callbacks.FreezeBatchNorm",
    "--trainer.callbacks+=lightning_probe.Probe",
]  # fmt: skip


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs a POSIX system")
def test_two_processes_same_losses_and_weights_as_one(tmp_path):
    runs = {}
    for devices, batch in ((1, 16), (2, 8)):
        out = tmp_path / f"devices{devices}"
        proc = fit(
            out, "--config", str(REPO / "configs/quickstart.yaml"), *TINY,
            "--trainer.devices", str(devices), "--data.batch_size", str(batch),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-4000:]
        probe = json.loads((out / "probe.json").read_text())
        assert probe["world"] == devices
        runs[devices] = (probe["steps"], torch.load(out / "weights.pt"))
    (one, w1), (two, w2) = runs[1], runs[2]
    assert [s["step"] for s in one] == [s["step"] for s in two] == [1, 2, 3, 4]
    for a, b in zip(one, two, strict=True):
        assert a["labels"] == b["labels"], "the global batches differ"
        assert abs(a["loss"] - b["loss"]) <= LOSS_RTOL * abs(a["loss"]), (a["step"], a, b)
    assert one[0]["loss"] != one[-1]["loss"]  # it trained
    assert len({tuple(s["labels"]) for s in one}) == 4  # four different batches
    assert w1.keys() == w2.keys()
    for k in w1:
        scale = max(1.0, float(w1[k].abs().max())) if w1[k].is_floating_point() else 1.0
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5 * scale, msg=k)
    rel = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(one, two, strict=True))
    print(f"DDP vs one process: max relative per-step loss difference {rel:.2e}")
