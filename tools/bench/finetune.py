"""Fine-tuning from a pre-trained model on a small set, against training from scratch.

1. Pre-train a small IResNet-18 on one synthetic identity set (seed 0) with the quick-start
   recipe, and save its backbone as an insightface-layout ``backbone.pth`` (what a user
   downloads from arcface_torch).
2. On a small, different set: synthetic identities of another seed (``--ids`` × ``--imgs``,
   40 × 10 by default), and, when ``../shared/data/orl_faces`` exists, 20 ORL subjects × 10
   images (real greyscale faces, 92×112, not aligned),
   * fine-tune with ``configs/finetune_small.yaml`` (``--model.init_from backbone.pth``),
   * train from scratch with ``configs/quickstart.yaml`` for the same number of epochs.
3. Report the 10-fold verification accuracy on held-out identities of each small set (other
   synthetic identities of the same seed; ORL subjects 21–40) of: the pre-trained model as it is,
   the fine-tuned model and the from-scratch model.

    .venv/bin/python tools/bench/finetune.py                  # about 6 min on 2 busy cores
    .venv/bin/python tools/bench/finetune.py --pretrain-ids 200 --pretrain-epochs 3  # quicker

Everything is seeded; only the timings vary between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facerec.cli import main as facerec_main
from facerec.data.image import read_image
from facerec.data.pairs import SYNTHETIC_HELD_OUT_START, make_pairs
from facerec.data.synthetic import SyntheticFaces, write_synthetic_folder
from facerec.inference import embed_images, load_checkpoint_embedder
from facerec.metrics.verification import kfold_accuracy

ROOT = Path(__file__).resolve().parents[2]

ORL = ROOT.parent / "shared" / "data" / "orl_faces"
SIZE = 48
REUSE = False  # set by --reuse


@dataclass
class HeldOut:
    """Held-out verification pairs: images (uint8 RGB), (P, 2) pair indices, (P,) same."""

    name: str
    images: list[np.ndarray]
    pairs: np.ndarray
    issame: np.ndarray


def _pairs(ids: int, imgs: int, pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    i1, i2, same = make_pairs(np.repeat(np.arange(ids), imgs), pairs, seed)
    return np.stack([i1, i2], 1), same


def synthetic_held_out(seed: int, ids: int, imgs: int, pairs: int) -> HeldOut:
    """``ids`` held-out identities (from SYNTHETIC_HELD_OUT_START) of the synthetic set ``seed``."""
    start = SYNTHETIC_HELD_OUT_START
    faces = SyntheticFaces(ids, imgs, size=SIZE, seed=seed)
    images = [faces.render(start + i, j) for i in range(ids) for j in range(imgs)]
    return HeldOut(f"synthetic seed {seed}, held-out ids", images, *_pairs(ids, imgs, pairs, seed))


def orl_held_out(subjects: list[str], pairs: int) -> HeldOut:
    """All 10 images of each ORL subject in ``subjects``."""
    images = [read_image(ORL / s / f"{j}.pgm") for s in subjects for j in range(1, 11)]
    return HeldOut(
        f"ORL {subjects[0]}–{subjects[-1]}", images, *_pairs(len(subjects), 10, pairs, 0)
    )


def accuracy(ckpt: Path, held: HeldOut) -> float:
    """10-fold accuracy of the checkpoint's embeddings (flip test, cosine) on ``held``."""
    emb = embed_images(load_checkpoint_embedder(ckpt), held.images, flip=True, normalize=True)
    scores = (emb[held.pairs[:, 0]] * emb[held.pairs[:, 1]]).sum(1)
    return kfold_accuracy(scores, held.issame).accuracy_mean


COMMON = [
    "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.precision=32-true",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    "--trainer.num_sanity_val_steps=0", "--trainer.logger=false",
    "--data.num_workers=0", "--data.pin_memory=false", f"--data.image_size=[{SIZE}, {SIZE}]",
    "--model.backbone.init_args.depth=18", "--model.backbone.init_args.width=0.25",
    "--model.backbone.init_args.embedding_dim=128",
    f"--model.backbone.init_args.input_size=[{SIZE}, {SIZE}]",
]  # fmt: skip


def cpu_s(secs: float) -> str:
    """CPU seconds for a table: "—" for none (0) or unknown (NaN: a reused run)."""
    return "—" if not secs or secs != secs else f"{secs:.0f}"


