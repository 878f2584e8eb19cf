"""A Lightning callback the multi-process and resume tests add to real ``facerec fit`` runs.

Not a test module: the tests put ``tests/`` on PYTHONPATH and pass
``--trainer.callbacks+=lightning_probe.Probe``; it is configured by environment variables, which
Lightning's DDP launcher hands on to the ranks it starts.

* ``FACEREC_PROBE_OUT``: folder; at the end of fit, rank 0 writes ``probe.json`` (per step: the
  global step, the loss averaged over the ranks, the learning rate, the labels of the global
  batch in rank order) and ``weights.pt`` (the module's full state_dict, which every rank builds:
  a sharded head gathers its centres).
* ``FACEREC_KILL_AT_STEP``: end the process abruptly (``os._exit``, no clean-up, like a killed
  job) right after this global step, before that step's checkpoint is written.

:func:`fit` runs ``facerec fit`` in a child process with this module importable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch


class Probe(pl.Callback):
    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        loss = trainer.strategy.reduce(loss.detach().float(), reduce_op="mean")
        labels = pl_module.all_gather(batch[1]).reshape(-1)
        self.steps.append(
            {
                "step": trainer.global_step,
                "epoch": trainer.current_epoch,
                "loss": float(loss),
                "lr": trainer.optimizers[0].param_groups[0]["lr"],
                "labels": labels.tolist(),
            }
        )
        kill = os.environ.get("FACEREC_KILL_AT_STEP")
        if kill and trainer.global_step == int(kill):
            os._exit(3)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        out = os.environ.get("FACEREC_PROBE_OUT")
        if out and trainer.global_rank == 0:  # the starting weights, as weights0.pt
            Path(out).mkdir(parents=True, exist_ok=True)
            torch.save(state, Path(out) / "weights0.pt")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        out = os.environ.get("FACEREC_PROBE_OUT")
        if out and trainer.global_rank == 0:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "probe.json").write_text(
                json.dumps({"world": trainer.world_size, "steps": self.steps})
            )
            torch.save(state, Path(out) / "weights.pt")


REPO = Path(__file__).resolve().parents[1]


def fit(out: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``facerec fit ARGS`` in a child process, default_root_dir and probe output ``out``."""
    env = dict(os.environ, **(env or {}))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), env.get("PYTHONPATH", "")])
    env.setdefault("FACEREC_PROBE_OUT", str(out))
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny models; more threads only contend on 2 cores
    cmd = [sys.executable, "-m", "facerec", "fit", *args, "--trainer.default_root_dir", str(out)]
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=out, env=env)


class ShardCheck(pl.Callback):
    """Per-rank facts about a sharded head, written to ``$FACEREC_PROBE_OUT/shard{rank}.pt``.

    At train start: the head's weight and its SGD momentum (as restored from a checkpoint); at
    train end: world size, shard range, the local rows, whether DDP's reducer holds the shard
    and the backbone, and embeddings of fixed random images in evaluation mode.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        head, opt = pl_module.head, trainer.optimizers[0]
        momentum = opt.state.get(head.weight, {}).get("momentum_buffer")
        self.start_momentum = None if momentum is None else momentum.clone()
        self.start_weight = head.weight.detach().clone()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from torch.nn.parallel import DistributedDataParallel

        head, rank = pl_module.head, trainer.global_rank
        ddp = trainer.strategy.model
        info = {
            "world": trainer.world_size,
            "shard": head.shard,
            "weight": head.weight.detach().clone(),
            "start_weight": self.start_weight,
            "start_momentum": self.start_momentum,
        }
        if isinstance(ddp, DistributedDataParallel):
            info["ignored"] = sorted(ddp.parameters_to_ignore)
            info["in_reducer"] = any(p is head.weight for p in ddp._module_parameters)
            first = next(pl_module.backbone.parameters())
            info["backbone_in_reducer"] = any(p is first for p in ddp._module_parameters)
        g = torch.Generator().manual_seed(123)
        x = torch.randn(4, 3, *pl_module.backbone.input_size, generator=g)
        pl_module.eval()
        with torch.no_grad():
            info["embeddings"] = pl_module(x)
        pl_module.train()
        torch.save(info, Path(os.environ["FACEREC_PROBE_OUT"]) / f"shard{rank}.pt")
