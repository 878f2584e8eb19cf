"""MobileFaceNet trained alone and distilled from an IResNet teacher, at the same budget.

1. Train the teacher, an IResNet-18 (width 0.5), on synthetic identities (seed 0) with the
   quick-start recipe (or take ``--teacher CKPT``).
2. Train a MobileFaceNet student (scale 1, blocks 1/4/6/2) with the same recipe, the same data
   and the same number of steps, twice: alone (ArcFace), and with ``model.distill`` =
   {teacher: the teacher's checkpoint, weight, loss} added to the ArcFace loss.
3. Report the 10-fold verification accuracy on held-out synthetic identities (5000+) of the
   teacher and both students, and the ONNX embedding speed of teacher and student (exported with
   ``facerec.export.onnx.export_onnx``, self-checked against PyTorch, run by onnxruntime on the
   CPU with one thread: images per wall second and per CPU second).

    .venv/bin/python tools/bench/distill.py                   # about 8 min on 2 busy cores
    .venv/bin/python tools/bench/distill.py --teacher runs/teacher/last.ckpt --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import finetune
import numpy as np
import torch
import yaml
from finetune import SIZE, accuracy, synthetic_held_out

from facerec.cli import main as facerec_main
from facerec.export.check import check_onnx
from facerec.export.onnx import export_onnx
from facerec.inference import OnnxEmbedder
from facerec.inference.checkpoint import load_facerec_checkpoint

ROOT = Path(__file__).resolve().parents[2]

COMMON = [
    "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.precision=32-true",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    "--trainer.num_sanity_val_steps=0", "--trainer.logger=false", "--data.root=null",
    "--data.num_workers=0", "--data.pin_memory=false", f"--data.image_size=[{SIZE}, {SIZE}]",
    "--data.val_identities=0", f"--data.synthetic.size={SIZE}",
]  # fmt: skip


def recipe(backbone: dict, out: Path) -> Path:
    """configs/quickstart.yaml with another backbone, written to ``out``."""
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["model"]["backbone"] = backbone
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def fit(config: Path, out: Path, *args: str) -> tuple[Path, float]:
    """``facerec fit --config config`` with ``args``; returns (last.ckpt, CPU seconds); with
    ``--reuse``, a finished run in ``out`` is taken as it is."""
    done = out / "fit.json"
    if finetune.REUSE and done.is_file():
        return next(out.rglob("last.ckpt")), json.loads(done.read_text())["cpu_s"]
    if finetune.REUSE and any(out.rglob("last.ckpt")):  # finished before fit.json was written
        return next(out.rglob("last.ckpt")), float("nan")
    t0 = time.process_time()
    rc = facerec_main(["fit", "--config", str(config), *COMMON,
                       f"--trainer.default_root_dir={out}", *args])  # fmt: skip
    if rc != 0:
        raise SystemExit(f"facerec fit --config {config} failed ({rc})")
    cpu = time.process_time() - t0
    done.write_text(json.dumps({"cpu_s": cpu}))
    return next(out.rglob("last.ckpt")), cpu


def onnx_speed(ckpt: Path, out: Path, n: int = 256) -> tuple[float, float, float, float]:
    """Export, self-check, and time onnxruntime (one intra-op thread) on ``n`` random images.

    Returns (images per wall second, images per CPU second, min cosine ONNX vs torch, MB); on a
    shared machine the CPU-second figure is the one that does not depend on the load.
    """
    loaded = load_facerec_checkpoint(ckpt)
    data = export_onnx(loaded.backbone, loaded.preprocess, exporter="torchscript")
    out.write_bytes(data)
    check = check_onnx(data, loaded.backbone, loaded.preprocess, batch_sizes=(1, 8))
    min_cos = min(r.min_cosine for r in check)
    images = np.random.default_rng(0).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    emb = OnnxEmbedder(out, batch_size=64, threads=1)
    emb(images[:64])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(3):
        emb(images)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return 3 * n / wall, 3 * n / cpu, min_cos, len(data) / 1e6


def params(ckpt: Path) -> float:
    return sum(p.numel() for p in load_facerec_checkpoint(ckpt).backbone.parameters()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", type=int, default=300, help="training identities (synthetic)")
    ap.add_argument("--imgs", type=int, default=10, help="images per identity")
    ap.add_argument("--teacher-epochs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2, help="the students' budget")
    ap.add_argument("--weight", type=float, default=30.0, help="model.distill.weight")
    ap.add_argument("--loss", default="cosine", choices=("cosine", "l2"))
    ap.add_argument("--teacher", type=Path, help="a trained teacher checkpoint (skips step 1)")
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--keep", type=Path, help="keep the runs in this folder")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: see BENCHMARKS.md)")
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs in --keep")
    args = ap.parse_args()
    finetune.REUSE = args.reuse
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="facerec-kd-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    data = [f"--data.synthetic.identities={args.ids}",
            f"--data.synthetic.images_per_identity={args.imgs}"]  # fmt: skip
    t0 = time.perf_counter()
    iresnet = {"class_path": "facerec.models.IResNet",
               "init_args": {"depth": 18, "width": 0.5, "embedding_dim": 128,
                             "input_size": [SIZE, SIZE]}}  # fmt: skip
    mbf = {"class_path": "facerec.models.MobileFaceNet",
           "init_args": {"embedding_dim": 128, "scale": 1, "blocks": [1, 4, 6, 2],
                         "input_size": [SIZE, SIZE]}}  # fmt: skip
    t_teacher = 0.0
    teacher = args.teacher
    if teacher is None:
        teacher, t_teacher = fit(recipe(iresnet, work / "teacher.yaml"), work / "teacher", *data,
                                 f"--trainer.max_epochs={args.teacher_epochs}")  # fmt: skip
    student_cfg = recipe(mbf, work / "student.yaml")
    budget = [*data, f"--trainer.max_epochs={args.epochs}"]
    alone, t_alone = fit(student_cfg, work / "alone", *budget)
    kd, t_kd = fit(student_cfg, work / "distilled", *budget,
                   f"--model.distill.teacher={teacher}", f"--model.distill.weight={args.weight}",
                   f"--model.distill.loss={args.loss}")  # fmt: skip
    held = synthetic_held_out(0, 100, 10, args.pairs)
    rows = []
    for name, ckpt, secs in (
        ("IResNet-18 w0.5 teacher", teacher, t_teacher),
        ("MobileFaceNet s1, alone", alone, t_alone),
        (f"MobileFaceNet s1, distilled ({args.loss}, weight {args.weight:g})", kd, t_kd),
    ):
        wall, cpu, cos, mb = onnx_speed(ckpt, work / f"{ckpt.parent.parent.name}.onnx")
        rows.append((name, params(ckpt), accuracy(ckpt, held), secs, wall, cpu, cos, mb))
    load = os.getloadavg()[0]
    print(
        f"\ntraining: {args.ids}×{args.imgs} synthetic (seed 0) at {SIZE}×{SIZE}; teacher "
        f"{args.teacher_epochs} epochs, students {args.epochs} epochs each; held-out: "
        f"100 identities × 10, {2 * args.pairs} pairs; total {time.perf_counter() - t0:.0f} s"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {args.threads} torch thread(s), "
        f"load average {load:.1f} at the end\n"
    )
    print(
        "| model | params (M) | held-out 10-fold accuracy | fit CPU s | ONNX img/s (wall) | "
        "ONNX img per CPU s | ONNX vs torch min cosine | ONNX MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, p, acc, secs, wall, cpu, cos, mb in rows:
        print(
            f"| {name} | {p:.2f} | {acc:.2%} | {finetune.cpu_s(secs)} | {wall:.0f} | {cpu:.0f} "
            f"| {cos:.6f} | {mb:.1f} |"
        )
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
