"""ViT against IResNet at equal FLOPs: held-out verification accuracy after the same training.

Two networks with about the same multiply-adds per 64×64 image (``torch.utils.flop_counter``):

* the quick start's IResNet-18, width 0.25, 128-d (``configs/quickstart.yaml``);
* a ViT in insightface's layout (``facerec.models.ViT``: ViT-T's blocks, drop path 0.1, 10% of
  the patches masked in training) with patch 8 (an 8×8 grid of 64 tokens), ``--vit-depth``
  blocks (6), ``--vit-heads`` heads (4) and the token width, a multiple of the heads, whose
  FLOPs come closest to the IResNet's (bisection on the measured count).

Each is trained by the real trainer (``facerec fit --config configs/quickstart.yaml`` with
``--model.backbone`` replaced, in this process) with each optimiser of ``--optims``:

* ``sgd``: the quick-start recipe as it is (SGD, lr 0.1 per 128 images, momentum 0.9, weight
  decay 5e-4, half an epoch of warm-up, cosine);
* ``adamw``: what ViTs are trained with (``configs/arcface_vit_t.yaml``): AdamW, weight decay
  0.1, gradient norm clipped at 5, at lr 1e-3 per 128 images (that recipe's peak lr; scaled
  down from its reference batch of 4,096 it would be 3e-5, which barely moves in a few hundred
  steps), the recipe's warm-up and cosine schedule otherwise.

Runs, every one with the same data, steps and seed for both networks:

1. quick start: 200 synthetic training identities × 20 images, 8 epochs at batch 128; the
   held-out accuracy is ``val/acc`` after the last epoch (1,000 + 1,000 pairs of 50 identities
   never trained on, best threshold, as the quick start prints) and ``facerec eval --synthetic``
   on ``last.ckpt`` (2,000 held-out pairs, 10-fold mean ± std, flip test);
2. ORL (``../shared/data/orl_faces``, 40 people × 10 greyscale 92×112 photos, not aligned),
   split by identity with a fixed seed: ``--orl-train`` (28) identities to train on from
   scratch at 64×64 (``--orl-epochs`` epochs at batch 32; no validation during the fit), the
   other 12 held out; ``tools/make_pairs.py`` draws ``--orl-pairs`` genuine and as many impostor
   pairs of the held-out identities and ``facerec eval --pairs-csv`` scores ``last.ckpt``
   (10-fold mean ± std, flip test).

Steps/s counts the training steps alone (forward, backward, optimiser; from batch start to
batch end, so neither data loading nor validation); the fit's wall and CPU seconds include
everything. Other processes share the CPU: the CPU seconds are the steadier figure.

    .venv/bin/python tools/bench/vit_accuracy.py                 # both sets, both optimisers
    .venv/bin/python tools/bench/vit_accuracy.py --orl-seeds 0 1 2 --skip-quickstart
    .venv/bin/python tools/bench/vit_accuracy.py --skip-orl --optims adamw --nets vit
    .venv/bin/python tools/bench/vit_accuracy.py --smoke         # a minute: checks that it runs

Images are copied to a temporary folder (``--keep`` to keep the runs), never into the
repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from vit import macs

from facerec.cli import main as facerec_main
from facerec.models import IResNet, ViT

ROOT = Path(__file__).resolve().parents[2]
ORL = ROOT.parent / "shared" / "data" / "orl_faces"
SIZE = 64
DIM = 128

OPTIMS: dict[str, list[str]] = {
    "sgd": [],  # the quick-start recipe's
    "adamw": [
        "--model.optim.name=adamw",
        "--model.optim.lr=0.001",
        "--model.optim.lr_reference_batch=128",
        "--model.optim.weight_decay=0.1",
        "--trainer.gradient_clip_val=5.0",
    ],
}


class StepTimer(pl.Callback):
    """Times the training steps (batch start to batch end) and keeps every validation's
    ``val/acc``; writes them to ``out`` (JSON) when the fit ends."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.wall = self.cpu = 0.0
        self.steps = 0
        self.val: list[tuple[int, float]] = []
        self._t = self._c = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._t, self._c = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.wall += time.perf_counter() - self._t
        self.cpu += time.process_time() - self._c
        self.steps += 1

    def on_validation_end(self, trainer: pl.Trainer, *args: Any) -> None:
        acc = trainer.callback_metrics.get("val/acc")
        if acc is not None:
            self.val.append((trainer.global_step, float(acc)))

    def on_fit_end(self, trainer: pl.Trainer, *args: Any) -> None:
        info = {"steps": self.steps, "train_wall_s": self.wall, "train_cpu_s": self.cpu}
        Path(self.out).write_text(json.dumps({**info, "val": self.val}))


