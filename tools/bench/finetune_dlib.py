"""Fine-tuning dlib-r29 on ORL split by identity, against the same network from scratch.

ORL (../shared/data/orl_faces) as dlib-aligned 150×150 chips (tools/bench/doctor_orl.py's
``write_chips``). People s1–s20 (200 photos) train; s21–s40 (200 photos, never seen) are the
test: every genuine pair (900) and as many seeded impostor pairs, 10-fold verification accuracy
of the cosine (tools/bench/dlib_resnet.py's ``orl_pairs`` and ``kfold``). Three models:

* dlib-r29 as it ships (no training);
* ``configs/finetune_dlib_r29.yaml`` as written (init_from dlib-r29, new ArcFace head, trunk
  frozen for 40 steps then at 0.3x, head at 10x, lr 0.01), ``--steps`` optimiser steps;
* the same DlibResNet and head from random weights (``--model.init_from=null``, no freeze, no
  multipliers, lr ``--scratch-lr``), the same number of steps;
* ``frozen`` (only with ``--runs``): the recipe with the trunk frozen for the whole run
  (``--model.freeze.steps=0``: only dlib's fc 256→128 and the head train).

Both fits: batch 32, no held-out split of the training people (the test is s21–s40), float32,
on the CPU.

    .venv/bin/python tools/bench/finetune_dlib.py --steps 100      # ~15 min on 2 busy cores
    .venv/bin/python tools/bench/finetune_dlib.py --runs shipped frozen
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from dlib_resnet import ORL, kfold, orl_pairs
from doctor_orl import write_chips

from facerec.cli import main as facerec_main
from facerec.inference import load_checkpoint_embedder

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "finetune_dlib_r29.yaml"


def held_out(chips: Path) -> tuple[np.ndarray, np.ndarray]:
    """The test people's chips (N, 150, 150, 3) RGB uint8 and labels (N,)."""
    imgs, labels = [], []
    for s in range(21, 41):
        for k in range(1, 11):
            bgr = cv2.imread(str(chips / f"s{s}" / f"{k}.png"))
            imgs.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            labels.append(s)
    return np.stack(imgs), np.asarray(labels)


def accuracy(model: str, images: np.ndarray, pairs: np.ndarray, same: np.ndarray) -> dict:
    emb = load_checkpoint_embedder(model)(images)
    m, s = kfold(emb, pairs, same)
    return {"acc": round(100 * m, 2), "std": round(100 * s, 2)}


def fit(train: Path, out: Path, steps: int, extra: list[str]) -> tuple[Path, float]:
    args = [
        "fit", "--config", str(RECIPE), "--data.root", str(train),
        "--trainer.default_root_dir", str(out), "--trainer.accelerator=cpu",
        f"--trainer.max_steps={steps}", "--trainer.max_epochs=-1",
        "--trainer.enable_progress_bar=false", "--data.val_identities=0",
        "--data.num_workers=1", *extra,
    ]  # fmt: skip
    t = time.perf_counter()
    rc = facerec_main(args)
    if rc != 0:
        raise SystemExit(f"facerec fit failed ({rc}): {' '.join(args)}")
    return out / "checkpoints" / "last.ckpt", time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=100, help="optimiser steps of each fit")
    ap.add_argument(
        "--scratch-lr", type=float, default=0.01, help="from scratch: the base rate (0.1 diverged)"
    )
    ap.add_argument(
        "--runs",
        nargs="+",
        default=["shipped", "finetune", "scratch"],
        choices=["shipped", "finetune", "scratch", "frozen"],
    )
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)
    if not ORL.is_dir():
        print(f"{ORL} is absent", file=sys.stderr)
        return 1
    res: dict = {"cpu": platform.processor() or platform.machine(), "steps": a.steps}
    with tempfile.TemporaryDirectory() as tmp:
        chips, train = Path(tmp) / "chips", Path(tmp) / "train"
        res["dlib_faces_found"] = write_chips(chips)
        for s in range(1, 21):
            shutil.copytree(chips / f"s{s}", train / f"s{s}")
        images, labels = held_out(chips)
        pairs, same = orl_pairs(labels)
        res["pairs"], res["genuine"] = len(pairs), int(same.sum())
        if "shipped" in a.runs:
            res["dlib-r29 as shipped"] = accuracy("dlib-r29", images, pairs, same)
        fits = {
            "finetune": ("fine-tuned from dlib-r29", []),
            "scratch": ("from scratch", ["--model.init_from=null", "--model.freeze=null",
                                         "--model.lr_multipliers=null",
                                         f"--model.optim.lr={a.scratch_lr}"]),
            "frozen": ("fine-tuned, trunk frozen throughout", ["--model.freeze.steps=0"]),
        }  # fmt: skip
        for run in [r for r in a.runs if r in fits]:
            print(json.dumps(res), flush=True)
            name, extra = fits[run]
            ckpt, sec = fit(train, Path(tmp) / run, a.steps, extra)
            res[name] = {**accuracy(str(ckpt), images, pairs, same), "s": round(sec)}
    res["load_after"] = os.getloadavg()
    print(json.dumps(res, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
