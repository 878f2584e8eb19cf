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
        from facerec import distributed
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
