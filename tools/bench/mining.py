"""Benchmark: facerec's triplet mining vs pytorch-metric-learning (PML), forward + backward.

For each batch size B (P×K = B, K images per identity, random L2-normalised D-dim embeddings,
Euclidean distance on normalised embeddings, margin 0.2) it times one training step of the loss
(forward and backward to the embeddings) and measures the peak extra memory, for:

=====================  ===========================================================================
ours:batch_all         TripletLoss(mining="batch_all"): mean over the active valid triplets
ours:batch_hard        TripletLoss(mining="batch_hard"): hardest positive/negative per anchor
ours:semi_hard         TripletLoss(mining="semi_hard"): FaceNet/TensorFlow, one negative per pair
pml:all                TripletMarginMiner("all") + TripletMarginLoss (same loss as ours:batch_all)
pml:hard               TripletMarginMiner("hard"): every triplet with d_an <= d_ap (no counterpart;
                       shown against ours:batch_all, which also covers every triplet)
pml:semihard           TripletMarginMiner("semihard"): *every* triplet with d_ap < d_an < d_ap + α,
                       averaged over them. Not FaceNet's rule (ours: one negative per
                       anchor-positive pair, the nearest beyond d_ap, with a fallback, averaged
                       over all pairs).
pml:batch_hard         BatchHardMiner + TripletMarginLoss(MeanReducer) (same loss as ours)
=====================  ===========================================================================

Every case runs in its own Python process (so the peak memory is that case's alone, and a case
that runs too long is killed at ``--timeout`` seconds and reported as such). Peak memory on CPU is
the growth of the process's maximum resident set size over its size after setup; on CUDA, the
peak allocated by the caching allocator over what was allocated after setup.

Example::

    python tools/bench/mining.py --sizes 256 512 1024 2048 --repeats 5 --threads 1

prints a markdown table of the best (minimum) time over the timed steps, which is the least
disturbed by other processes on a shared machine; the speed-up column is PML time / ours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import peak_rss_mb, rss_mb

ROOT = Path(__file__).resolve().parents[2]

PAIRS = [  # (ours, pml)
    ("ours:batch_all", "pml:all"),
    ("ours:batch_all", "pml:hard"),
    ("ours:semi_hard", "pml:semihard"),
    ("ours:batch_hard", "pml:batch_hard"),
]
MARGIN = 0.2


def build_loss(case: str):  # -> Callable[[Tensor, Tensor], Tensor]
    """The loss callable ``(embeddings (B, D), labels (B,)) -> scalar`` of a case."""
    kind, name = case.split(":")
    if kind == "ours":
        from facerec.losses import TripletLoss

        return TripletLoss(margin=MARGIN, mining=name, distance="euclidean", gather=False)
    from pytorch_metric_learning import distances, losses, miners, reducers

    dist = distances.LpDistance(normalize_embeddings=True, p=2, power=1)
    if name == "batch_hard":
        miner = miners.BatchHardMiner(distance=dist)
        loss = losses.TripletMarginLoss(
            margin=MARGIN, distance=dist, reducer=reducers.MeanReducer()
        )
    else:
        miner = miners.TripletMarginMiner(margin=MARGIN, type_of_triplets=name, distance=dist)
        loss = losses.TripletMarginLoss(margin=MARGIN, distance=dist)
    return lambda e, y: loss(e, y, miner(e, y))


def run_case(args: argparse.Namespace) -> dict[str, float]:
    """Child process: time ``args.child`` at batch ``args.b``: best and median ms, peak MB."""
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    loss_fn = build_loss(args.child)
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(args.b // args.k).repeat_interleave(args.k)
    labels = labels[torch.randperm(args.b, generator=g)].to(device)
    base = torch.nn.functional.normalize(torch.randn(args.b, args.dim, generator=g), dim=1)
    base = base.to(device)
    cuda = device.type == "cuda"

    def step() -> float:
        emb = base.clone().requires_grad_(True)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = loss_fn(emb, labels)
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    if cuda:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        before = rss_mb()
    times = [step()]  # warm-up (also reaches the peak)
    spent = times[0]
    times = []
    while len(times) < args.repeats and (not times or spent < args.max_seconds):
        times.append(step())
        spent += times[-1]
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        peak = peak_rss_mb() - before
    return {
        "ms": 1000 * min(times),
        "median_ms": 1000 * statistics.median(times),
        "peak_mb": max(peak, 0.0),
        "n": len(times),
    }


def measure(case: str, b: int, args: argparse.Namespace) -> dict[str, float] | str:
    """Run one case in a child process; the result dict, or a reason string."""
    cmd = [sys.executable, __file__, "--child", case, "--b", str(b)]
    for flag in ("dim", "k", "repeats", "threads", "device", "max_seconds"):
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return f"timeout > {args.timeout:g} s"
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return "out of memory" if "memory" in tail.lower() or proc.returncode == -9 else tail[:60]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(r: dict[str, float] | str | None, key: str) -> str:
    if r is None:
        return "skipped"
    if isinstance(r, str):
        return r if key == "ms" else "–"
    return f"{r[key]:.1f}" if key == "ms" or r[key] >= 10 else f"{r[key]:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--dim", type=int, default=512, help="embedding dimension (default 512)")
    ap.add_argument("--k", type=int, default=4, help="images per identity (default 4)")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps after one warm-up")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="stop repeating after this")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--timeout", type=float, default=300.0, help="kill a case after this (s)")
    ap.add_argument(
        "--pml-max-b",
        type=int,
        default=None,
        help="skip PML's all/hard/semihard cases (which enumerate every triplet) above this B",
    )
    ap.add_argument("--no-pml", action="store_true", help="only time facerec's miners")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--b", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(args)))
        return

    import torch

    print(
        f"triplet mining, forward+backward, D={args.dim}, K={args.k}, margin {MARGIN}, "
        f"Euclidean on normalised embeddings, device {args.device}, {args.threads} threads, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"best of up to {args.repeats} steps after a warm-up (min: the machine may be shared)\n"
    )
    print("| B | ours | ms | peak MB | PML | ms | peak MB | speed-up |")
    print("|---:|---|---:|---:|---|---:|---:|---:|")
    for b in args.sizes:
        if b % args.k:
            raise SystemExit(f"--sizes: B={b} is not a multiple of K={args.k}")
        ours_cache: dict[str, dict[str, float] | str] = {}
        for ours, pml in PAIRS:
            if ours not in ours_cache:
                ours_cache[ours] = measure(ours, b, args)
            mine = ours_cache[ours]
            theirs: dict[str, float] | str | None = None
            enumerates = pml != "pml:batch_hard"
            if not args.no_pml and not (enumerates and args.pml_max_b and b > args.pml_max_b):
                theirs = measure(pml, b, args)
            speed = (
                f"{theirs['ms'] / mine['ms']:.1f}×"
                if isinstance(mine, dict) and isinstance(theirs, dict)
                else "–"
            )
            print(
                f"| {b} | {ours[5:]} | {fmt(mine, 'ms')} | {fmt(mine, 'peak_mb')} | {pml[4:]} "
                f"| {fmt(theirs, 'ms')} | {fmt(theirs, 'peak_mb')} | {speed} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
