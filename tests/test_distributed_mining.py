"""Two real gloo processes: gathered metric losses give the gradient of the global-batch loss.

Each rank feeds its half of a fixed batch through a DDP-wrapped linear layer into TripletLoss /
ContrastiveLoss with gather=True; after DDP's gradient averaging, the parameter gradients must
equal those of one process computing the same loss on the whole batch, and every rank must report
the global-batch loss value. The two processes are spawned by a small launcher script run with
subprocess (a process spawned from pytest itself would re-import the test session).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from facerec.losses import ContrastiveLoss, TripletLoss

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2

SCRIPT = textwrap.dedent(
    """
    import multiprocessing
    import sys


    def worker(rank, world, port, out):
        import torch
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP

        torch.set_num_threads(1)
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
        )
        from facerec.base import distributed
        from facerec.losses import ContrastiveLoss, TripletLoss

        sys.path.insert(0, out)
        from batch import make_batch, make_model, losses

        assert distributed.world_size() == world and distributed.rank() == rank
        x, labels = make_batch()
        n = x.shape[0] // world
        local_x, local_y = x[rank * n : (rank + 1) * n], labels[rank * n : (rank + 1) * n]
        model = DDP(make_model())
        results = {}
        for name, loss_fn in losses(TripletLoss, ContrastiveLoss).items():
            model.zero_grad()
            loss = loss_fn(model(local_x), local_y)
            loss.backward()
            results[name] = {
                "loss": loss.item(),
                "grads": [p.grad.clone() for p in model.module.parameters()],
                "stats": {k: v.item() for k, v in loss_fn.stats.items()},
            }
        torch.save(results, f"{out}/rank{rank}.pt")
        dist.barrier()  # no rank tears gloo down while its peer still talks to it
        dist.destroy_process_group()


    if __name__ == "__main__":
        # torch is imported by the two workers only (the launcher stays light)
        port, out = int(sys.argv[1]), sys.argv[2]
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=worker, args=(r, 2, port, out)) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(150)
        codes = [p.exitcode for p in procs]
        for p in procs:
            if p.exitcode is None:
                p.kill()
        sys.exit(0 if codes == [0, 0] else f"worker exit codes {codes}")
    """
)

BATCH = textwrap.dedent(
    """
    import torch


    def make_batch():
        g = torch.Generator().manual_seed(1234)
        x = torch.randn(32, 12, generator=g, dtype=torch.float64)
        # 8 identities x 4 images, shuffled so that most identities straddle the two ranks
        labels = torch.arange(8).repeat_interleave(4)[torch.randperm(32, generator=g)]
        return x, labels


    def make_model():
        torch.manual_seed(0)
        return torch.nn.Linear(12, 8).double()


    def losses(TripletLoss, ContrastiveLoss):
        return {
            "batch_hard": TripletLoss(mining="batch_hard", gather=True),
            "batch_all": TripletLoss(mining="batch_all", gather=True),
            "semi_hard": TripletLoss(mining="semi_hard", gather=True),
            "soft_batch_hard": TripletLoss(mining="batch_hard", soft_margin=True, gather=True),
            "contrastive": ContrastiveLoss(margin=1.0, gather=True),
        }
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gathered_losses_match_the_single_process_global_batch(
    tmp_path: Path,
) -> None:
    (tmp_path / "run.py").write_text(SCRIPT)
    (tmp_path / "batch.py").write_text(BATCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "run.py"), str(free_port()), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    sys.path.insert(0, str(tmp_path))
    try:
        from batch import losses, make_batch, make_model
    finally:
        sys.path.remove(str(tmp_path))
    x, labels = make_batch()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for name, loss_fn in losses(TripletLoss, ContrastiveLoss).items():
        model = make_model()
        loss = loss_fn(model(x), labels)  # single process, whole batch
        loss.backward()
        for r in range(WORLD):
            got = ranks[r][name]
            assert got["loss"] == pytest.approx(loss.item(), rel=1e-10), (name, r)
            for g_ddp, p in zip(got["grads"], model.parameters(), strict=True):
                torch.testing.assert_close(g_ddp, p.grad, rtol=1e-9, atol=1e-12)
            for key, value in loss_fn.stats.items():
                assert got["stats"][key] == pytest.approx(value.item(), rel=1e-10), (name, key)
        assert any(p.grad.abs().sum() > 0 for p in model.parameters())


