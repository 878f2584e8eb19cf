"""Every recipe in configs/ fits two training steps on the synthetic set through ``facerec fit``.

The recipe is kept as written (head, losses, optimiser, schedule, sampler) and only its cost is
shrunk from the command line, as a user would: a tiny IResNet-18 (width 1/16, 32×32 input,
32-D embedding) where the recipe uses an IResNet, 32×32 synthetic images of a few identities,
a batch of 8 (or P×K = 4×2), two steps on one CPU device in float32. The test reads the logged
training loss back from the CSV log and the step count from the last checkpoint.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml

from facerec.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def _takes_input_size(class_path: str) -> bool:
    """Whether the backbone ``class_path`` has an ``input_size`` argument (not a fixed input)."""
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    if not module:
        return False
    cls = getattr(importlib.import_module(module), name)
    return "input_size" in inspect.signature(cls).parameters


def tiny_overrides(config: dict) -> list[str]:
    """Command-line options that shrink a recipe's model and data, and nothing of its trainer:
    a tiny IResNet-18 where it uses an IResNet, a few 32×32 synthetic identities, a batch of 8
    (or P×K = 4×2), no loader workers. Shared with tests/test_recipes_e2e.py."""
    model = config.get("model") or {}
    data = config.get("data") or {}
    args = [
        "--data.root=null",
        "--data.num_workers=0",
        "--data.pin_memory=false",
        "--data.synthetic.identities=8",
        "--data.synthetic.images_per_identity=4",
        "--data.val_identities=4",
        "--data.val_pairs=8",
    ]
    sampler = str((data.get("sampler") or {}).get("class_path", ""))
    if sampler.endswith(("PKBatches", "HardIdentityBatches")):
        p_k = ["p=4", "k=2", "min_images=2"]
        args += [f"--data.sampler.init_args.{a}" for a in p_k]
    elif sampler.endswith("OfflineTripletBatches"):
        args += [
            "--data.sampler.init_args.triplets_per_batch=3",
            "--data.sampler.init_args.mining.identities=8",
        ]
    else:
        args += ["--data.batch_size=8"]
    backbone = model.get("backbone") or {}
    if str(backbone.get("class_path", "")).endswith("IResNet"):
        args += [
            "--model.backbone.init_args.depth=18",
            "--model.backbone.init_args.width=0.0625",
            "--model.backbone.init_args.embedding_dim=32",
        ]
    if _takes_input_size(str(backbone.get("class_path", ""))):
        side = [32, 32]  # facerec fit gives the backbone data.image_size
    else:  # a backbone with a fixed input: keep the recipe's image size
        side = list(data.get("image_size") or [112, 112])
    args += [f"--data.image_size=[{side[0]}, {side[1]}]", f"--data.synthetic.size={max(side)}"]
    return args


def _overrides(config: dict, tmp: Path) -> list[str]:
    args = [
        "--trainer.max_steps=2",
        "--trainer.max_epochs=-1",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.num_nodes=1",
        "--trainer.strategy=auto",
        "--trainer.precision=32-true",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp}",
        "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
        f"--trainer.logger.save_dir={tmp}",
        "--data.val_images_per_identity=2",
        *tiny_overrides(config),
    ]
    if (config.get("model") or {}).get("init_from"):
        args += ["--model.init_from=null"]  # the recipe's checkpoint path does not exist here
    return args


def _logged_losses(tmp: Path) -> list[float]:
    files = sorted(tmp.rglob("metrics.csv"))
    assert files, f"no metrics.csv under {tmp}"
    rows = list(csv.DictReader(files[-1].open()))
    return [float(r["train/loss"]) for r in rows if r.get("train/loss")]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_fits_two_steps(path: Path, tmp_path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    rc = main(["fit", "--config", str(path), *_overrides(config, tmp_path)])
    assert rc == 0, f"facerec fit --config {path.name} failed"
    losses = _logged_losses(tmp_path)
    assert len(losses) == 2, losses
    assert all(math.isfinite(v) for v in losses), losses
    last = sorted(tmp_path.rglob("last.ckpt"))
    assert last, "no last.ckpt written"
    ckpt = torch.load(last[-1], map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2