def iresnet() -> dict[str, Any]:
    """The quick start's backbone."""
    args = {"depth": 18, "width": 0.25, "embedding_dim": DIM}
    return {"class_path": "facerec.models.IResNet", "init_args": args}


def vit(width: int, depth: int, heads: int, patch: int) -> dict[str, Any]:
    """A ViT with ViT-T's regularisation (drop path 0.1, 10% of the patches masked)."""
    args = {
        "embedding_dim": DIM,
        "patch_size": patch,
        "embed_dim": width,
        "depth": depth,
        "num_heads": heads,
        "drop_path_rate": 0.1,
        "mask_ratio": 0.1,
    }
    return {"class_path": "facerec.models.ViT", "init_args": args}


def build(spec: dict[str, Any]) -> torch.nn.Module:
    cls = IResNet if spec["class_path"].endswith("IResNet") else ViT
    return cls(**spec["init_args"], input_size=(SIZE, SIZE))


def matched_vit_width(target: float, depth: int, heads: int, patch: int) -> int:
    """The ViT token width (a multiple of ``heads``) whose FLOPs at SIZE come closest to
    ``target`` (bisection on the measured count; FLOPs grow with width)."""

    def cost(k: int) -> float:
        return macs(build(vit(k * heads, depth, heads, patch)), SIZE)

    lo, hi = 1, 1024 // heads
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cost(mid) < target else (lo, mid)
    return heads * min((lo, hi), key=lambda k: abs(cost(k) - target))


def fit(out: Path, backbone: dict[str, Any], seed: int, *args: str) -> dict[str, Any]:
    """``facerec fit --config configs/quickstart.yaml`` with this backbone and ``args``;
    the StepTimer's record plus the fit's wall and CPU seconds and its last.ckpt."""
    timing = out / "steps.json"
    timer = {"class_path": "vit_accuracy.StepTimer", "init_args": {"out": str(timing)}}
    argv = [
        "fit",
        "--config",
        str(ROOT / "configs" / "quickstart.yaml"),
        f"--seed_everything={seed}",
        f"--model.backbone={json.dumps(backbone)}",
        f"--trainer.default_root_dir={out}",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=false",
        f"--trainer.callbacks+={json.dumps(timer)}",
        *args,
    ]
    t, c = time.perf_counter(), time.process_time()
    rc = facerec_main(argv)
    if rc != 0:
        raise SystemExit(f"facerec fit failed ({rc}): {' '.join(argv)}")
    rec = json.loads(timing.read_text())
    rec.update(fit_wall_s=time.perf_counter() - t, fit_cpu_s=time.process_time() - c)
    rec["ckpt"] = str(out / "checkpoints" / "last.ckpt")
    return rec


def evaluate(ckpt: str, out: Path, *bench: str) -> tuple[float, float]:
    """``facerec eval`` of ``ckpt`` on one benchmark: (10-fold accuracy mean, std)."""
    rc = facerec_main(["eval", "--checkpoint", ckpt, *bench, "--out", str(out)])
    if rc != 0:
        raise SystemExit(f"facerec eval failed ({rc}) on {ckpt}")
    res = json.loads((out / "results.json").read_text())
    (model,) = res["models"].values()
    (v,) = model["verification"].values()
    return v["accuracy_mean"], v["accuracy_std"]