SAMPLER_SCRIPT = textwrap.dedent(
    """
    import sys

    import numpy as np
    import pytorch_lightning as pl
    import torch

    from facerec.data.datamodule import FaceDataModule, SyntheticOptions
    from facerec.data.hard_identity import HardIdentityBatches, HardIdentityOptions
    from facerec.data.offline_triplets import OfflineTripletBatches, OfflineTripletOptions
    from facerec.training.module import FaceRecognitionModule
    from facerec.training.refresh import data_callbacks


    class Record(pl.Callback):
        def __init__(self):
            self.labels = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.labels.append(batch[1].tolist())


    def fit(name, out, sampler):
        pl.seed_everything(0)
        torch.set_num_threads(1)
        dm = FaceDataModule(
            image_size=(32, 32), num_workers=0, augment=[], val_identities=0,
            synthetic=SyntheticOptions(identities=24, images_per_identity=4, size=32),
            sampler=sampler,
        )
        model = FaceRecognitionModule.from_config(
            backbone={"class_path": "facerec.models.IResNet", "init_args": {
                "depth": 18, "width": 0.0625, "embedding_dim": 16, "input_size": [32, 32]}},
            metric_loss={"class_path": "facerec.losses.TripletLoss",
                         "init_args": {"offline": "alongside"} if name == "offline" else {}},
            num_classes=24, optim={"lr": 0.01, "lr_reference_batch": None, "warmup_epochs": 0},
        )
        model.attach_data(dm)
        rec = Record()
        trainer = pl.Trainer(
            accelerator="cpu", devices=2, strategy="ddp", max_steps=3, logger=False,
            callbacks=[rec, *data_callbacks(dm)], use_distributed_sampler=False,
            enable_progress_bar=False, enable_model_summary=False,
            enable_checkpointing=False, num_sanity_val_steps=0,
        )
        trainer.fit(model, dm)
        s = dm.train_batch_sampler
        torch.save({
            "labels": rec.labels,
            "sampler": type(s).__name__,
            "loader_uses_it": trainer.train_dataloader.batch_sampler.inner is s,  # (epoch keys)
            "table": getattr(s, "neighbours", None),
            "pool": getattr(s, "pool", None),
            "len": len(s),
            "metrics": sorted(trainer.callback_metrics),
        }, f"{out}/{name}_rank{trainer.global_rank}.pt")


    if __name__ == "__main__":
        out = sys.argv[1]
        fit("hard", out, HardIdentityBatches(3, 2, mining=HardIdentityOptions(
            every_n_steps=1, neighbours=4, group_size=2, hard_fraction=1.0, centres="embeddings")))
        fit("offline", out, OfflineTripletBatches(3, mining=OfflineTripletOptions(
            every_n_steps=1, identities=12, images_per_identity=3, selection="hard")))
    """
)


def test_hard_identity_and_offline_samplers_under_two_process_ddp(tmp_path: Path) -> None:
    """With the refresh callbacks and use_distributed_sampler=False (what `facerec fit` wires),
    Lightning leaves the samplers unwrapped; ranks agree on the mined tables, not on batches."""
    (tmp_path / "fit.py").write_text(SAMPLER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env["MASTER_PORT"] = str(free_port())
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "fit.py"), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name in ("hard", "offline"):
        r0, r1 = (torch.load(tmp_path / f"{name}_rank{r}.pt", weights_only=False) for r in (0, 1))
        assert r0["loader_uses_it"] and r1["loader_uses_it"]  # no DistributedSampler around it
        assert r0["len"] == r1["len"] and len(r0["labels"]) == len(r1["labels"]) == 3
        for key in ("active_fraction", "mean_d_ap", "mean_d_an", "num_valid_triplets"):
            assert f"train/metric/{key}" in r0["metrics"]
        assert "train/mining/refresh_seconds" in r0["metrics"]
        for b0, b1 in zip(r0["labels"], r1["labels"], strict=True):
            if name == "hard":  # P×K, distinct identities within and across the ranks
                assert len(b0) == len(b1) == 6
                ids0, ids1 = set(b0[::2]), set(b1[::2])
                assert len(ids0) == len(ids1) == 3 and not ids0 & ids1
            else:  # (a, p, n) triplets on each rank
                for b in (b0, b1):
                    t = torch.tensor(b).view(3, 3)
                    assert (t[:, 0] == t[:, 1]).all() and (t[:, 0] != t[:, 2]).all()
    hard0, hard1 = (torch.load(tmp_path / f"hard_rank{r}.pt", weights_only=False) for r in (0, 1))
    assert hard0["sampler"] == "HardIdentitySampler" and hard0["table"] is not None
    assert (hard0["table"] == hard1["table"]).all()
    off0, off1 = (torch.load(tmp_path / f"offline_rank{r}.pt", weights_only=False) for r in (0, 1))
    assert len(off0["pool"]) > 0 and (off0["pool"] == off1["pool"]).all()
