"""Training throughput: facerec's Lightning fit against the same steps in a plain PyTorch loop.

Both paths run the same backbone, margin head, optimiser and batches from the same in-memory
DataLoader (random images, so data loading is not measured), for ``--steps`` timed steps after
``--warmup`` untimed ones. The ratio plain/Lightning shows the framework's overhead.

    python tools/bench/train_throughput.py --depth 18 --width 0.5 --batch 64 --precision 32
    python tools/bench/train_throughput.py --depth 50 --batch 128 --precision bf16 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from facerec.training.module import FaceRecognitionModule

PRECISION = {
    "32": ("32-true", None),
    "bf16": ("bf16-mixed", torch.bfloat16),
    "16": ("16-mixed", torch.float16),
}


def make_module(args: argparse.Namespace) -> FaceRecognitionModule:
    torch.manual_seed(0)
    return FaceRecognitionModule.from_config(
        backbone={
            "class_path": "facerec.models.IResNet",
            "init_args": {
                "depth": args.depth,
                "width": args.width,
                "input_size": [args.size, args.size],
            },
        },
        head={"class_path": f"facerec.heads.{args.head}"},
        num_classes=args.classes,
        optim={
            "lr": 0.01,
            "lr_reference_batch": None,
            "warmup_epochs": 0.0,
            "schedule": "constant",
        },
        channels_last=args.channels_last,
    )


def loader(args: argparse.Namespace, n_batches: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    n = args.batch * n_batches
    x = torch.randn(n, 3, args.size, args.size, generator=g)
    y = torch.randint(0, args.classes, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=args.batch, shuffle=False, drop_last=True)


class Timer(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def _sync(self, trainer: pl.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self._sync(trainer)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self._sync(trainer)
        self.end = time.perf_counter()


def run_lightning(args: argparse.Namespace) -> float:
    module = make_module(args)
    timer = Timer(args.warmup)
    trainer = pl.Trainer(
        accelerator=args.device,
        devices=1,
        precision=PRECISION[args.precision][0],
        max_steps=args.warmup + args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=loader(args, args.warmup + args.steps))
    return args.steps * args.batch / (timer.end - timer.start)


def run_plain(args: argparse.Namespace) -> float:
    module = make_module(args)
    device = torch.device(args.device)
    backbone, head = module.backbone.to(device).train(), module.head.to(device).train()
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    dtype = PRECISION[args.precision][1]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    start = 0.0
    for i, (x, y) in enumerate(loader(args, args.warmup + args.steps)):
        if i == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            emb = backbone(x)
        loss = F.cross_entropy(head(emb, y), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=18)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--head", default="ArcFaceHead")
    p.add_argument("--classes", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--precision", choices=sorted(PRECISION), default="32")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    plain = run_plain(args)
    light = run_lightning(args)
    machine = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(
        f"| backbone | head | batch | precision | plain img/s | facerec (Lightning) img/s "
        f"| Lightning / plain | machine |\n|---|---|---|---|---|---|---|---|\n"
        f"| IResNet-{args.depth} w{args.width} {args.size}px | {args.head} C={args.classes} "
        f"| {args.batch} | {args.precision} | {plain:.1f} | {light:.1f} | {light / plain:.3f} "
        f"| {machine} |"
    )


if __name__ == "__main__":
    main()
