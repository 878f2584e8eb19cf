"""Benchmark: random PK batches vs hard-identity batches vs offline triplet selection.

Trains the same small IResNet with the triplet loss on the embedded synthetic identities for a
fixed number of steps, with the same seed, three ways:

==============  ===================================================================================
random PK       ``PKBatches``; TripletLoss(batch_hard) on P×K batches
hard identity   ``HardIdentityBatches``; the same loss; every ``--refresh`` steps the mean
                embeddings of the identities are searched with FAISS and half of each batch comes
                in groups of mutually close identities
offline         ``OfflineTripletBatches``; every ``--refresh`` steps a subset is embedded
                and one semi-hard negative chosen per anchor-positive pair (FaceNet);
                TripletLoss(offline: instead) on batches of T = P·K/3 of those triplets
==============  ===================================================================================

Reported per method, mean ± standard deviation over ``--seeds``: held-out verification accuracy
(identities never trained on; ``val/acc``, best-threshold accuracy on balanced pairs) at the end,
and the fraction of active triplets (non-zero hinge) averaged over the last half of training.

    python tools/bench/offline_mining.py                  # 3 seeds × 3 methods × 600 steps
    python tools/bench/offline_mining.py --quick          # smoke run: 1 seed, 20 steps, tiny

Prints one markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

METHODS = ("random PK", "hard identity", "offline")


def run(method: str, seed: int, args: argparse.Namespace) -> tuple[float, float, float]:
    """One training run; returns (held-out accuracy, mean active fraction, seconds)."""
    import pytorch_lightning as pl
    import torch

    from facerec.data.datamodule import FaceDataModule, SyntheticOptions
    from facerec.data.hard_identity import HardIdentityBatches, HardIdentityOptions
    from facerec.data.offline_triplets import OfflineTripletBatches, OfflineTripletOptions
    from facerec.data.samplers import PKBatches
    from facerec.training.module import FaceRecognitionModule
    from facerec.training.refresh import data_callbacks

    pl.seed_everything(seed, verbose=False)
    t = max(1, args.p * args.k // 3)
    sampler = {
        "random PK": PKBatches(args.p, args.k),
        "hard identity": HardIdentityBatches(
            args.p,
            args.k,
            mining=HardIdentityOptions(
                every_n_steps=args.refresh,
                neighbours=8,
                group_size=4,
                hard_fraction=0.5,
                centres="embeddings",
                images_per_identity=4,
            ),
        ),
        "offline": OfflineTripletBatches(
            t,
            mining=OfflineTripletOptions(
                every_n_steps=args.refresh,
                identities=args.subset_ids,
                images_per_identity=min(args.images, 10),
                selection="semi_hard",
                margin=args.margin,
                distance="euclidean",
            ),
        ),
    }
    dm = FaceDataModule(
        image_size=(args.size, args.size),
        num_workers=0,
        augment=[],
        sampler=sampler[method],
        synthetic=SyntheticOptions(
            identities=args.identities, images_per_identity=args.images, size=args.size, seed=seed
        ),
        val_identities=args.val_identities,
        val_pairs=args.val_pairs,
        seed=seed,
    )  # fmt: skip
    loss = {
        "class_path": "facerec.losses.TripletLoss",
        "init_args": {
            "margin": args.margin,
            "mining": "batch_hard",
            "offline": "instead" if method == "offline" else "off",
        },
    }
    model = FaceRecognitionModule.from_config(
        backbone={
            "class_path": "facerec.models.IResNet",
            "init_args": {
                "depth": 18, "width": args.width, "embedding_dim": args.dim,
                "input_size": [args.size, args.size],
            },
        },
        metric_loss=loss, num_classes=args.identities,
        optim={"name": "adamw", "lr": args.lr, "lr_reference_batch": None, "weight_decay": 5e-4,
               "warmup_epochs": 0, "schedule": "cosine"},
    )  # fmt: skip
    active: list[float] = []

    class Active(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, i):
            active.append(float(pl_module.metric_loss.stats["active_fraction"]))

    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=args.steps, max_epochs=-1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, check_val_every_n_epoch=None, val_check_interval=args.steps,
        use_distributed_sampler=False, callbacks=[Active(), *data_callbacks(dm)],
    )  # fmt: skip
    start = time.perf_counter()
    torch.set_num_threads(args.threads) if args.threads else None
    model.attach_data(dm)  # names, pairs (val/acc) and the sampler the refresh checks
    trainer.fit(model, dm)
    seconds = time.perf_counter() - start
    acc = model.val_history[-1][1] if model.val_history else float("nan")
    tail = active[len(active) // 2 :] or active
    return acc, statistics.fmean(tail), seconds


def _fmt(values: list[float], pct: bool = True) -> str:
    scale = 100.0 if pct else 1.0
    mean = statistics.fmean(values) * scale
    sd = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {sd:.1f}" if pct else f"{mean:.0f} ± {sd:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--refresh", type=int, default=100, help="refresh every N steps")
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--images", type=int, default=12, help="images per training identity")
    parser.add_argument("--val-identities", type=int, default=50)
    parser.add_argument("--val-pairs", type=int, default=1000)
    parser.add_argument("--subset-ids", type=int, default=100, help="offline subset identities")
    parser.add_argument("--p", type=int, default=16)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny, 1 seed, 20 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.seeds, args.refresh = 20, [0], 10
        args.identities, args.images, args.val_identities, args.val_pairs = 24, 6, 8, 60
        args.subset_ids, args.p, args.size, args.width, args.dim = 12, 6, 32, 0.0625, 16
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    rows = []
    for method in METHODS:
        results = [run(method, seed, args) for seed in args.seeds]
        rows.append((method, results))
    print(
        f"Synthetic identities: {args.identities} × {args.images} images, {args.size}px; "
        f"IResNet-18 width {args.width}, D = {args.dim}; {args.steps} steps of "
        f"{args.p}×{args.k} images (offline: {args.p * args.k // 3} triplets); refresh every "
        f"{args.refresh} steps; seeds {args.seeds}; mean ± sd"
    )
    print()
    print("| batches | held-out verification acc. (%) | active triplets (%) | seconds/run |")
    print("|---|---:|---:|---:|")
    for method, results in rows:
        acc = [r[0] for r in results]
        act = [r[1] for r in results]
        sec = [r[2] for r in results]
        print(f"| {method} | {_fmt(acc)} | {_fmt(act)} | {_fmt(sec, pct=False)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
