"""Scale-out benchmark: the margin head at 100k-10M classes, replicated against sharded.

Part 1, the head of a training step (embeddings in, loss, backward, SGD-with-momentum step; the
backbone is left out, its cost does not depend on the class count), per process:

* ``replicated``: ArcFace with the full (C, D) matrix on every process; with 2 processes its
  (C, D) gradient is all-reduced, as DDP does.
* ``sharded r``: :class:`facerec.heads.sharded.ShardedMarginHead` (Partial FC) over 2 processes
  at sample rate r (1.0, 0.3, 0.1): each holds C/2 centres; embeddings are all-gathered and the
  softmax is reduced across processes.

Each configuration runs in fresh processes (``torch.multiprocessing``, gloo on CPU, NCCL on GPUs
when ``--device cuda`` and two GPUs are present); time is the median step of the slower rank;
memory is the peak resident-set growth of the worst rank over the process's state before the
head was built (on CUDA: peak allocated); at small class counts it is dominated by ~100 MiB of
allocator and library overhead, so the table also gives the estimated tensor memory. A
configuration whose estimate (weights, gradient, momentum, logits) times the processes exceeds
``--max-gb`` (default 60 % of RAM) is listed as skipped.

Part 2, throughput scaling: a full training step (IResNet backbone + ArcFace, random images)
under DDP with 1 and 2 processes, each with the same per-process batch and ``cores / processes``
threads; images per second in total and the speed-up.

    python tools/bench/scale.py                      # 100k, 1M, 10M classes, D 512, batch 128
    python tools/bench/scale.py --classes 100000 1000000 --steps 5
    python tools/bench/scale.py --quick              # smoke run: 10k/50k classes, tiny sizes

Prints markdown tables (and ``--json PATH`` writes the rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from _common import peak_rss_mb


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def estimate_gb(kind: str, classes: int, dim: int, batch: int, world: int, rate: float) -> float:
    """Rough per-process memory of the head step: weights, gradient, momentum and logits."""
    rows = classes if kind == "replicated" else -(-classes // world)
    used = rows if kind == "replicated" else max(int(rows * rate), 1)
    n = batch if kind == "replicated" else batch * world
    weights = rows * dim * 4 * 3  # weight, momentum, gradient
    if kind != "replicated" and rate < 1:
        weights += used * dim * 4 * 2  # the sampled rows and their gradient
    logits = n * used * 4 * 3  # cosines, logits, probabilities/gradient
    return (weights + logits) / 2**30


def _head_worker(rank: int, cfg: dict, port: int, out: str) -> None:
    world, device = cfg["world"], torch.device(cfg["device"])
    torch.set_num_threads(max(1, cfg["threads"] // world))
    if world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
        )
    if device.type == "cuda":
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
    from facerec.heads import ArcFaceHead
    from facerec.heads.sharded import ShardedMarginHead

    g = torch.Generator().manual_seed(rank)
    c, d, b = cfg["classes"], cfg["dim"], cfg["batch"]
    x = torch.randn(b, d, generator=g).to(device)
    y = torch.randint(0, c, (b,), generator=g).to(device)

    def build(classes: int) -> torch.nn.Module:
        if cfg["kind"] == "replicated":
            return ArcFaceHead(d, classes).to(device)
        head = ShardedMarginHead(d, classes, sample_rate=cfg["rate"]).to(device)
        head.setup_shard()
        head.weight.data = head.weight.data.to(device)
        return head

    # a step with a tiny head first: the libraries' lazily allocated buffers are not counted
    tiny = build(2 * world)
    yt = y % (2 * world)
    loss = F.cross_entropy(tiny(x, yt), yt) if cfg["kind"] == "replicated" else tiny(x, yt)
    loss.backward()
    del tiny, loss
    base = peak_rss_mb()
    head = build(c)
    opt = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9)
    times = []
    for step in range(cfg["warmup"] + cfg["steps"]):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        xi = x.clone().requires_grad_()
        if cfg["kind"] == "replicated":
            loss = F.cross_entropy(head(xi, y), y)
        else:
            loss = head(xi, y)
        loss.backward()
        if cfg["kind"] == "replicated" and world > 1:
            dist.all_reduce(head.weight.grad)  # what DDP does with a replicated head
            head.weight.grad /= world
        opt.step()
        opt.zero_grad(set_to_none=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= cfg["warmup"]:
            times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        mem = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        mem = peak_rss_mb() - base
    Path(out, f"rank{rank}.json").write_text(
        json.dumps({"median_s": statistics.median(times), "mem_mb": mem})
    )
    if world > 1:
        dist.destroy_process_group()


def run_head(cfg: dict) -> dict:
    """One configuration in fresh processes; the slower rank's median step and worst memory."""
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_head_worker, args=(cfg, _free_port(), out), nprocs=cfg["world"], join=True)
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(cfg["world"])]
    return {
        "step_ms": 1000 * max(r["median_s"] for r in ranks),
        "mem_mb": max(r["mem_mb"] for r in ranks),
    }