def orl_split(work: Path, n_train: int, pairs: int) -> tuple[Path, Path, list[str]]:
    """Copy ORL into a training folder (``n_train`` identities) and a held-out folder (the
    rest, seeded split) with ``orl_pairs.csv`` from tools/make_pairs.py: (train, csv, held-out)."""
    subjects = sorted((p.name for p in ORL.iterdir() if p.is_dir()), key=lambda s: int(s[1:]))
    order = np.random.default_rng(0).permutation(len(subjects))
    train = sorted((subjects[i] for i in order[:n_train]), key=lambda s: int(s[1:]))
    held = sorted((subjects[i] for i in order[n_train:]), key=lambda s: int(s[1:]))
    for folder, names in (("orl_train", train), ("orl_heldout", held)):
        for s in names:
            shutil.copytree(ORL / s, work / folder / s, dirs_exist_ok=True)
    csv = work / "orl_pairs.csv"  # beside the folder: paths orl_heldout/sN/k.pgm
    cmd = [sys.executable, str(ROOT / "tools" / "make_pairs.py"), "--root"]
    cmd += [str(work / "orl_heldout"), "--pairs", str(pairs), "--seed", "0", "--out", str(csv)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return work / "orl_train", csv, held


def pct(mean: float, std: float | None = None) -> str:
    return f"{mean:.2%}" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f} %"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optims", nargs="+", choices=sorted(OPTIMS), default=["sgd", "adamw"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="quick-start seeds")
    ap.add_argument("--orl-seeds", type=int, nargs="+", default=[0, 1], help="ORL seeds")
    ap.add_argument("--vit-depth", type=int, default=6)
    ap.add_argument("--vit-heads", type=int, default=4)
    ap.add_argument("--vit-patch", type=int, default=8)
    ap.add_argument("--orl-train", type=int, default=28, help="ORL identities trained on")
    ap.add_argument("--orl-epochs", type=int, default=40)
    ap.add_argument("--orl-pairs", type=int, default=500, help="genuine (= impostor) pairs")
    ap.add_argument("--nets", nargs="+", choices=["iresnet", "vit"], default=["iresnet", "vit"])
    ap.add_argument("--skip-quickstart", action="store_true")
    ap.add_argument("--skip-orl", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--keep", type=Path, help="keep the runs in this folder")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="tiny runs: checks that it runs")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    quick: list[str] = []
    if args.smoke:
        quick = [
            "--trainer.max_epochs=1",
            "--data.synthetic.identities=40",
            "--data.synthetic.images_per_identity=4",
            "--data.val_identities=10",
            "--data.val_pairs=40",
            "--data.batch_size=32",
        ]
        args.orl_epochs, args.orl_pairs = 1, 50
    work = Path(tempfile.mkdtemp(prefix="facerec-vitacc-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    res_net = iresnet()
    target = macs(build(res_net), SIZE)
    width = matched_vit_width(target, args.vit_depth, args.vit_heads, args.vit_patch)
    vit_net = vit(width, args.vit_depth, args.vit_heads, args.vit_patch)
    nets = {
        "IResNet-18 ×0.25": res_net,
        f"ViT p{args.vit_patch} d{args.vit_depth} w{width} h{args.vit_heads}": vit_net,
    }
    info = {}
    for name, spec in nets.items():  # FLOPs and parameters of both, whichever are trained
        m = build(spec)
        info[name] = {
            "mmacs": macs(m, SIZE) / 1e6,
            "params_m": sum(p.numel() for p in m.parameters()) / 1e6,
        }

    nets = {k: v for k, v in nets.items() if k.split("-")[0].split()[0].lower() in args.nets}
    rows: list[dict[str, Any]] = []
    sets = [] if args.skip_quickstart else ["quick start"]
    if not args.skip_orl:
        if not ORL.is_dir():
            print(f"no ORL at {ORL}: the ORL runs are skipped")
        else:
            sets.append("ORL")
    if "ORL" in sets:
        orl_train, orl_csv, held = orl_split(work, args.orl_train, args.orl_pairs)
        orl_args = [
            f"--data.root={orl_train}",
            "--data.val_identities=0",
            "--data.batch_size=32",
            f"--trainer.max_epochs={args.orl_epochs}",
            "--trainer.num_sanity_val_steps=0",
        ]
    for where in sets:
        for seed in args.seeds if where == "quick start" else args.orl_seeds:
            for opt in args.optims:
                for name, spec in nets.items():
                    tag = f"{'qs' if where == 'quick start' else 'orl'}-{opt}-s{seed}-{name[:3]}"
                    out = work / tag
                    print(f"\n== {where}, {name}, {opt}, seed {seed} ({out})", flush=True)
                    extra = quick + OPTIMS[opt] if where == "quick start" else orl_args
                    if where == "ORL":
                        extra = extra + OPTIMS[opt]
                    rec = fit(out, spec, seed, *extra)
                    if where == "quick start":
                        bench = ["--synthetic"]
                    else:
                        bench = ["--pairs-csv", str(orl_csv)]
                    rec["acc"], rec["std"] = evaluate(rec["ckpt"], out / "eval", *bench)
                    rec.update(set=where, network=name, optim=opt, seed=seed)
                    rows.append(rec)
                    print(f"== {tag}: {json.dumps(rec)}", flush=True)

    load = os.getloadavg()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    print(
        f"\n{machine}, torch {torch.__version__}, {torch.get_num_threads()} torch threads; "
        f"load average {load[0]:.1f} / {load[1]:.1f} (1 / 5 min) at the end; "
        f"total {time.perf_counter() - t0:.0f} s wall"
    )
    if "ORL" in sets:
        print(
            f"ORL held-out identities: {' '.join(held)}; {args.orl_pairs} + {args.orl_pairs} pairs"
        )
    print("\n| network | params (M) | MFLOPs (MACs) at 64×64 |\n|---|---:|---:|")
    for name, i in info.items():
        print(f"| {name} | {i['params_m']:.3f} | {i['mmacs']:.1f} |")
    print(
        "\n| set | optimiser | network | seed | steps | held-out 10-fold accuracy "
        "| last val/acc | steps/s | step CPU s | fit wall s | fit CPU s |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        val = pct(r["val"][-1][1]) if r["val"] else "—"
        print(
            f"| {r['set']} | {r['optim']} | {r['network']} | {r['seed']} | {r['steps']} "
            f"| {pct(r['acc'], r['std'])} | {val} | {r['steps'] / r['train_wall_s']:.2f} "
            f"| {r['train_cpu_s'] / r['steps']:.2f} | {r['fit_wall_s']:.0f} "
            f"| {r['fit_cpu_s']:.0f} |"
        )
    if any(len(args.seeds if w == "quick start" else args.orl_seeds) > 1 for w in sets):
        print("\n| set | optimiser | network | seeds | mean ± std over seeds |")
        print("|---|---|---|---:|---:|")
        for where in sets:
            for opt in args.optims:
                for name in nets:
                    accs = [
                        r["acc"]
                        for r in rows
                        if (r["set"], r["optim"], r["network"]) == (where, opt, name)
                    ]
                    if len(accs) < 2:
                        continue
                    mean = pct(float(np.mean(accs)), float(np.std(accs)))
                    print(f"| {where} | {opt} | {name} | {len(accs)} | {mean} |")
    if args.json:
        from facerec.io import atomic_write_text

        meta = {
            "machine": machine,
            "torch": torch.__version__,
            "args": vars(args) | {"keep": str(args.keep)},
        }
        atomic_write_text(args.json, json.dumps({**meta, "nets": info, "rows": rows}, indent=1))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