def fit(config: str, out: Path, *args: str) -> tuple[Path, float]:
    """``facerec fit --config configs/<config>`` with ``args``; returns (last.ckpt, CPU seconds).

    With ``REUSE`` set and a finished run in ``out`` (``--keep`` of an earlier run), that run
    is taken as it is, with the CPU seconds it recorded.
    """
    done = out / "fit.json"
    if REUSE and done.is_file():
        return next(out.rglob("last.ckpt")), json.loads(done.read_text())["cpu_s"]
    if REUSE and any(out.rglob("last.ckpt")):  # finished before fit.json was written
        return next(out.rglob("last.ckpt")), float("nan")
    t0 = time.process_time()
    argv = ["fit", "--config", str(ROOT / "configs" / config), *COMMON]
    argv += [f"--trainer.default_root_dir={out}", *args]
    rc = facerec_main(argv)
    if rc != 0:
        raise SystemExit(f"facerec fit --config {config} failed ({rc})")
    cpu = time.process_time() - t0
    done.write_text(json.dumps({"cpu_s": cpu}))
    return next(out.rglob("last.ckpt")), cpu


def insightface_backbone(ckpt: Path, out: Path) -> Path:
    """Save the checkpoint's IResNet in insightface's layout (bn2/fc/features at the top)."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    flat = {
        k.removeprefix("backbone.").removeprefix("head."): v
        for k, v in state.items()
        if k.startswith("backbone.")
    }
    torch.save(flat, out)
    return out


def small_set_runs(
    name: str, root: Path, held: HeldOut, pretrained: Path, epochs: int, work: Path
) -> list[tuple[str, str, float, float]]:
    """Fine-tune and from-scratch runs on the folder ``root``; rows (set, model, acc, s)."""
    data = [f"--data.root={root}", "--data.val_identities=0", f"--trainer.max_epochs={epochs}"]
    rows = [(name, "pre-trained, as it is", accuracy(pretrained, held), 0.0)]
    ft, t_ft = fit(
        "finetune_small.yaml", work / f"{name}-ft", *data,
        f"--model.init_from={work / 'backbone.pth'}",
    )  # fmt: skip
    rows.append((name, "fine-tuned (finetune_small.yaml)", accuracy(ft, held), t_ft))
    sc, t_sc = fit("quickstart.yaml", work / f"{name}-scratch", *data, "--data.batch_size=32")
    rows.append((name, "from scratch (quickstart.yaml)", accuracy(sc, held), t_sc))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrain-ids", type=int, default=300)
    ap.add_argument("--pretrain-imgs", type=int, default=10)
    ap.add_argument("--pretrain-epochs", type=int, default=5)
    ap.add_argument("--ids", type=int, default=40, help="identities of the small set")
    ap.add_argument("--imgs", type=int, default=10, help="images per identity of the small set")
    ap.add_argument("--epochs", type=int, default=15, help="epochs on the small set")
    ap.add_argument("--pairs", type=int, default=1000, help="positive (= negative) pairs")
    ap.add_argument("--no-orl", action="store_true", help="skip the ORL faces")
    ap.add_argument("--keep", type=Path, help="keep the runs in this folder")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: see BENCHMARKS.md)")
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs in --keep")
    args = ap.parse_args()
    global REUSE
    REUSE = args.reuse
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="facerec-ft-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pre, t_pre = fit(
        "quickstart.yaml", work / "pretrain", "--data.root=null", "--data.val_identities=0",
        f"--data.synthetic.identities={args.pretrain_ids}",
        f"--data.synthetic.images_per_identity={args.pretrain_imgs}",
        f"--data.synthetic.size={SIZE}", f"--trainer.max_epochs={args.pretrain_epochs}",
    )  # fmt: skip
    insightface_backbone(pre, work / "backbone.pth")
    small = write_synthetic_folder(
        work / "small", args.ids, args.imgs, size=SIZE, seed=1, overwrite=True
    )
    held = synthetic_held_out(1, 100, args.imgs, args.pairs)
    rows = small_set_runs(
        f"synthetic {args.ids}×{args.imgs} (seed 1)", small, held, pre, args.epochs, work
    )
    if ORL.is_dir() and not args.no_orl:
        subjects = [f"s{i}" for i in range(1, 41)]
        orl_train = work / "orl_train"
        for s in subjects[:20]:
            shutil.copytree(ORL / s, orl_train / s, dirs_exist_ok=True)
        held_orl = orl_held_out(subjects[20:], 900)
        rows += small_set_runs("ORL 20×10", orl_train, held_orl, pre, args.epochs, work)
    load = os.getloadavg()[0]
    print(
        f"\npre-training: {args.pretrain_ids}×{args.pretrain_imgs} synthetic (seed 0), "
        f"{args.pretrain_epochs} epochs, {t_pre:.0f} CPU s; "
        f"total {time.perf_counter() - t0:.0f} s wall"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {args.threads} torch thread(s), "
        f"load average {load:.1f} at the end\n"
    )
    print("| small training set | model | held-out 10-fold accuracy | fit CPU s |")
    print("|---|---|---:|---:|")
    for name, what, acc, secs in rows:
        print(f"| {name} | {what} | {acc:.2%} | {cpu_s(secs)} |")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