class _TrainStep(torch.nn.Module):
    """Backbone + margin head: (B, 3, H, W) images, (B,) labels -> cross-entropy."""

    def __init__(self, backbone: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.head(self.backbone(x), y), y)


def _train_worker(rank: int, cfg: dict, port: int, out: str) -> None:
    world = cfg["world"]
    torch.set_num_threads(max(1, cfg["threads"] // world))
    if world > 1:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
        )
    from torch.nn.parallel import DistributedDataParallel

    from facerec.heads import ArcFaceHead
    from facerec.models import IResNet

    torch.manual_seed(0)
    size = (cfg["input_size"], cfg["input_size"])
    net = _TrainStep(
        IResNet(cfg["depth"], width=cfg["width"], embedding_dim=128, input_size=size),
        ArcFaceHead(128, cfg["train_classes"]),
    )
    model = DistributedDataParallel(net) if world > 1 else net  # DDP averages the gradients
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(cfg["train_batch"], 3, *size, generator=g)
    y = torch.randint(0, cfg["train_classes"], (cfg["train_batch"],), generator=g)
    times = []
    for step in range(cfg["warmup"] + cfg["steps"]):
        t0 = time.perf_counter()
        model(x, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        if step >= cfg["warmup"]:
            times.append(time.perf_counter() - t0)
    Path(out, f"rank{rank}.json").write_text(json.dumps({"median_s": statistics.median(times)}))
    if world > 1:
        dist.destroy_process_group()


def run_train(cfg: dict) -> float:
    """Images per second over all processes of the full training step."""
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_train_worker, args=(cfg, _free_port(), out), nprocs=cfg["world"], join=True)
        worst = max(
            json.loads(Path(out, f"rank{r}.json").read_text())["median_s"]
            for r in range(cfg["world"])
        )
    return cfg["world"] * cfg["train_batch"] / worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    ap.add_argument("--rates", type=float, nargs="+", default=[1.0, 0.3, 0.1])
    ap.add_argument("--dim", type=int, default=512, help="embedding size D")
    ap.add_argument("--batch", type=int, default=128, help="images per process")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cores to share")
    ap.add_argument("--max-gb", type=float, default=None, help="skip configurations above this")
    ap.add_argument("--depth", type=int, default=18, help="IResNet depth for the scaling part")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--input-size", type=int, default=112)
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--no-scaling", action="store_true", help="skip part 2")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--quick", action="store_true", help="smoke run at tiny sizes")
    args = ap.parse_args(argv)
    if args.quick:
        args.classes, args.dim, args.batch, args.steps = [10_000, 50_000], 64, 32, 2
        args.input_size, args.width, args.train_batch = 32, 0.125, 8
    if args.max_gb is None:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        args.max_gb = 0.6 * total
    base = {"dim": args.dim, "batch": args.batch, "steps": args.steps, "warmup": args.warmup,
            "device": args.device, "threads": args.threads}  # fmt: skip
    print(
        f"# Scale-out benchmark ({platform.node()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {args.device}; D={args.dim}, batch {args.batch} per process)\n"
    )
    print("| classes | head | processes | step (ms) | peak RSS growth (MiB) | estimate (MiB) |")
    print("|---:|---|---:|---:|---:|---:|")
    rows = []
    configs = [("replicated", 1, 1.0), ("replicated", 2, 1.0)]
    configs += [("sharded", 2, r) for r in args.rates]
    for classes in args.classes:
        for kind, world, rate in configs:
            name = kind if kind == "replicated" else f"sharded {rate:g}"
            need = estimate_gb(kind, classes, args.dim, args.batch, world, rate)
            row = {"classes": classes, "head": name, "processes": world, "estimate_gb": need}
            if need * world > args.max_gb:
                row["skipped"] = f"needs ~{need:.1f} GiB per process"
                print(f"| {classes:,} | {name} | {world} | skipped | | {need * 1024:.0f} |")
            else:
                cfg = dict(base, kind=kind, world=world, rate=rate, classes=classes)
                row.update(run_head(cfg))
                print(f"| {classes:,} | {name} | {world} | {row['step_ms']:.1f} | "
                      f"{row['mem_mb']:.0f} | {need * 1024:.0f} |", flush=True)  # fmt: skip
            rows.append(row)
    if not args.no_scaling:
        print(f"\n## Throughput scaling (IResNet-{args.depth} width {args.width:g}, "
              f"{args.input_size}px, batch {args.train_batch} per process, gloo)\n")  # fmt: skip
        print("| processes | images/s | speed-up |")
        print("|---:|---:|---:|")
        tcfg = dict(base, depth=args.depth, width=args.width, input_size=args.input_size,
                    train_batch=args.train_batch, train_classes=1000)  # fmt: skip
        first = None
        for world in (1, 2):
            ips = run_train(dict(tcfg, world=world))
            first = first or ips
            rows.append({"scaling_processes": world, "images_per_s": ips})
            print(f"| {world} | {ips:.1f} | {ips / first:.2f}x |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
